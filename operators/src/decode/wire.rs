//! The shapes records are parsed into before validation: one per topic, holding only
//! the fields that topic has (others are ignored as unknown), so a record's parse
//! touches a small struct. Money fields stay raw text (`M`) until validation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::Deserialize;
use serde_json::value::RawValue;
use sonic_rs::LazyValue;

use crate::event::Str;

/// The raw JSON text of a field, as a parser hands it over unparsed (money is read from
/// its text, never through `f64`).
pub(super) trait RawText {
    fn text(&self) -> &str;
}

impl RawText for &RawValue {
    fn text(&self) -> &str {
        self.get()
    }
}

impl RawText for LazyValue<'_> {
    fn text(&self) -> &str {
        self.as_raw_str()
    }
}

/// The envelope every topic shares.
pub(super) struct Head<'a> {
    pub message_id: Option<Str>,
    pub kind: Option<Cow<'a, str>>,
    pub timestamp: Option<Cow<'a, str>>,
    pub user_id: Option<Str>,
    pub anonymous_id: Option<Str>,
    pub channel: Option<Str>,
    pub store_id: Option<Str>,
}

/// Declares a topic's wire struct: the shared envelope plus the topic's own fields.
macro_rules! wire {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$doc])*
        #[derive(Deserialize)]
        pub(super) struct $name<'a, M> {
            message_id: Option<Str>,
            #[serde(rename = "type", borrow)]
            kind: Option<Cow<'a, str>>,
            #[serde(borrow)]
            timestamp: Option<Cow<'a, str>>,
            user_id: Option<Str>,
            anonymous_id: Option<Str>,
            channel: Option<Str>,
            store_id: Option<Str>,
            $(pub $field: $ty,)*
            #[serde(skip)]
            _money: PhantomData<M>,
        }

        impl<'a, M> $name<'a, M> {
            /// Takes the envelope out.
            pub fn head(&mut self) -> Head<'a> {
                Head {
                    message_id: self.message_id.take(),
                    kind: self.kind.take(),
                    timestamp: self.timestamp.take(),
                    user_id: self.user_id.take(),
                    anonymous_id: self.anonymous_id.take(),
                    channel: self.channel.take(),
                    store_id: self.store_id.take(),
                }
            }
        }
    };
}

wire!(
    /// `clickstream`.
    Click {
        cart_id: Option<Str>,
        currency: Option<Str>,
        query: Option<Str>,
        items: Option<Vec<WireItem<M>>>,
        lat: Option<f64>,
        lon: Option<f64>,
        accuracy_m: Option<f64>,
    }
);

wire!(
    /// `transactions`.
    Tx {
        transaction_id: Option<Str>,
        cart_id: Option<Str>,
        currency: Option<Str>,
        value: Option<M>,
        tax: Option<M>,
        shipping: Option<M>,
        discount: Option<M>,
        coupon: Option<Str>,
        payment_type: Option<Str>,
        items: Option<Vec<WireItem<M>>>,
        reason: Option<Str>,
    }
);

wire!(
    /// `customers`.
    Customer {
        birthday: Option<Str>,
        timezone: Option<Str>,
        home_store_id: Option<Str>,
        tier: Option<Str>,
        consent: Option<BTreeMap<String, bool>>,
        email_sha256: Option<Str>,
        phone_sha256: Option<Str>,
    }
);

wire!(
    /// `inventory`.
    Stock {
        item_id: Option<Str>,
        item_category: Option<Str>,
        lot_id: Option<Str>,
        on_hand: Option<i64>,
        price: Option<M>,
        currency: Option<Str>,
        expires_at: Option<Str>,
    }
);

wire!(
    /// `stores`.
    StoreRec {
        lat: Option<f64>,
        lon: Option<f64>,
        timezone: Option<Str>,
        region: Option<Str>,
    }
);

wire!(
    /// `weather`.
    WeatherRec {
        region: Option<Str>,
        temp_c: Option<f64>,
        condition: Option<Str>,
    }
);

/// One entry of `items[]`.
#[derive(Deserialize)]
pub(super) struct WireItem<M> {
    pub item_id: Option<Str>,
    pub item_name: Option<Str>,
    pub item_category: Option<Str>,
    pub price: Option<M>,
    pub quantity: Option<i64>,
}

//! The typed event model: every input topic of `docs/events.md`, decoded and validated.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use compact_str::CompactString;
use rust_decimal::Decimal;

use crate::time::Timestamp;

/// A short string kept inline (ids, codes, names up to 24 bytes need no allocation).
pub type Str = CompactString;

/// An input topic. Declared in name order, so `Ord` is the spec's tie-break order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// Browsing, carts, identify and location pings.
    Clickstream,
    /// Profiles and erasures.
    Customers,
    /// Stock lots.
    Inventory,
    /// Store reference data.
    Stores,
    /// Purchases and refunds.
    Transactions,
    /// Weather observations.
    Weather,
}

impl Topic {
    /// Every input topic, in name order.
    pub const ALL: [Topic; 6] = [
        Topic::Clickstream,
        Topic::Customers,
        Topic::Inventory,
        Topic::Stores,
        Topic::Transactions,
        Topic::Weather,
    ];

    /// The topic's name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Topic::Clickstream => "clickstream",
            Topic::Customers => "customers",
            Topic::Inventory => "inventory",
            Topic::Stores => "stores",
            Topic::Transactions => "transactions",
            Topic::Weather => "weather",
        }
    }

    /// Whether records are keyed by store (`inventory`, `stores`, `weather`) rather than customer.
    pub const fn keyed_by_store(self) -> bool {
        matches!(self, Topic::Inventory | Topic::Stores | Topic::Weather)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Topic::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown input topic `{s}`"))
    }
}

/// One decoded input event: the envelope plus its typed body.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique per event; the dedupe key for redelivered input.
    pub message_id: Str,
    /// Event time.
    pub timestamp: Timestamp,
    /// Member / account id (a hard id).
    pub user_id: Option<Str>,
    /// Device or cookie id (a soft id).
    pub anonymous_id: Option<Str>,
    /// `web`, `app`, `mini_program`, `pos`, `call_center`.
    pub channel: Option<Str>,
    /// The store, where the event names one.
    pub store_id: Option<Str>,
    /// The typed body.
    pub kind: EventKind,
}

impl Event {
    /// The customer key before identity resolution: `user_id`, else `anon:<anonymous_id>`.
    ///
    /// The runtime resolves anonymous ids linked by `identify` to their customer; this is
    /// what a producer that knows no links routes by.
    pub fn raw_customer_key(&self) -> Option<String> {
        match (&self.user_id, &self.anonymous_id) {
            (Some(u), _) => Some(u.to_string()),
            (None, Some(a)) => Some(anon_key(a)),
            (None, None) => None,
        }
    }

    /// The event's `type` as it stands on the wire.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

impl Event {
    /// A `purchase` at a store, re-keyed to that store: the items sold and who bought
    /// them (the purchase's resolved customer key). Stock is kept by store while
    /// transactions arrive by customer, so the sequencer routes this copy to the
    /// store's worker right after the purchase, in the same event-time position.
    pub fn sale(&self, customer: &str) -> Option<Event> {
        let (EventKind::Purchase(tx), Some(_)) = (&self.kind, &self.store_id) else {
            return None;
        };
        Some(Event {
            message_id: self.message_id.clone(),
            timestamp: self.timestamp,
            user_id: None,
            anonymous_id: None,
            channel: self.channel.clone(),
            store_id: self.store_id.clone(),
            kind: EventKind::Sale(Sale {
                customer: Str::from(customer),
                transaction_id: tx.transaction_id.clone(),
                items: tx.items.clone(),
            }),
        })
    }
}

/// The body of a [`EventKind::Sale`].
#[derive(Clone, Debug, PartialEq)]
pub struct Sale {
    /// The buyer's resolved customer key.
    pub customer: Str,
    /// The purchase.
    pub transaction_id: Str,
    /// What was sold.
    pub items: Vec<Item>,
}

/// The customer key of an anonymous id nobody has claimed yet.
pub fn anon_key(anonymous_id: &str) -> String {
    let mut k = String::with_capacity(5 + anonymous_id.len());
    k.push_str("anon:");
    k.push_str(anonymous_id);
    k
}

/// An event's typed body, one variant per `type`.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// `page_view`.
    PageView,
    /// `view_item`.
    ViewItem {
        /// The items viewed, where the event lists them.
        items: Vec<Item>,
    },
    /// `search`.
    Search {
        /// The search terms.
        query: Option<Str>,
    },
    /// `view_cart`: cart activity.
    ViewCart {
        /// The cart, else the customer's default cart.
        cart_id: Option<Str>,
    },
    /// `begin_checkout`: cart activity.
    BeginCheckout {
        /// The cart, else the customer's default cart.
        cart_id: Option<Str>,
    },
    /// `add_to_cart`.
    AddToCart(CartChange),
    /// `remove_from_cart`.
    RemoveFromCart(CartChange),
    /// `identify`: links `anonymous_id` to `user_id` from its timestamp on.
    Identify,
    /// `location`: a position ping.
    Location {
        /// WGS84 latitude, degrees.
        lat: f64,
        /// WGS84 longitude, degrees.
        lon: f64,
        /// Accuracy radius in metres.
        accuracy_m: Option<f64>,
    },
    /// `purchase`.
    Purchase(Transaction),
    /// `refund`.
    Refund(Transaction),
    /// `profile`: an upsert; absent fields keep their earlier value.
    Profile(Profile),
    /// `erase`: the right to be forgotten.
    Erase,
    /// `stock`: an upsert of one lot.
    Stock(Lot),
    /// `store`: store reference data.
    Store(Store),
    /// `weather`: an observation.
    Weather(Weather),
    /// A purchase's items re-keyed to its store (never on the wire): what the store's
    /// worker needs of a sale that the customer's worker saw. See [`Event::sale`].
    Sale(Sale),
}

impl EventKind {
    /// A small number per variant, for [`Interest`] sets.
    pub const fn index(&self) -> u32 {
        match self {
            EventKind::PageView => 0,
            EventKind::ViewItem { .. } => 1,
            EventKind::Search { .. } => 2,
            EventKind::ViewCart { .. } => 3,
            EventKind::BeginCheckout { .. } => 4,
            EventKind::AddToCart(_) => 5,
            EventKind::RemoveFromCart(_) => 6,
            EventKind::Identify => 7,
            EventKind::Location { .. } => 8,
            EventKind::Purchase(_) => 9,
            EventKind::Refund(_) => 10,
            EventKind::Profile(_) => 11,
            EventKind::Erase => 12,
            EventKind::Stock(_) => 13,
            EventKind::Store(_) => 14,
            EventKind::Weather(_) => 15,
            EventKind::Sale(_) => 16,
        }
    }

    /// The `type` as it stands on the wire.
    pub const fn type_name(&self) -> &'static str {
        TYPES[self.index() as usize]
    }
}

/// Every event `type`, in [`EventKind::index`] order.
pub const TYPES: [&str; 17] = [
    "page_view",
    "view_item",
    "search",
    "view_cart",
    "begin_checkout",
    "add_to_cart",
    "remove_from_cart",
    "identify",
    "location",
    "purchase",
    "refund",
    "profile",
    "erase",
    "stock",
    "store",
    "weather",
    "sale",
];

/// A set of event types: what an operator consumes. Events no operator consumes are
/// still decoded, validated, deduplicated and move the clock, but are not routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest(u32);

impl Interest {
    /// Every type.
    pub const ALL: Interest = Interest(u32::MAX);
    /// No type.
    pub const NONE: Interest = Interest(0);

    /// The set of the named `type`s (as on the wire, e.g. `"add_to_cart"`).
    pub fn types(names: &[&str]) -> Interest {
        Interest(names.iter().fold(0, |m, n| {
            let i = TYPES.iter().position(|t| t == n);
            debug_assert!(i.is_some(), "unknown event type {n}");
            i.map_or(m, |i| m | (1 << i))
        }))
    }

    /// Whether `kind` is in the set.
    pub const fn wants(self, kind: &EventKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    /// The union.
    pub const fn union(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }
}

/// A line item (GA4 names).
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The item (SKU).
    pub item_id: Str,
    /// Display name.
    pub item_name: Option<Str>,
    /// Category, e.g. `dairy`.
    pub item_category: Option<Str>,
    /// Unit price.
    pub price: Option<Decimal>,
    /// A positive integer, default 1.
    pub quantity: u32,
}

/// The body of `add_to_cart` / `remove_from_cart`.
#[derive(Clone, Debug, PartialEq)]
pub struct CartChange {
    /// The cart, else the customer's default cart.
    pub cart_id: Option<Str>,
    /// ISO 4217 code.
    pub currency: Option<Str>,
    /// What was added or removed.
    pub items: Vec<Item>,
}

/// The body of `purchase` / `refund`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transaction {
    /// The order.
    pub transaction_id: Str,
    /// The cart it checked out, where known.
    pub cart_id: Option<Str>,
    /// ISO 4217 code.
    pub currency: Option<Str>,
    /// Total paid (or refunded).
    pub value: Option<Decimal>,
    /// Tax.
    pub tax: Option<Decimal>,
    /// Shipping.
    pub shipping: Option<Decimal>,
    /// Discount.
    pub discount: Option<Decimal>,
    /// Coupon code.
    pub coupon: Option<Str>,
    /// Payment type.
    pub payment_type: Option<Str>,
    /// Line items.
    pub items: Vec<Item>,
    /// Why it was refunded.
    pub reason: Option<Str>,
}

/// The body of `profile`. `None` means "keep the earlier value".
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Profile {
    /// `YYYY-MM-DD` or `--MM-DD`.
    pub birthday: Option<Str>,
    /// IANA zone name.
    pub timezone: Option<Str>,
    /// The customer's home store.
    pub home_store_id: Option<Str>,
    /// Loyalty tier.
    pub tier: Option<Str>,
    /// Channel → consent.
    pub consent: Option<BTreeMap<String, bool>>,
    /// SHA-256 of the e-mail address.
    pub email_sha256: Option<Str>,
    /// SHA-256 of the phone number.
    pub phone_sha256: Option<Str>,
}

/// The body of `stock`: one lot.
#[derive(Clone, Debug, PartialEq)]
pub struct Lot {
    /// The item (SKU).
    pub item_id: Str,
    /// Category.
    pub item_category: Option<Str>,
    /// The lot.
    pub lot_id: Str,
    /// Units on hand.
    pub on_hand: u64,
    /// Current shelf price.
    pub price: Option<Decimal>,
    /// ISO 4217 code.
    pub currency: Option<Str>,
    /// Best-before.
    pub expires_at: Option<Timestamp>,
}

/// The body of `store`.
#[derive(Clone, Debug, PartialEq)]
pub struct Store {
    /// WGS84 latitude.
    pub lat: f64,
    /// WGS84 longitude.
    pub lon: f64,
    /// IANA zone name.
    pub timezone: Option<Str>,
    /// Region, for regional weather.
    pub region: Option<Str>,
}

/// The body of `weather`.
#[derive(Clone, Debug, PartialEq)]
pub struct Weather {
    /// The region, when the observation is regional rather than per store.
    pub region: Option<Str>,
    /// Temperature, °C.
    pub temp_c: f64,
    /// `clear`, `clouds`, `rain`, `snow`, `storm`, `fog`.
    pub condition: Str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_sets_match_wire_types() {
        let i = Interest::types(&["add_to_cart", "purchase"]);
        let add = EventKind::AddToCart(CartChange {
            cart_id: None,
            currency: None,
            items: Vec::new(),
        });
        assert!(i.wants(&add));
        assert!(!i.wants(&EventKind::PageView));
        assert!(
            i.union(Interest::types(&["page_view"]))
                .wants(&EventKind::PageView)
        );
        assert!(Interest::ALL.wants(&EventKind::Erase) && !Interest::NONE.wants(&EventKind::Erase));
        assert_eq!(add.type_name(), "add_to_cart");
        assert_eq!(
            EventKind::Weather(Weather {
                region: None,
                temp_c: 1.0,
                condition: "fog".into()
            })
            .type_name(),
            "weather"
        );
    }
}

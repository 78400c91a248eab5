//! Raw record bytes → a validated [`Event`], or a precise reason why not.
//!
//! Bad input is data, not an error path: every rejection carries a bounded
//! [`Reason`] (a metric label) and a message naming the field, e.g.
//! `items[0].price: invalid decimal "12,90"`.

use std::borrow::Cow;
use std::fmt;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use sonic_rs::LazyValue;

use crate::event::{
    CartChange, Event, EventKind, Item, Lot, Profile, Store, Str, Topic, Transaction, Weather,
};
use crate::money::parse_money;
use wire::{Head, RawText, WireItem};

mod wire;
use crate::time::{Span, Timestamp};

/// The largest record footfall accepts, in bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// How far in the future (against the wall clock at receipt) an event time may be.
pub const MAX_FUTURE: Span = Span::from_secs(86_400);

/// Why a record went to `deadletter`: a bounded set, used as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Over [`MAX_RECORD_BYTES`].
    TooLarge,
    /// Not valid UTF-8.
    NotUtf8,
    /// Not a JSON object.
    MalformedJson,
    /// A field of the wrong JSON type.
    WrongType,
    /// A required field is absent, null or empty.
    MissingField,
    /// A `type` the topic does not have.
    UnknownType,
    /// A money field that is not a plain decimal.
    InvalidMoney,
    /// A quantity that is not a positive integer.
    InvalidQuantity,
    /// A timestamp that is not RFC 3339 with an offset.
    InvalidTimestamp,
    /// A timestamp more than [`MAX_FUTURE`] ahead of the wall clock.
    FutureTimestamp,
    /// Any other out-of-range value (latitude, weather condition, ...).
    InvalidValue,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 11] = [
        Reason::TooLarge,
        Reason::NotUtf8,
        Reason::MalformedJson,
        Reason::WrongType,
        Reason::MissingField,
        Reason::UnknownType,
        Reason::InvalidMoney,
        Reason::InvalidQuantity,
        Reason::InvalidTimestamp,
        Reason::FutureTimestamp,
        Reason::InvalidValue,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::NotUtf8 => "not_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::WrongType => "wrong_type",
            Reason::MissingField => "missing_field",
            Reason::UnknownType => "unknown_type",
            Reason::InvalidMoney => "invalid_money",
            Reason::InvalidQuantity => "invalid_quantity",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::InvalidValue => "invalid_value",
        }
    }
}

/// A record footfall cannot use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The bounded category.
    pub reason: Reason,
    /// What exactly is wrong, naming the field.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

fn err(reason: Reason, message: impl Into<String>) -> DecodeError {
    DecodeError {
        reason,
        message: message.into(),
    }
}

/// Weather conditions the spec names.
pub const CONDITIONS: [&str; 6] = ["clear", "clouds", "rain", "snow", "storm", "fog"];

/// Decodes and validates one record of `topic`. `now` is the wall clock at receipt,
/// against which far-future timestamps are judged.
pub fn decode(topic: Topic, bytes: &[u8], now: Timestamp) -> Result<Event, DecodeError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(err(
            Reason::TooLarge,
            format!(
                "record is {} bytes, over the limit of {MAX_RECORD_BYTES}",
                bytes.len()
            ),
        ));
    }
    // The fast path: simdutf8 checks UTF-8 and sonic-rs parses, both with SIMD. Anything it rejects is
    // parsed again by serde_json, whose errors name the field and are what dead-letter
    // records carry. Records with escapes take the serde_json path too: sonic-rs skips
    // `\u` escapes in ignored fields without checking them. So both paths always agree
    // on the outcome (the parity test below fuzzes this).
    if memchr::memchr(b'\\', bytes).is_none()
        && let Ok(text) = simdutf8::basic::from_utf8(bytes)
        && let Some(decided) = decode_fast(topic, text, now)
    {
        return decided;
    }
    decode_slow(topic, bytes, now)
}

/// Parses with sonic-rs; `None` when it rejects the record.
fn decode_fast(topic: Topic, text: &str, now: Timestamp) -> Option<Result<Event, DecodeError>> {
    fn parse<'a, W: Deserialize<'a>>(text: &'a str) -> Option<W> {
        sonic_rs::from_str(text).ok()
    }
    type Lazy<'a> = LazyValue<'a>;
    Some(match topic {
        Topic::Clickstream => clickstream::<Lazy<'_>>(parse(text)?, now),
        Topic::Transactions => transactions::<Lazy<'_>>(parse(text)?, now),
        Topic::Customers => customers::<Lazy<'_>>(parse(text)?, now),
        Topic::Inventory => inventory::<Lazy<'_>>(parse(text)?, now),
        Topic::Stores => stores::<Lazy<'_>>(parse(text)?, now),
        Topic::Weather => weather::<Lazy<'_>>(parse(text)?, now),
    })
}

/// Decodes with serde_json only: the reference path, and the one that explains errors.
fn decode_slow(topic: Topic, bytes: &[u8], now: Timestamp) -> Result<Event, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        err(
            Reason::NotUtf8,
            format!(
                "record is not valid UTF-8 (invalid byte at {})",
                e.valid_up_to()
            ),
        )
    })?;
    if !text.trim_start().starts_with('{') {
        return Err(err(Reason::MalformedJson, "record is not a JSON object"));
    }
    fn parse<'a, W: Deserialize<'a>>(text: &'a str) -> Result<W, DecodeError> {
        serde_json::from_str(text).map_err(|e| json_error::<W>(text, e))
    }
    type Raw<'a> = &'a RawValue;
    match topic {
        Topic::Clickstream => clickstream::<Raw<'_>>(parse(text)?, now),
        Topic::Transactions => transactions::<Raw<'_>>(parse(text)?, now),
        Topic::Customers => customers::<Raw<'_>>(parse(text)?, now),
        Topic::Inventory => inventory::<Raw<'_>>(parse(text)?, now),
        Topic::Stores => stores::<Raw<'_>>(parse(text)?, now),
        Topic::Weather => weather::<Raw<'_>>(parse(text)?, now),
    }
}

/// Re-parses a record that failed as a `W`, to name the field the error is in.
fn json_error<'a, W: Deserialize<'a>>(text: &'a str, e: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            err(Reason::MalformedJson, format!("malformed JSON: {e}"))
        }
        Category::Data => {
            let mut de = serde_json::Deserializer::from_str(text);
            let path = match serde_path_to_error::deserialize::<_, W>(&mut de) {
                Err(pe) => pe.path().to_string(),
                Ok(_) => String::from("."),
            };
            err(Reason::WrongType, format!("{path}: {e}"))
        }
    }
}

/// Treats an empty string as absent: no id, name or code is meaningfully "".
fn present(s: Option<Str>) -> Option<Str> {
    s.filter(|s| !s.is_empty())
}

fn required(field: &str, s: Option<Str>) -> Result<Str, DecodeError> {
    present(s).ok_or_else(|| err(Reason::MissingField, format!("{field}: required field")))
}

fn required_cow<'a>(field: &str, s: Option<Cow<'a, str>>) -> Result<Cow<'a, str>, DecodeError> {
    s.filter(|s| !s.is_empty())
        .ok_or_else(|| err(Reason::MissingField, format!("{field}: required field")))
}

fn money<M: RawText>(field: &str, raw: Option<M>) -> Result<Option<Decimal>, DecodeError> {
    raw.map(|r| {
        parse_money(r.text()).map_err(|m| err(Reason::InvalidMoney, format!("{field}: {m}")))
    })
    .transpose()
}

fn timestamp(field: &str, s: &str) -> Result<Timestamp, DecodeError> {
    Timestamp::parse_rfc3339(s).map_err(|e| {
        // A valid date past what footfall can represent is far in the future.
        let reason = if e.contains("after 2262") {
            Reason::FutureTimestamp
        } else {
            Reason::InvalidTimestamp
        };
        err(
            reason,
            format!("{field}: invalid RFC 3339 timestamp {s:?}: {e}"),
        )
    })
}

fn items<M: RawText>(wire: Option<Vec<WireItem<M>>>) -> Result<Vec<Item>, DecodeError> {
    let Some(wire) = wire else {
        return Ok(Vec::new());
    };
    // Field paths are formatted only on the error path.
    let at = |i: usize, field: &str, reason: Reason, what: String| {
        err(reason, format!("items[{i}].{field}: {what}"))
    };
    wire.into_iter()
        .enumerate()
        .map(|(i, it)| {
            let item_id = present(it.item_id)
                .ok_or_else(|| at(i, "item_id", Reason::MissingField, "required field".into()))?;
            let price = match it.price {
                Some(raw) => Some(
                    parse_money(raw.text()).map_err(|m| at(i, "price", Reason::InvalidMoney, m))?,
                ),
                None => None,
            };
            let quantity = match it.quantity {
                None => 1,
                Some(q) if q > 0 && q <= i64::from(u32::MAX) => q as u32,
                Some(q) => {
                    return Err(at(
                        i,
                        "quantity",
                        Reason::InvalidQuantity,
                        format!("must be a positive integer, got {q}"),
                    ));
                }
            };
            Ok(Item {
                item_id,
                item_name: present(it.item_name),
                item_category: present(it.item_category),
                price,
                quantity,
            })
        })
        .collect()
}

fn coordinate(field: &str, v: Option<f64>, limit: f64) -> Result<f64, DecodeError> {
    match v {
        None => Err(err(
            Reason::MissingField,
            format!("{field}: required field"),
        )),
        Some(x) if x.is_finite() && x.abs() <= limit => Ok(x),
        Some(x) => Err(err(
            Reason::InvalidValue,
            format!("{field}: {x} is outside [-{limit}, {limit}]"),
        )),
    }
}

/// The validated envelope every topic shares.
struct Envelope<'a> {
    message_id: Str,
    kind_name: Cow<'a, str>,
    ts: Timestamp,
    user_id: Option<Str>,
    anonymous_id: Option<Str>,
    channel: Option<Str>,
    store_id: Option<Str>,
}

impl<'a> Envelope<'a> {
    fn check(h: Head<'a>, now: Timestamp) -> Result<Self, DecodeError> {
        let message_id = required("message_id", h.message_id)?;
        let kind_name = required_cow("type", h.kind)?;
        let ts_text = required_cow("timestamp", h.timestamp)?;
        let ts = timestamp("timestamp", &ts_text)?;
        if ts > now.plus(MAX_FUTURE) {
            return Err(err(
                Reason::FutureTimestamp,
                format!("timestamp: {ts_text} is more than 1 day in the future"),
            ));
        }
        Ok(Envelope {
            message_id,
            kind_name,
            ts,
            user_id: present(h.user_id),
            anonymous_id: present(h.anonymous_id),
            channel: present(h.channel),
            store_id: present(h.store_id),
        })
    }

    fn unknown(&self, topic: Topic) -> DecodeError {
        err(
            Reason::UnknownType,
            format!(
                "type: unknown event type {:?} for topic {topic}",
                self.kind_name
            ),
        )
    }

    fn finish(self, topic: Topic, kind: EventKind) -> Result<Event, DecodeError> {
        if matches!(topic, Topic::Clickstream | Topic::Transactions)
            && self.user_id.is_none()
            && self.anonymous_id.is_none()
        {
            return Err(err(
                Reason::MissingField,
                "user_id/anonymous_id: a customer event needs one of them",
            ));
        }
        Ok(Event {
            message_id: self.message_id,
            timestamp: self.ts,
            user_id: self.user_id,
            anonymous_id: self.anonymous_id,
            channel: self.channel,
            store_id: self.store_id,
            kind,
        })
    }
}

fn clickstream<M: RawText>(
    mut w: wire::Click<'_, M>,
    now: Timestamp,
) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Clickstream;
    let env = Envelope::check(w.head(), now)?;
    let kind = match env.kind_name.as_ref() {
        "page_view" => EventKind::PageView,
        "view_item" => EventKind::ViewItem {
            items: items(w.items)?,
        },
        "search" => EventKind::Search {
            query: present(w.query),
        },
        "view_cart" => EventKind::ViewCart {
            cart_id: present(w.cart_id),
        },
        "begin_checkout" => EventKind::BeginCheckout {
            cart_id: present(w.cart_id),
        },
        "add_to_cart" | "remove_from_cart" => {
            if w.items.is_none() {
                return Err(err(Reason::MissingField, "items: required field"));
            }
            let change = CartChange {
                cart_id: present(w.cart_id),
                currency: present(w.currency),
                items: items(w.items)?,
            };
            if env.kind_name == "add_to_cart" {
                EventKind::AddToCart(change)
            } else {
                EventKind::RemoveFromCart(change)
            }
        }
        "identify" => {
            if env.user_id.is_none() || env.anonymous_id.is_none() {
                return Err(err(
                    Reason::MissingField,
                    "identify: needs both user_id and anonymous_id",
                ));
            }
            EventKind::Identify
        }
        "location" => EventKind::Location {
            lat: coordinate("lat", w.lat, 90.0)?,
            lon: coordinate("lon", w.lon, 180.0)?,
            accuracy_m: w.accuracy_m,
        },
        _ => return Err(env.unknown(TOPIC)),
    };
    env.finish(TOPIC, kind)
}

fn transactions<M: RawText>(mut w: wire::Tx<'_, M>, now: Timestamp) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Transactions;
    let env = Envelope::check(w.head(), now)?;
    let kind = {
        let is_purchase = match env.kind_name.as_ref() {
            "purchase" => true,
            "refund" => false,
            _ => return Err(env.unknown(TOPIC)),
        };
        let tx = Transaction {
            transaction_id: required("transaction_id", w.transaction_id)?,
            cart_id: present(w.cart_id),
            currency: present(w.currency),
            value: money("value", w.value)?,
            tax: money("tax", w.tax)?,
            shipping: money("shipping", w.shipping)?,
            discount: money("discount", w.discount)?,
            coupon: present(w.coupon),
            payment_type: present(w.payment_type),
            items: items(w.items)?,
            reason: present(w.reason),
        };
        if is_purchase {
            EventKind::Purchase(tx)
        } else {
            EventKind::Refund(tx)
        }
    };
    env.finish(TOPIC, kind)
}

fn customers<M: RawText>(
    mut w: wire::Customer<'_, M>,
    now: Timestamp,
) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Customers;
    let env = Envelope::check(w.head(), now)?;
    let kind = {
        if env.user_id.is_none() {
            return Err(err(Reason::MissingField, "user_id: required field"));
        }
        match env.kind_name.as_ref() {
            "profile" => {
                if let Some(b) = w.birthday.as_deref() {
                    validate_birthday(b)?;
                }
                EventKind::Profile(Profile {
                    birthday: present(w.birthday),
                    timezone: present(w.timezone),
                    home_store_id: present(w.home_store_id),
                    tier: present(w.tier),
                    consent: w.consent,
                    email_sha256: present(w.email_sha256),
                    phone_sha256: present(w.phone_sha256),
                })
            }
            "erase" => EventKind::Erase,
            _ => return Err(env.unknown(TOPIC)),
        }
    };
    env.finish(TOPIC, kind)
}

fn inventory<M: RawText>(mut w: wire::Stock<'_, M>, now: Timestamp) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Inventory;
    let mut env = Envelope::check(w.head(), now)?;
    let kind = {
        if env.kind_name != "stock" {
            return Err(env.unknown(TOPIC));
        }
        env.store_id = Some(required("store_id", env.store_id.take())?);
        let on_hand = match w.on_hand {
            None => return Err(err(Reason::MissingField, "on_hand: required field")),
            Some(n) if n >= 0 => n as u64,
            Some(n) => {
                return Err(err(
                    Reason::InvalidQuantity,
                    format!("on_hand: must be an integer >= 0, got {n}"),
                ));
            }
        };
        let expires_at = match present(w.expires_at) {
            Some(s) => Some(timestamp("expires_at", &s)?),
            None => None,
        };
        EventKind::Stock(Lot {
            item_id: required("item_id", w.item_id)?,
            item_category: present(w.item_category),
            lot_id: required("lot_id", w.lot_id)?,
            on_hand,
            price: money("price", w.price)?,
            currency: present(w.currency),
            expires_at,
        })
    };
    env.finish(TOPIC, kind)
}

fn stores<M: RawText>(mut w: wire::StoreRec<'_, M>, now: Timestamp) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Stores;
    let mut env = Envelope::check(w.head(), now)?;
    let kind = {
        if env.kind_name != "store" {
            return Err(env.unknown(TOPIC));
        }
        env.store_id = Some(required("store_id", env.store_id.take())?);
        EventKind::Store(Store {
            lat: coordinate("lat", w.lat, 90.0)?,
            lon: coordinate("lon", w.lon, 180.0)?,
            timezone: present(w.timezone),
            region: present(w.region),
        })
    };
    env.finish(TOPIC, kind)
}

fn weather<M: RawText>(
    mut w: wire::WeatherRec<'_, M>,
    now: Timestamp,
) -> Result<Event, DecodeError> {
    const TOPIC: Topic = Topic::Weather;
    let env = Envelope::check(w.head(), now)?;
    let kind = {
        if env.kind_name != "weather" {
            return Err(env.unknown(TOPIC));
        }
        let region = present(w.region);
        if env.store_id.is_none() && region.is_none() {
            return Err(err(
                Reason::MissingField,
                "store_id/region: a weather observation needs one of them",
            ));
        }
        let temp_c = match w.temp_c {
            Some(t) if t.is_finite() => t,
            Some(t) => return Err(err(Reason::InvalidValue, format!("temp_c: {t}"))),
            None => return Err(err(Reason::MissingField, "temp_c: required field")),
        };
        let condition = required("condition", w.condition)?;
        if !CONDITIONS.contains(&condition.as_str()) {
            return Err(err(
                Reason::InvalidValue,
                format!(
                    "condition: {condition:?} is not one of {}",
                    CONDITIONS.join(", ")
                ),
            ));
        }
        EventKind::Weather(Weather {
            region,
            temp_c,
            condition,
        })
    };
    env.finish(TOPIC, kind)
}

/// `YYYY-MM-DD` or `--MM-DD`, a real calendar day (29 February allowed).
fn validate_birthday(b: &str) -> Result<(), DecodeError> {
    let bad = || {
        err(
            Reason::InvalidValue,
            format!("birthday: {b:?} is not YYYY-MM-DD or --MM-DD"),
        )
    };
    let md = if let Some(md) = b.strip_prefix("--") {
        md
    } else {
        let (y, md) = b.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || !y.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        md
    };
    let (m, d) = md.split_once('-').ok_or_else(bad)?;
    if m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let (m, d): (u32, u32) = match (m.parse::<u32>(), d.parse::<u32>()) {
        (Ok(m), Ok(d)) => (m, d),
        _ => return Err(bad()),
    };
    let max = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => 29,
        _ => return Err(bad()),
    };
    if d == 0 || d > max {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests;

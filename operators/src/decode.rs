//! Raw record bytes → a validated [`Event`], or a precise reason why not.
//!
//! Bad input is data, not an error path: every rejection carries a bounded
//! [`Reason`] (a metric label) and a message naming the field, e.g.
//! `items[0].price: invalid decimal "12,90"`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{
    CartChange, Event, EventKind, Item, Lot, Profile, Store, Str, Topic, Transaction, Weather,
};
use crate::money::parse_money;
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

/// Every field any topic may carry; validation per topic and type happens after.
#[derive(Deserialize)]
struct Wire<'a> {
    message_id: Option<Str>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    user_id: Option<Str>,
    anonymous_id: Option<Str>,
    channel: Option<Str>,
    store_id: Option<Str>,
    cart_id: Option<Str>,
    currency: Option<Str>,
    query: Option<Str>,
    #[serde(borrow)]
    items: Option<Vec<WireItem<'a>>>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    transaction_id: Option<Str>,
    #[serde(borrow)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    tax: Option<&'a RawValue>,
    #[serde(borrow)]
    shipping: Option<&'a RawValue>,
    #[serde(borrow)]
    discount: Option<&'a RawValue>,
    coupon: Option<Str>,
    payment_type: Option<Str>,
    reason: Option<Str>,
    birthday: Option<Str>,
    timezone: Option<Str>,
    home_store_id: Option<Str>,
    tier: Option<Str>,
    consent: Option<BTreeMap<String, bool>>,
    email_sha256: Option<Str>,
    phone_sha256: Option<Str>,
    item_id: Option<Str>,
    item_category: Option<Str>,
    lot_id: Option<Str>,
    on_hand: Option<i64>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    expires_at: Option<Str>,
    region: Option<Str>,
    temp_c: Option<f64>,
    condition: Option<Str>,
}

#[derive(Deserialize)]
struct WireItem<'a> {
    item_id: Option<Str>,
    item_name: Option<Str>,
    item_category: Option<Str>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    quantity: Option<i64>,
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
    let wire: Wire<'_> = match serde_json::from_str(text) {
        Ok(w) => w,
        Err(e) => return Err(json_error(text, e)),
    };
    validate(topic, wire, now)
}

/// Re-parses a record that failed, to name the field the error is in.
fn json_error(text: &str, e: serde_json::Error) -> DecodeError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            err(Reason::MalformedJson, format!("malformed JSON: {e}"))
        }
        Category::Data => {
            let mut de = serde_json::Deserializer::from_str(text);
            let path = match serde_path_to_error::deserialize::<_, Wire<'_>>(&mut de) {
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

fn money(field: &str, raw: Option<&RawValue>) -> Result<Option<Decimal>, DecodeError> {
    raw.map(|r| parse_money(r).map_err(|m| err(Reason::InvalidMoney, format!("{field}: {m}"))))
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

fn items(wire: Option<Vec<WireItem<'_>>>) -> Result<Vec<Item>, DecodeError> {
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
                Some(raw) => {
                    Some(parse_money(raw).map_err(|m| at(i, "price", Reason::InvalidMoney, m))?)
                }
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

fn validate(topic: Topic, w: Wire<'_>, now: Timestamp) -> Result<Event, DecodeError> {
    let message_id = required("message_id", w.message_id)?;
    let kind_name = required_cow("type", w.kind)?;
    let ts_text = required_cow("timestamp", w.timestamp)?;
    let ts = timestamp("timestamp", &ts_text)?;
    if ts > now.plus(MAX_FUTURE) {
        return Err(err(
            Reason::FutureTimestamp,
            format!("timestamp: {ts_text} is more than 1 day in the future"),
        ));
    }
    let user_id = present(w.user_id);
    let anonymous_id = present(w.anonymous_id);
    let mut store_id = present(w.store_id);

    let unknown = || {
        err(
            Reason::UnknownType,
            format!("type: unknown event type {kind_name:?} for topic {topic}"),
        )
    };
    let kind = match topic {
        Topic::Clickstream => match kind_name.as_ref() {
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
                if kind_name == "add_to_cart" {
                    EventKind::AddToCart(change)
                } else {
                    EventKind::RemoveFromCart(change)
                }
            }
            "identify" => {
                if user_id.is_none() || anonymous_id.is_none() {
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
            _ => return Err(unknown()),
        },
        Topic::Transactions => {
            let is_purchase = match kind_name.as_ref() {
                "purchase" => true,
                "refund" => false,
                _ => return Err(unknown()),
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
        }
        Topic::Customers => {
            if user_id.is_none() {
                return Err(err(Reason::MissingField, "user_id: required field"));
            }
            match kind_name.as_ref() {
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
                _ => return Err(unknown()),
            }
        }
        Topic::Inventory => {
            if kind_name != "stock" {
                return Err(unknown());
            }
            store_id = Some(required("store_id", store_id)?);
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
        }
        Topic::Stores => {
            if kind_name != "store" {
                return Err(unknown());
            }
            store_id = Some(required("store_id", store_id)?);
            EventKind::Store(Store {
                lat: coordinate("lat", w.lat, 90.0)?,
                lon: coordinate("lon", w.lon, 180.0)?,
                timezone: present(w.timezone),
                region: present(w.region),
            })
        }
        Topic::Weather => {
            if kind_name != "weather" {
                return Err(unknown());
            }
            let region = present(w.region);
            if store_id.is_none() && region.is_none() {
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
        }
    };
    if matches!(topic, Topic::Clickstream | Topic::Transactions)
        && user_id.is_none()
        && anonymous_id.is_none()
    {
        return Err(err(
            Reason::MissingField,
            "user_id/anonymous_id: a customer event needs one of them",
        ));
    }
    Ok(Event {
        message_id,
        timestamp: ts,
        user_id,
        anonymous_id,
        channel: present(w.channel),
        store_id,
        kind,
    })
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
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-20T12:00:00Z").unwrap()
    }

    fn reject(topic: Topic, s: &[u8]) -> DecodeError {
        decode(topic, s, now()).unwrap_err()
    }

    #[test]
    fn decodes_the_spec_example() {
        let ev = decode(
            Topic::Clickstream,
            br#"{"message_id":"c-000001","type":"add_to_cart","timestamp":"2026-11-20T10:15:00Z",
 "anonymous_id":"dev-7f3a","user_id":"m-1001","session_id":"s-42","channel":"app",
 "cart_id":"cart-88","currency":"CNY",
 "items":[{"item_id":"sku-123","item_name":"Oat milk 1L","item_category":"dairy","price":"12.90","quantity":2}]}"#,
            now(),
        )
        .unwrap();
        assert_eq!(ev.raw_customer_key().as_deref(), Some("m-1001"));
        let EventKind::AddToCart(c) = ev.kind else {
            panic!("not a cart change")
        };
        assert_eq!(c.cart_id.as_deref(), Some("cart-88"));
        assert_eq!(c.items[0].price.unwrap().to_string(), "12.90");
        assert_eq!(c.items[0].quantity, 2);
    }

    #[test]
    fn money_as_number_is_exact() {
        let ev = decode(
            Topic::Transactions,
            br#"{"message_id":"t","type":"purchase","timestamp":"2026-11-20T10:40:00Z","user_id":"u","transaction_id":"o","value":25.8}"#,
            now(),
        )
        .unwrap();
        let EventKind::Purchase(tx) = ev.kind else {
            panic!("not a purchase")
        };
        assert_eq!(tx.value.unwrap().to_string(), "25.8");
    }

    #[test]
    fn each_bad_input_has_a_precise_reason() {
        let e = reject(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"add_to_cart","timestamp":"2026-11-20T10:15:00Z","user_id":"u","items":[{"item_id":"a","price":"12,90"}]}"#,
        );
        assert_eq!(e.reason, Reason::InvalidMoney);
        assert_eq!(e.message, r#"items[0].price: invalid decimal "12,90""#);

        let e = reject(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"add_to_cart","timestamp":"2026-11-20T10:15:00Z","user_id":"u","items":[{"item_id":"a","quantity":0}]}"#,
        );
        assert_eq!(e.reason, Reason::InvalidQuantity);
        assert!(e.message.starts_with("items[0].quantity"), "{}", e.message);

        let e = reject(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"add_to_cart","timestamp":"2026-11-20T10:15:00Z","user_id":"u","items":[{"item_id":"a","quantity":"2"}]}"#,
        );
        assert_eq!(e.reason, Reason::WrongType);
        assert!(
            e.message.starts_with("items[0].quantity: "),
            "{}",
            e.message
        );

        let e = reject(Topic::Clickstream, br#"{"message_id":"m","type":"teleport","timestamp":"2026-11-20T10:15:00Z","user_id":"u"}"#);
        assert_eq!(e.reason, Reason::UnknownType);

        let e = reject(
            Topic::Clickstream,
            br#"{"type":"page_view","timestamp":"2026-11-20T10:15:00Z","user_id":"u"}"#,
        );
        assert_eq!(
            (e.reason, e.message.as_str()),
            (Reason::MissingField, "message_id: required field")
        );

        let e = reject(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"page_view","timestamp":"20/11/2026","user_id":"u"}"#,
        );
        assert_eq!(e.reason, Reason::InvalidTimestamp);

        let e = reject(Topic::Clickstream, br#"{"message_id":"m","type":"page_view","timestamp":"2026-11-22T12:00:01Z","user_id":"u"}"#);
        assert_eq!(e.reason, Reason::FutureTimestamp);

        let e = reject(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"page_view","timestamp":"2026-11-20T10:15:00Z"}"#,
        );
        assert_eq!(e.reason, Reason::MissingField);

        assert_eq!(
            reject(Topic::Clickstream, b"{\"message_id\":").reason,
            Reason::MalformedJson
        );
        assert_eq!(
            reject(Topic::Clickstream, b"[1,2]").reason,
            Reason::MalformedJson
        );
        assert_eq!(
            reject(Topic::Clickstream, b"{\"a\":\"\xff\"}").reason,
            Reason::NotUtf8
        );
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert_eq!(reject(Topic::Clickstream, &big).reason, Reason::TooLarge);
    }

    #[test]
    fn one_day_ahead_is_still_fine() {
        assert!(decode(
            Topic::Clickstream,
            br#"{"message_id":"m","type":"page_view","timestamp":"2026-11-21T12:00:00Z","user_id":"u","extra":{"kept":true}}"#,
            now()
        )
        .is_ok());
    }

    #[test]
    fn birthdays() {
        assert!(validate_birthday("1990-02-29").is_ok());
        assert!(validate_birthday("--12-31").is_ok());
        assert!(validate_birthday("--13-01").is_err());
        assert!(validate_birthday("1990-04-31").is_err());
        assert!(validate_birthday("Feb 3").is_err());
    }
}

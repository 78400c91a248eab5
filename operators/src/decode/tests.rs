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

    let e = reject(
        Topic::Clickstream,
        br#"{"message_id":"m","type":"teleport","timestamp":"2026-11-20T10:15:00Z","user_id":"u"}"#,
    );
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

/// Valid records of every topic, the seeds the parity test mutates.
const SEEDS: [(Topic, &str); 8] = [
    (
        Topic::Clickstream,
        r#"{"message_id":"c-1","type":"add_to_cart","timestamp":"2026-11-20T10:15:00+08:00","anonymous_id":"dev-7f3a","user_id":"m-1001","channel":"app","cart_id":"cart-88","currency":"CNY","items":[{"item_id":"sku-123","item_name":"Oat milk \u00e9 1L","item_category":"dairy","price":"12.90","quantity":2},{"item_id":"sku-9","price":3.5}]}"#,
    ),
    (
        Topic::Clickstream,
        r#"{"message_id":"c-2","type":"location","timestamp":"2026-11-20T10:15:00.250Z","user_id":"m-1","lat":31.2304,"lon":121.4737,"accuracy_m":15}"#,
    ),
    (
        Topic::Clickstream,
        r#"{"message_id":"c-3","type":"identify","timestamp":"2026-11-20T10:15:00Z","user_id":"m-1","anonymous_id":"a-1","extra":{"nested":[1,2,{"x":null}]}}"#,
    ),
    (
        Topic::Transactions,
        r#"{"message_id":"t-1","type":"purchase","timestamp":"2026-11-20T10:40:00Z","user_id":"u","transaction_id":"o-1","cart_id":"cart-88","value":"25.80","tax":1.2e0,"shipping":0,"discount":"-0.5","items":[{"item_id":"sku-1","price":"12.90","quantity":2}]}"#,
    ),
    (
        Topic::Customers,
        r#"{"message_id":"p-1","type":"profile","timestamp":"2026-11-20T10:40:00Z","user_id":"u","birthday":"1990-02-28","timezone":"Asia/Shanghai","tier":"gold","consent":{"push":true,"sms":false}}"#,
    ),
    (
        Topic::Inventory,
        r#"{"message_id":"i-1","type":"stock","timestamp":"2026-11-20T10:40:00Z","store_id":"s-1","item_id":"sku-1","item_category":"dairy","lot_id":"l-1","on_hand":40,"price":"9.90","expires_at":"2026-11-23T00:00:00Z"}"#,
    ),
    (
        Topic::Stores,
        r#"{"message_id":"s-1","type":"store","timestamp":"2026-11-20T10:40:00Z","store_id":"s-1","lat":31.2,"lon":121.4,"timezone":"Asia/Shanghai","region":"east"}"#,
    ),
    (
        Topic::Weather,
        r#"{"message_id":"w-1","type":"weather","timestamp":"2026-11-20T10:40:00Z","store_id":"s-1","temp_c":31.5,"condition":"clear"}"#,
    ),
];

#[test]
fn the_seeds_are_valid() {
    for (topic, text) in SEEDS {
        if let Err(e) = decode(topic, text.as_bytes(), now()) {
            panic!("{topic} seed rejected: {e}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

    /// The SIMD fast path and the serde_json reference path decide every record the
    /// same way: the same event, or the same reason and message.
    #[test]
    fn fast_and_reference_paths_agree(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((0usize..400, 0u8..4, proptest::sample::select(
            b"\"\\,.:-+0179eE{}[] \t\x01\xff\xc3nulltrfa".to_vec(),
        )), 1..4),
    ) {
        let (topic, text) = SEEDS[seed];
        let mut bytes = text.as_bytes().to_vec();
        for (at, op, b) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = b,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                2 => bytes.insert(at, b),
                _ => bytes.truncate(at),
            }
        }
        let fast = decode(topic, &bytes, now());
        let reference = decode_slow(topic, &bytes, now());
        proptest::prop_assert_eq!(
            fast,
            reference,
            "record: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

//! The identity graph: devices merging into a login, hard-id conflicts, placeholder ids.

use super::*;
use crate::config::TriggersConfig;
use crate::testing::Script;
use crate::triggers;

fn event(kind: EventKind, user: Option<&str>, anon: Option<&str>, secs: i64) -> Event {
    Event {
        message_id: Str::from("m"),
        timestamp: Timestamp::from_secs(secs),
        user_id: user.map(Str::from),
        anonymous_id: anon.map(Str::from),
        channel: None,
        store_id: None,
        kind,
    }
}

fn profile(user: &str, email: &str, secs: i64) -> Event {
    let p = crate::event::Profile {
        email_sha256: Some(Str::from(email)),
        ..Default::default()
    };
    event(EventKind::Profile(p), Some(user), None, secs)
}

#[test]
fn anonymous_browsing_on_two_devices_then_login_merges_both_carts() {
    let mut cfg = TriggersConfig::default();
    // Both reminders, not one per cooldown.
    cfg.abandoned_cart.cooldown_secs = 0;
    let mut s = Script::new(triggers::build(&cfg));
    let add = |cart: &str, item: &str| {
        format!(
            r#""type":"add_to_cart","cart_id":"{cart}","currency":"CNY","items":[{{"item_id":"{item}","price":"10.00","quantity":1}}]"#
        )
    };
    s.anon_click("phone-1", "2026-11-20T10:00:00Z", &add("cart-p", "a"));
    s.anon_click("laptop-1", "2026-11-20T10:02:00Z", &add("cart-l", "b"));
    s.identify("phone-1", "m-7", "2026-11-20T10:05:00Z");
    s.identify("laptop-1", "m-7", "2026-11-20T10:06:00Z");
    s.advance("2026-11-20T12:00:00Z");
    let actions = s.actions();
    let mut carts: Vec<(String, String)> = actions
        .iter()
        .map(|a| {
            (
                a.customer_id.clone().unwrap_or_default(),
                a.payload["cart_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    carts.sort();
    assert_eq!(
        carts,
        vec![
            ("m-7".to_owned(), "cart-l".to_owned()),
            ("m-7".to_owned(), "cart-p".to_owned())
        ],
        "{actions:?}"
    );
    let ids = s.identity().show("m-7").unwrap();
    let devices: Vec<&str> = ids.anonymous_ids.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(devices, vec!["phone-1", "laptop-1"]);
    assert_eq!(s.identity().show("laptop-1").unwrap().user_id, "m-7");
}

#[test]
fn a_second_user_claiming_the_same_email_is_refused_and_counted() {
    let mut id = Identity::default();
    id.resolve(Topic::Customers, &profile("m-1", "e-hash", 10));
    id.resolve(Topic::Customers, &profile("m-2", "e-hash", 20));
    assert_eq!(id.show("e-hash").unwrap().user_id, "m-1");
    assert_eq!(id.show("m-2"), None, "m-2 got nothing");
    // m-1 changing to another e-mail is a second hard id of the same type: refused.
    id.resolve(Topic::Customers, &profile("m-1", "other-hash", 30));
    assert_eq!(
        id.show("m-1").unwrap().email_sha256.as_deref(),
        Some("e-hash")
    );
    assert_eq!(id.take_counts(), vec![(IdType::EmailSha256, 0, 2)]);
    // Restored from a checkpoint, the graph refuses the same.
    let mut back = Identity::default();
    for (t, v, u) in id.hard_ids() {
        back.restore_hard(t, v, u.clone());
    }
    back.resolve(Topic::Customers, &profile("m-3", "e-hash", 40));
    assert_eq!(back.take_counts(), vec![(IdType::EmailSha256, 0, 1)]);
}

#[test]
fn junk_ids_are_ignored_and_counted() {
    let mut id = Identity::default();
    for junk in [
        "",
        "0",
        "-1",
        "null",
        "undefined",
        "anonymous",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let r = id.resolve(
            Topic::Clickstream,
            &event(EventKind::Identify, Some("m-1"), Some(junk), 10),
        );
        assert!(r.merge.is_none(), "{junk:?} linked");
        assert_eq!(r.key, "m-1");
    }
    assert!(id.is_empty(), "nothing linked");
    // A placeholder user id does not name a customer: the device does.
    let r = id.resolve(
        Topic::Clickstream,
        &event(EventKind::PageView, Some("undefined"), Some("dev-1"), 20),
    );
    assert_eq!(r.key, "anon:dev-1");
    assert_eq!(
        id.take_counts(),
        vec![(IdType::UserId, 1, 0), (IdType::AnonymousId, 7, 0)]
    );
}

#[test]
fn a_customer_keeps_the_latest_twenty_devices() {
    let mut id = Identity::default();
    for d in 0..25 {
        id.resolve(
            Topic::Clickstream,
            &event(
                EventKind::Identify,
                Some("m-1"),
                Some(&format!("dev-{d}")),
                d,
            ),
        );
    }
    let ids = id.show("m-1").unwrap();
    assert_eq!(ids.anonymous_ids.len(), MAX_ANONYMOUS_IDS);
    assert_eq!(
        ids.anonymous_ids[0].0, "dev-5",
        "the five oldest were dropped"
    );
    let r = id.resolve(
        Topic::Clickstream,
        &event(EventKind::PageView, None, Some("dev-0"), 100),
    );
    assert_eq!(r.key, "anon:dev-0");
}

#[test]
fn linking_on_any_event_is_a_choice() {
    let buy = event(EventKind::PageView, Some("m-1"), Some("dev-1"), 10);
    let later = event(EventKind::PageView, None, Some("dev-1"), 20);
    let mut spec = Identity::default();
    spec.resolve(Topic::Clickstream, &buy);
    assert_eq!(spec.resolve(Topic::Clickstream, &later).key, "anon:dev-1");
    let mut any = Identity::default().with_link_any_event(true);
    let r = any.resolve(Topic::Clickstream, &buy);
    assert_eq!(r.merge.map(|m| m.from), Some(Str::from("anon:dev-1")));
    assert_eq!(any.resolve(Topic::Clickstream, &later).key, "m-1");
}

#[test]
fn erase_forgets_links_and_refuses_the_customer_from_then_on() {
    let mut id = Identity::default();
    let link = id.resolve(
        Topic::Clickstream,
        &event(EventKind::Identify, Some("u-1"), Some("a-1"), 10),
    );
    assert_eq!(link.merge.map(|m| m.from), Some(Str::from("anon:a-1")));
    id.resolve(
        Topic::Clickstream,
        &event(EventKind::Identify, Some("u-2"), Some("a-2"), 10),
    );

    let keys = id.erase("u-1");
    assert_eq!(keys, vec![Str::from("u-1"), Str::from("anon:a-1")]);
    assert_eq!(id.len(), 1, "u-2's link stays");
    assert!(id.is_erased("u-1") && id.is_erased("anon:a-1") && !id.is_erased("u-2"));

    let by_user = id.resolve(
        Topic::Clickstream,
        &event(EventKind::PageView, Some("u-1"), None, 20),
    );
    assert!(by_user.erased);
    let by_device = id.resolve(
        Topic::Clickstream,
        &event(EventKind::PageView, None, Some("a-1"), 20),
    );
    assert!(by_device.erased && by_device.key == "anon:a-1");
    let relink = id.resolve(
        Topic::Clickstream,
        &event(EventKind::Identify, Some("u-1"), Some("a-9"), 20),
    );
    assert!(relink.erased && relink.merge.is_none());
    assert_eq!(id.len(), 1, "an erased customer is never linked again");
    let other = id.resolve(
        Topic::Clickstream,
        &event(EventKind::PageView, Some("u-2"), None, 20),
    );
    assert!(!other.erased);

    let mut restored = Identity::default();
    for h in id.erased() {
        restored.restore_erased(h);
    }
    assert!(restored.is_erased("u-1") && !restored.is_erased("u-2"));
}

#[test]
fn e_mail_hashes_kept_as_bytes_read_back_as_they_came_and_still_conflict() {
    let lower = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let upper = lower.to_ascii_uppercase();
    let mut id = Identity::default();
    id.resolve(Topic::Customers, &profile("m-1", lower, 10));
    id.resolve(Topic::Customers, &profile("m-2", &upper, 10));
    // The same hash in capitals is another value, as it always was: no conflict.
    id.resolve(Topic::Customers, &profile("m-3", lower, 20));
    assert_eq!(id.take_counts(), vec![(IdType::EmailSha256, 0, 1)]);
    assert_eq!(id.show(lower).unwrap().user_id, "m-1");
    assert_eq!(id.show(&upper).unwrap().user_id, "m-2");
    assert_eq!(id.show("m-1").unwrap().email_sha256.as_deref(), Some(lower));
    let mut rows: Vec<(IdType, Str, Str)> =
        id.hard_ids().map(|(t, v, u)| (t, v, u.clone())).collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (IdType::EmailSha256, Str::from(upper.as_str()), "m-2".into()),
            (IdType::EmailSha256, Str::from(lower), "m-1".into()),
        ]
    );
}

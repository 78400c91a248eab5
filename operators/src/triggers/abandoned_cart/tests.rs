use super::*;
use crate::action::action_id;
use crate::event::Str;
use crate::testing::{Script, at};
use crate::time::Span;

fn script() -> Script {
    Script::new(vec![Box::new(AbandonedCart::new(
        &AbandonedCartConfig::default(),
    ))])
}

#[test]
fn fires_at_deadline_with_exact_value_and_items() {
    let mut s = script();
    s.click("m-1", "10:00:00", r#""type":"add_to_cart","cart_id":"c1","currency":"CNY","items":[{"item_id":"a","price":"12.90","quantity":2},{"item_id":"b","price":0.1}]"#);
    s.advance("10:29:59");
    assert!(s.actions().is_empty());
    s.advance("11:00:00");
    let a = s.only_action();
    assert_eq!(a.fired_at, at("10:30:00"));
    assert_eq!(a.customer_id.as_deref(), Some("m-1"));
    assert_eq!(a.payload["value"], "25.90");
    assert_eq!(a.payload["currency"], "CNY");
    assert_eq!(a.payload["items"][1]["price"], "0.1");
    assert_eq!(a.payload["last_activity_at"], "2026-11-20T10:00:00Z");
    assert_eq!(a.reason, "cart c1 idle 30m, value 25.90 CNY");
    assert_eq!(a.action_id, action_id(NAME, "1", "c1", at("10:30:00")));
}

#[test]
fn a_restart_from_a_checkpoint_fires_at_the_original_deadline() {
    let build = || -> Vec<Box<dyn Operator>> {
        vec![Box::new(
            AbandonedCart::new(&AbandonedCartConfig::default()),
        )]
    };
    let mut s = script();
    s.click("m-1", "10:00:00", r#""type":"add_to_cart","cart_id":"c1","currency":"CNY","items":[{"item_id":"a","price":"12.90","quantity":2}]"#);
    s.click(
        "m-2",
        "10:05:00",
        r#""type":"add_to_cart","items":[{"item_id":"b","price":"1.05"}]"#,
    );
    s.advance("10:31:00");
    assert_eq!(s.actions().len(), 1, "m-1's cart fired before the restart");
    s.click("m-1", "10:32:00", r#""type":"view_cart","cart_id":"c1""#);
    s.restart(build());
    s.restart(build());
    s.advance("12:00:00");
    let fired: Vec<_> = s
        .actions()
        .iter()
        .map(|a| {
            (
                a.customer_id.clone().unwrap(),
                a.fired_at,
                a.payload["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            ("m-1".into(), at("10:30:00"), "25.80".into()),
            ("m-2".into(), at("10:35:00"), "1.05".into()),
        ],
        "m-1 is in cooldown after its re-armed cart; m-2 fires at its original deadline"
    );
}

#[test]
fn every_activity_resets_the_deadline() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.click("m-1", "10:20:00", r#""type":"view_cart""#);
    s.click("m-1", "10:40:00", r#""type":"begin_checkout""#);
    s.advance("11:09:59");
    assert!(s.actions().is_empty());
    s.advance("12:00:00");
    let a = s.only_action();
    assert_eq!(a.fired_at, at("11:10:00"));
    // The default cart is named by the customer key.
    assert_eq!(a.payload["cart_id"], "m-1");
}

#[test]
fn removal_to_zero_leaves_nothing_to_fire() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5","quantity":2}]"#,
    );
    s.click(
        "m-1",
        "10:05:00",
        r#""type":"remove_from_cart","items":[{"item_id":"a","quantity":3}]"#,
    );
    s.advance("12:00:00");
    assert!(s.actions().is_empty());
    // Re-adding after removal starts from zero, with the latest price.
    s.click(
        "m-1",
        "12:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"4"}]"#,
    );
    s.advance("13:00:00");
    assert_eq!(s.only_action().payload["value"], "4");
}

#[test]
fn latest_add_sets_the_price() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.click(
        "m-1",
        "10:01:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"4.50"}]"#,
    );
    s.advance("12:00:00");
    assert_eq!(s.only_action().payload["value"], "9.00");
}

#[test]
fn purchase_by_cart_id_exits_only_that_cart() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c1","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c2","items":[{"item_id":"b","price":"6"}]"#,
    );
    s.purchase("m-1", "10:10:00", r#""cart_id":"c1""#);
    s.advance("12:00:00");
    assert_eq!(s.only_action().payload["cart_id"], "c2");
}

#[test]
fn purchase_without_cart_id_exits_carts_started_before_it() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c1","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.purchase("m-1", "10:00:00", "");
    s.click(
        "m-1",
        "10:00:01",
        r#""type":"add_to_cart","cart_id":"c2","items":[{"item_id":"b","price":"6"}]"#,
    );
    s.advance("12:00:00");
    assert_eq!(s.only_action().payload["cart_id"], "c2");
}

#[test]
fn another_customers_purchase_changes_nothing() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.purchase("m-2", "10:10:00", "");
    s.advance("12:00:00");
    assert_eq!(s.actions().len(), 1);
}

#[test]
fn min_value_holds_back_cheap_carts() {
    let mut s = Script::new(vec![Box::new(AbandonedCart::new(&AbandonedCartConfig {
        min_value: Decimal::new(1000, 2),
        ..AbandonedCartConfig::default()
    }))]);
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"9.99"}]"#,
    );
    s.click(
        "m-2",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"10.00"}]"#,
    );
    s.advance("12:00:00");
    assert_eq!(s.only_action().customer_id.as_deref(), Some("m-2"));
}

#[test]
fn cooldown_is_measured_between_fired_ats() {
    let mut s = script();
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c1","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.advance("11:00:00"); // fires at 10:30
    s.click(
        "m-1",
        "11:00:00",
        r#""type":"add_to_cart","cart_id":"c2","items":[{"item_id":"b","price":"5"}]"#,
    );
    s.advance("12:00:00"); // 11:30 is within 24 h of 10:30: suppressed
    assert_eq!(s.actions().len(), 1);
    s.click(
        "m-1",
        "2026-11-21T10:00:00Z",
        r#""type":"view_cart","cart_id":"c2""#,
    );
    s.advance("2026-11-21T12:00:00Z"); // 10:30 next day: exactly 24 h later, fires
    let fired: Vec<_> = s.actions().iter().map(|a| a.fired_at).collect();
    assert_eq!(fired, vec![at("10:30:00"), at("2026-11-21T10:30:00Z")]);
}

#[test]
fn notified_cart_rearms_only_on_new_activity() {
    let mut s = Script::new(vec![Box::new(AbandonedCart::new(&AbandonedCartConfig {
        cooldown_secs: 0,
        ..AbandonedCartConfig::default()
    }))]);
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.advance("15:00:00");
    assert_eq!(s.actions().len(), 1);
    s.click("m-1", "15:00:00", r#""type":"view_cart""#);
    s.advance("16:00:00");
    let fired: Vec<_> = s.actions().iter().map(|a| a.fired_at).collect();
    assert_eq!(fired, vec![at("10:30:00"), at("15:30:00")]);
    // Same cart, new deadline: a new action_id.
    assert_ne!(s.actions()[0].action_id, s.actions()[1].action_id);
}

#[test]
fn anonymous_cart_then_identify_fires_for_the_customer() {
    let mut s = script();
    s.anon_click(
        "dev-1",
        "10:00:00",
        r#""type":"add_to_cart","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.identify("dev-1", "m-9", "10:10:00");
    s.anon_click(
        "dev-1",
        "10:20:00",
        r#""type":"add_to_cart","items":[{"item_id":"b","price":"1"}]"#,
    );
    s.advance("12:00:00");
    let a = s.only_action();
    assert_eq!(a.customer_id.as_deref(), Some("m-9"));
    assert_eq!(a.anonymous_id.as_deref(), Some("dev-1"));
    assert_eq!(a.payload["cart_id"], "m-9");
    assert_eq!(a.payload["value"], "6");
    assert_eq!(a.fired_at, at("10:50:00"));
}

#[test]
fn anonymous_cart_bought_after_identify_fires_nothing() {
    let mut s = script();
    s.anon_click(
        "dev-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c7","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.identify("dev-1", "m-9", "10:10:00");
    s.purchase("m-9", "10:15:00", "");
    s.advance("12:00:00");
    assert!(s.actions().is_empty());
}

#[test]
fn state_idle_past_the_ttl_is_dropped_with_its_cooldown() {
    let add = |cart: &str| {
        format!(
            r#""type":"add_to_cart","cart_id":"{cart}","items":[{{"item_id":"a","price":"5"}}]"#
        )
    };
    // A TTL shorter than the cooldown: the cooldown is forgotten with the state.
    let mut s = script().with_state_ttl(Span::from_secs(3600));
    s.click("m-1", "10:00:00", &add("c1"));
    s.click("m-2", "10:00:00", &add("c9"));
    s.advance("10:59:59"); // both fire at 10:30; the pending timers kept the state
    assert_eq!(s.actions().len(), 2);
    assert_eq!(s.worker().key_counts(), vec![(NAME, 2)]);
    s.click("m-1", "11:00:00", &add("c2")); // idle exactly 1 h: expired, starts afresh
    // The runtime tells the key's delivery policies, which expire with it.
    assert_eq!(s.worker().take_expired_keys(), vec![Str::from("m-1")]);
    s.advance("11:59:59");
    let fired: Vec<_> = s.actions().iter().map(|a| a.fired_at).collect();
    assert_eq!(fired, vec![at("10:30:00"), at("10:30:00"), at("11:30:00")]);
    // m-2 was never touched again: a sweep drops it without an event.
    assert_eq!(s.worker().key_counts(), vec![(NAME, 1)]);
    assert_eq!(s.worker().take_evicted(), vec![(NAME, 2)]);
    assert_eq!(s.worker().take_expired_keys(), vec![Str::from("m-2")]);

    // With the default TTL, the cooldown holds.
    let mut s = script();
    s.click("m-1", "10:00:00", &add("c1"));
    s.advance("10:59:59");
    s.click("m-1", "11:00:00", &add("c2"));
    s.advance("12:00:00");
    assert_eq!(s.actions().len(), 1);
}

#[test]
fn erase_drops_the_customer_everywhere_and_for_good() {
    let mut s = script();
    s.anon_click(
        "dev-1",
        "09:50:00",
        r#""type":"add_to_cart","cart_id":"c0","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.identify("dev-1", "m-1", "09:51:00");
    s.click(
        "m-1",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c1","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.click(
        "m-2",
        "10:00:00",
        r#""type":"add_to_cart","cart_id":"c2","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.erase("m-1", "10:10:00");
    s.click(
        "m-1",
        "10:20:00",
        r#""type":"add_to_cart","cart_id":"c3","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.anon_click(
        "dev-1",
        "10:20:00",
        r#""type":"add_to_cart","cart_id":"c4","items":[{"item_id":"a","price":"5"}]"#,
    );
    s.advance("12:00:00");
    let a = s.only_action();
    assert_eq!(a.customer_id.as_deref(), Some("m-2"));
    assert_eq!(s.worker().key_counts(), vec![(NAME, 1)]);
    let snap = s.worker().snapshot();
    assert!(
        snap.touched.iter().all(|(k, _)| k == "m-2"),
        "{:?}",
        snap.touched
    );
}

#[test]
fn a_devices_state_goes_early_only_if_none_of_its_timers_is_due_by_the_exports_turn() {
    let cart = r#""type":"add_to_cart","cart_id":"c1","items":[{"item_id":"a","price":"1.00"}]"#;
    let mut s = script();
    s.anon_click("d-1", "10:00:00", cart);
    let key = "anon:d-1";
    // The reminder is due at 10:30: work up to 10:30 could fire it, so the state waits.
    assert!(s.worker().export_early(key, at("10:30:00")).is_none());
    let early = s
        .worker()
        .export_early(key, at("10:29:59"))
        .expect("nothing due by then");
    assert_eq!(early.len(), 1, "the cart moved");
    assert_eq!(s.worker().timers_pending(), 0, "its reminder moved with it");
    s.advance("11:00:00");
    assert!(
        s.actions().is_empty(),
        "the device has nothing left to fire"
    );
}

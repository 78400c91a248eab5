use super::*;
use crate::action::{Group, action_id};
use crate::event::Topic;
use crate::testing::{Script, at};

fn script(cfg: &ReturnAbuseConfig) -> Script {
    Script::new(vec![Box::new(ReturnAbuse::new(cfg))])
}

fn refund(s: &mut Script, user: &str, day: u32, time: &str, value: &str) {
    s.feed(
        Topic::Transactions,
        &format!(r#""user_id":"{user}","store_id":"st-01""#),
        &format!("2026-11-{day:02}T{time}Z"),
        &format!(r#""type":"refund","transaction_id":"r-{day}-{time}","value":"{value}""#),
    );
}

#[test]
fn the_third_refund_in_seven_days_fires_with_exact_count_value_and_window() {
    let mut s = script(&ReturnAbuseConfig::default());
    refund(&mut s, "m-1", 1, "10:00:00", "19.90");
    refund(&mut s, "m-1", 4, "12:00:00", "5.05");
    s.purchase("m-1", "2026-11-05T09:00:00Z", r#""value":"100.00""#);
    assert!(s.actions().is_empty(), "two refunds and a purchase");
    refund(&mut s, "m-1", 7, "23:59:59", "0.10");
    let a = s.only_action();
    assert_eq!(a.topic, OutputTopic::Alerts);
    assert_eq!(a.group, Group::Treatment);
    assert_eq!(a.fired_at, at("2026-11-07T23:59:59Z"));
    assert_eq!(a.customer_id.as_deref(), Some("m-1"));
    assert_eq!(a.store_id.as_deref(), Some("st-01"));
    assert_eq!(a.payload["refunds"], 3);
    assert_eq!(a.payload["refund_value"], "25.05");
    assert_eq!(a.payload["window_start"], "2026-10-31T23:59:59Z");
    assert_eq!(
        a.action_id,
        action_id(NAME, "1", "m-1", at("2026-11-07T23:59:59Z"))
    );
    assert_eq!(a.reason, "3 refunds worth 25.05 within 7d (threshold 3)");
}

#[test]
fn a_refund_exactly_one_window_old_no_longer_counts() {
    let mut s = script(&ReturnAbuseConfig::default());
    refund(&mut s, "m-1", 1, "10:00:00", "1");
    refund(&mut s, "m-1", 3, "10:00:00", "1");
    // (t − 7 d, t] leaves out the refund at exactly t − 7 d.
    refund(&mut s, "m-1", 8, "10:00:00", "1");
    assert!(s.actions().is_empty());
    refund(&mut s, "m-1", 8, "10:00:01", "1");
    assert_eq!(s.only_action().payload["refunds"], 3);
}

#[test]
fn the_cooldown_runs_between_fired_ats_and_ends_exactly() {
    let mut s = script(&ReturnAbuseConfig::default());
    for (day, time) in [(1, "10:00:00"), (2, "10:00:00"), (3, "10:00:00")] {
        refund(&mut s, "m-1", day, time, "2.00");
    }
    assert_eq!(s.actions().len(), 1);
    // Within 7 days of the alert: more refunds, no second alert.
    refund(&mut s, "m-1", 5, "10:00:00", "2.00");
    refund(&mut s, "m-1", 10, "09:59:59", "2.00");
    assert_eq!(s.actions().len(), 1);
    // Exactly 7 days after it, with 3 refunds in the window: fires again.
    refund(&mut s, "m-1", 10, "10:00:00", "2.00");
    let fired: Vec<_> = s.actions().iter().map(|a| a.fired_at).collect();
    assert_eq!(
        fired,
        vec![at("2026-11-03T10:00:00Z"), at("2026-11-10T10:00:00Z")]
    );
    assert_eq!(s.actions()[1].payload["refunds"], 3, "days 5, 10 and 10");
    assert_eq!(s.actions()[1].payload["refund_value"], "6.00");
}

#[test]
fn customers_are_counted_apart_and_settings_apply() {
    let cfg = ReturnAbuseConfig {
        window_days: 1,
        min_refunds: 2,
        ..Default::default()
    };
    let mut s = script(&cfg);
    refund(&mut s, "m-1", 1, "10:00:00", "1");
    refund(&mut s, "m-2", 1, "11:00:00", "1");
    refund(&mut s, "m-1", 2, "10:00:00", "1");
    assert!(s.actions().is_empty(), "one day is (t − 1 d, t]");
    refund(&mut s, "m-2", 2, "10:59:59", "1");
    assert_eq!(s.only_action().customer_id.as_deref(), Some("m-2"));
}

#[test]
fn refunds_and_the_cooldown_survive_a_restart() {
    let build = || -> Vec<Box<dyn Operator>> {
        vec![Box::new(ReturnAbuse::new(&ReturnAbuseConfig::default()))]
    };
    let mut s = script(&ReturnAbuseConfig::default());
    refund(&mut s, "m-1", 1, "10:00:00", "1");
    refund(&mut s, "m-1", 2, "10:00:00", "1");
    s.restart(build());
    refund(&mut s, "m-1", 3, "10:00:00", "1");
    assert_eq!(s.actions().len(), 1, "the refunds before the restart count");
    s.restart(build());
    refund(&mut s, "m-1", 4, "10:00:00", "1");
    assert_eq!(s.actions().len(), 1, "the cooldown survived the restart");
}

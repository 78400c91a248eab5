use super::*;
use crate::config::BirthdayConfig;
use crate::event::Topic;
use crate::testing::Script;

fn script(cfg: &BirthdayConfig) -> Script {
    Script::new(vec![Box::new(Birthday::new(cfg))])
}

fn profile(s: &mut Script, user: &str, time: &str, fields: &str) {
    s.feed(
        Topic::Customers,
        &format!(r#""user_id":"{user}""#),
        time,
        &format!(r#""type":"profile",{fields}"#),
    );
}

fn fired(s: &Script) -> Vec<String> {
    s.actions().iter().map(|a| a.fired_at.to_string()).collect()
}

#[test]
fn greets_at_the_local_time_once_a_year() {
    let mut s = script(&BirthdayConfig::default());
    profile(
        &mut s,
        "u-1",
        "2026-11-20T10:00:00Z",
        r#""birthday":"1990-12-05","timezone":"Asia/Shanghai""#,
    );
    s.advance("2028-01-01T00:00:00Z");
    assert_eq!(
        fired(&s),
        ["2026-12-05T01:00:00Z", "2027-12-05T01:00:00Z"],
        "09:00 in Shanghai is 01:00 UTC"
    );
    let a = &s.actions()[0];
    assert_eq!(a.payload["year"], 2026);
    assert_eq!(a.payload["timezone"], "Asia/Shanghai");
    assert_eq!(a.customer_id.as_deref(), Some("u-1"));
    assert_ne!(a.action_id, s.actions()[1].action_id);
}

#[test]
fn days_before_and_send_at_local_move_the_instant() {
    let cfg = BirthdayConfig {
        days_before: 3,
        send_at_local: "18:30".into(),
        ..BirthdayConfig::default()
    };
    let mut s = script(&cfg);
    // A 2 January birthday, 3 days before: 30 December of the year before.
    profile(
        &mut s,
        "u-1",
        "2026-11-20T10:00:00Z",
        r#""birthday":"--01-02""#,
    );
    s.advance("2027-01-31T00:00:00Z");
    assert_eq!(fired(&s), ["2026-12-30T18:30:00Z"]);
    assert_eq!(s.actions()[0].payload["year"], 2027);
}

#[test]
fn daylight_saving_gaps_and_overlaps_resolve_to_the_first_valid_instant() {
    // New York skips 02:00-03:00 on 8 March 2026 and repeats 01:00-02:00 on 1 November.
    let gap = BirthdayConfig {
        send_at_local: "02:30".into(),
        ..BirthdayConfig::default()
    };
    let mut s = script(&gap);
    let ny = r#""timezone":"America/New_York""#;
    profile(
        &mut s,
        "u-1",
        "2026-01-01T00:00:00Z",
        &format!(r#""birthday":"--03-08",{ny}"#),
    );
    s.advance("2026-12-31T00:00:00Z");
    assert_eq!(
        fired(&s),
        ["2026-03-08T07:00:00Z"],
        "03:00 EDT, the transition"
    );

    let overlap = BirthdayConfig {
        send_at_local: "01:30".into(),
        ..BirthdayConfig::default()
    };
    let mut s = script(&overlap);
    profile(
        &mut s,
        "u-1",
        "2026-01-01T00:00:00Z",
        &format!(r#""birthday":"--11-01",{ny}"#),
    );
    s.advance("2026-12-31T00:00:00Z");
    assert_eq!(
        fired(&s),
        ["2026-11-01T05:30:00Z"],
        "the first 01:30, still EDT"
    );
}

#[test]
fn the_29th_of_february_in_leap_and_common_years() {
    let mut s = script(&BirthdayConfig::default());
    profile(
        &mut s,
        "u-1",
        "2026-11-20T10:00:00Z",
        r#""birthday":"2000-02-29""#,
    );
    s.advance("2029-01-01T00:00:00Z");
    assert_eq!(
        fired(&s),
        ["2027-02-28T09:00:00Z", "2028-02-29T09:00:00Z"],
        "28 February in 2027, the day itself in 2028"
    );

    let mar1 = BirthdayConfig {
        leap_day: LeapDay::Mar1,
        ..BirthdayConfig::default()
    };
    let mut s = script(&mar1);
    profile(
        &mut s,
        "u-1",
        "2026-11-20T10:00:00Z",
        r#""birthday":"2000-02-29""#,
    );
    s.advance("2029-01-01T00:00:00Z");
    assert_eq!(fired(&s), ["2027-03-01T09:00:00Z", "2028-02-29T09:00:00Z"]);
}

#[test]
fn a_late_profile_on_the_same_local_date_fires_at_once_and_a_later_one_waits() {
    let mut s = script(&BirthdayConfig::default());
    // 14:00 on the birthday, after 09:00: fires at the profile's timestamp.
    profile(
        &mut s,
        "u-1",
        "2026-11-20T14:00:00Z",
        r#""birthday":"--11-20""#,
    );
    assert_eq!(fired(&s), ["2026-11-20T14:00:00Z"]);
    // The day after: next year.
    profile(
        &mut s,
        "u-2",
        "2026-11-21T08:00:00Z",
        r#""birthday":"--11-20""#,
    );
    s.advance("2027-12-01T00:00:00Z");
    assert_eq!(
        fired(&s),
        [
            "2026-11-20T14:00:00Z",
            "2027-11-20T09:00:00Z",
            "2027-11-20T09:00:00Z"
        ]
    );
    let u2: Vec<_> = s
        .actions()
        .iter()
        .filter(|a| a.customer_id.as_deref() == Some("u-2"))
        .collect();
    assert_eq!(u2.len(), 1);

    // Dates are the customer's local dates: 23:30 UTC on the 19th is 07:30 on the 20th
    // in Shanghai, before 09:00 there, so it is scheduled for that morning.
    let mut s = script(&BirthdayConfig::default());
    profile(
        &mut s,
        "u-3",
        "2026-11-19T23:30:00Z",
        r#""birthday":"--11-20","timezone":"Asia/Shanghai""#,
    );
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(fired(&s), ["2026-11-20T01:00:00Z"]);
}

#[test]
fn profile_updates_reschedule_and_never_greet_twice_a_year() {
    let mut s = script(&BirthdayConfig::default());
    profile(
        &mut s,
        "u-1",
        "2026-11-01T00:00:00Z",
        r#""birthday":"--11-20""#,
    );
    profile(
        &mut s,
        "u-1",
        "2026-11-02T00:00:00Z",
        r#""birthday":"--11-25""#,
    );
    s.advance("2026-11-25T10:00:00Z");
    assert_eq!(
        fired(&s),
        ["2026-11-25T09:00:00Z"],
        "the old date is forgotten"
    );
    // A change of zone later the same day would put 09:00 still ahead (UTC-8): but the
    // customer has had this year's greeting.
    profile(
        &mut s,
        "u-1",
        "2026-11-25T11:00:00Z",
        r#""timezone":"America/Los_Angeles""#,
    );
    s.advance("2026-12-31T00:00:00Z");
    assert_eq!(s.actions().len(), 1);
    // A tier update keeps the birthday: next year still fires.
    profile(&mut s, "u-1", "2026-12-31T00:00:00Z", r#""tier":"gold""#);
    s.advance("2027-12-01T00:00:00Z");
    assert_eq!(fired(&s)[1], "2027-11-25T17:00:00Z", "09:00 in Los Angeles");
}

#[test]
fn the_home_store_zone_and_the_default_zone_apply_in_that_order() {
    let cfg = BirthdayConfig {
        default_timezone: "Europe/Berlin".into(),
        ..BirthdayConfig::default()
    };
    let mut s = script(&cfg);
    s.feed(
        Topic::Stores,
        r#""store_id":"st-tokyo""#,
        "2026-01-01T00:00:00Z",
        r#""type":"store","lat":35.68,"lon":139.76,"timezone":"Asia/Tokyo""#,
    );
    profile(
        &mut s,
        "u-1",
        "2026-11-01T00:00:00Z",
        r#""birthday":"--11-20","home_store_id":"st-tokyo""#,
    );
    profile(
        &mut s,
        "u-2",
        "2026-11-01T00:00:00Z",
        r#""birthday":"--11-20""#,
    );
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(fired(&s), ["2026-11-20T00:00:00Z", "2026-11-20T08:00:00Z"]);
    assert_eq!(s.actions()[0].payload["timezone"], "Asia/Tokyo");
    assert_eq!(s.actions()[1].payload["timezone"], "Europe/Berlin");
}

#[test]
fn the_schedule_survives_a_restart_and_erase_forgets_it() {
    let cfg = BirthdayConfig::default();
    let mut s = script(&cfg);
    profile(
        &mut s,
        "u-1",
        "2026-11-01T00:00:00Z",
        r#""birthday":"--11-20""#,
    );
    profile(
        &mut s,
        "u-2",
        "2026-11-01T00:00:00Z",
        r#""birthday":"--11-20""#,
    );
    s.restart(vec![Box::new(Birthday::new(&cfg))]);
    s.erase("u-2", "2026-11-02T00:00:00Z");
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(s.only_action().customer_id.as_deref(), Some("u-1"));
}

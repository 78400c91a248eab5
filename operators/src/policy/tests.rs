//! The chain as a whole: order of steps, holds, restarts and input interleavings.

use super::*;
use crate::action::{Action, OutputTopic};
use rust_decimal::Decimal;

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn settings(holdout_bp: u16) -> Settings {
    let cfg = PolicyConfig {
        holdout_bp,
        ..PolicyConfig::default()
    };
    Settings::from_config(&cfg, "UTC").unwrap()
}

fn action(trigger: &str, customer: &str, at: &str) -> Packed {
    Packed::new(&Action {
        customer_id: Some(customer.into()),
        channel: "push".into(),
        reason: format!("{trigger} fired"),
        ..Action::new(trigger, "1", customer, t(at), OutputTopic::Notifications)
    })
}

fn profile(customer: &str, at: &str, push: bool, tz: &str) -> Input {
    Input::Fact(
        t(at),
        Fact::Profile {
            key: customer.into(),
            consent: [("push", push)].into_iter().collect(),
            timezone: Some(tz.into()),
            home_store: None,
        },
    )
}

/// Feeds `inputs` (all from worker 0, in order) and advances to `until`.
fn run(p: &mut Policy, inputs: Vec<Input>, until: &str) -> Output {
    let mut out = Output::default();
    for (i, input) in inputs.into_iter().enumerate() {
        p.push(0, i as u64, input, &mut out);
    }
    p.advance(t(until), &mut out);
    out
}

/// Customer m-1's purchase `o-1` of 12.90 CNY at `at`.
fn purchase(at: &str) -> Input {
    Input::Fact(
        t(at),
        Fact::Purchase {
            key: "m-1".into(),
            transaction_id: "o-1".into(),
            value: Decimal::new(1290, 2),
            currency: Some("CNY".into()),
        },
    )
}

fn reasons(out: &Output) -> Vec<(&str, &'static str)> {
    out.suppressed
        .iter()
        .map(|s| (s.action.trigger(), s.reason.as_str()))
        .collect()
}

#[test]
fn an_action_without_consent_is_suppressed_with_its_reason() {
    let mut p = Policy::new(settings(0));
    let out = run(
        &mut p,
        vec![Input::Action(action(
            "abandoned_cart",
            "m-1",
            "2026-11-20T10:00:00Z",
        ))],
        "2026-11-20T11:00:00Z",
    );
    assert!(out.written.is_empty());
    assert_eq!(reasons(&out), vec![("abandoned_cart", "no_consent")]);
    assert_eq!(out.suppressed[0].detail, "no consent for push on record");
    let record = serde_json::to_value(&out.suppressed[0]).unwrap();
    assert_eq!(record["reason"], "no_consent");
    assert_eq!(record["action_reason"], "abandoned_cart fired");
}

#[test]
fn two_triggers_in_one_window_only_the_higher_priority_goes_on() {
    let mut p = Policy::new(settings(0));
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(action("birthday", "m-1", "2026-11-20T10:00:05Z")),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T10:00:50Z")),
            // The next window: a separate decision, but the day's cap is used up.
            Input::Action(action("weather_promo", "m-1", "2026-11-20T10:01:00Z")),
        ],
        "2026-11-20T10:01:00Z",
    );
    // The window 10:00–10:01 is decided at 10:01; the next one is not yet.
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].trigger(), "abandoned_cart");
    assert_eq!(reasons(&out), vec![("birthday", "arbitration")]);
    assert!(
        out.suppressed[0]
            .detail
            .contains("abandoned_cart (priority 50")
    );
    let mut rest = Output::default();
    p.advance(t("2026-11-20T10:02:00Z"), &mut rest);
    assert_eq!(reasons(&rest), vec![("weather_promo", "frequency_cap")]);
}

#[test]
fn consent_withdrawn_during_quiet_hours_stops_the_held_action() {
    let mut p = Policy::new(settings(0));
    // 22:00 in Shanghai: held until 08:00 local (00:00 UTC).
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "Asia/Shanghai"),
            profile("m-2", "2026-11-20T09:00:00Z", true, "Asia/Shanghai"),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T14:00:00Z")),
            Input::Action(action("abandoned_cart", "m-2", "2026-11-20T14:00:00Z")),
            profile("m-1", "2026-11-20T18:00:00Z", false, "Asia/Shanghai"),
        ],
        "2026-11-20T23:59:00Z",
    );
    assert!(out.written.is_empty() && out.suppressed.is_empty());
    assert_eq!(p.held(), 2);
    let mut later = Output::default();
    p.advance(t("2026-11-21T00:00:01Z"), &mut later);
    assert_eq!(later.written.len(), 1);
    assert_eq!(later.written[0].customer_id(), Some("m-2"));
    assert_eq!(p.held(), 0, "both released");
    assert_eq!(
        later.written[0].fired_at,
        t("2026-11-20T14:00:00Z"),
        "fired_at unchanged"
    );
    assert_eq!(reasons(&later), vec![("abandoned_cart", "no_consent")]);
    assert!(
        later.suppressed[0]
            .detail
            .contains("when quiet hours ended")
    );
    assert_eq!(later.suppressed[0].at, t("2026-11-21T00:00:00Z"));
}

#[test]
fn control_actions_skip_arbitration_caps_and_quiet_hours() {
    let mut p = Policy::new(settings(10_000));
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(action("birthday", "m-1", "2026-11-20T22:00:05Z")),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T22:00:06Z")),
        ],
        "2026-11-20T22:00:07Z",
    );
    assert_eq!(out.written.len(), 2);
    assert!(out.written.iter().all(|a| a.group == Group::Control));
    // Consent still applies to control: a control customer without consent would not
    // have been sent the action either.
    let out = run(
        &mut p,
        vec![Input::Action(action(
            "birthday",
            "m-9",
            "2026-11-20T22:10:00Z",
        ))],
        "2026-11-20T22:11:00Z",
    );
    assert_eq!(reasons(&out), vec![("birthday", "no_consent")]);
}

#[test]
fn an_erased_customer_s_held_and_pending_actions_vanish_without_a_record() {
    let mut p = Policy::new(settings(0));
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T22:00:00Z")),
            Input::Action(action("birthday", "m-1", "2026-11-20T23:00:00Z")),
            Input::Fact(t("2026-11-20T23:00:10Z"), Fact::Erase { key: "m-1".into() }),
            Input::Action(action("churn_risk", "m-1", "2026-11-20T23:30:00Z")),
        ],
        "2026-11-21T09:00:00Z",
    );
    assert!(out.written.is_empty() && out.suppressed.is_empty());
    // One held for quiet hours, one pending in its window, one after the erase.
    assert_eq!(out.erased, 3);
    assert_eq!(p.customers(), 0);
    assert_eq!(p.held(), 0);
}

#[test]
fn dedupe_after_replay_and_after_a_restart() {
    let mut p = Policy::new(settings(0));
    let a = action("abandoned_cart", "m-1", "2026-11-20T10:00:00Z");
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(a.clone()),
        ],
        "2026-11-20T10:05:00Z",
    );
    assert_eq!(out.written.len(), 1);
    // The same action again (a replay of the same input): written once, no cap used.
    let again = run(
        &mut p,
        vec![Input::Action(a.clone())],
        "2026-11-20T10:10:00Z",
    );
    assert!(again.written.is_empty() && again.suppressed.is_empty());
    assert_eq!(again.duplicates, 1);
    // After a restart from a snapshot, the same.
    let mut back = restored(&p);
    let after = run(&mut back, vec![Input::Action(a)], "2026-11-20T10:15:00Z");
    assert_eq!((after.written.len(), after.duplicates), (0, 1));
}

fn restored(p: &Policy) -> Policy {
    let mut back = Policy::new(p.settings.clone());
    let mut failed = None;
    p.snapshot().encode(&mut |k, v| {
        if let Err(e) = back.restore(k, v) {
            failed = Some(e);
        }
    });
    assert_eq!(failed, None);
    back
}

#[test]
fn held_actions_and_open_windows_survive_a_restart() {
    let inputs = || {
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "Asia/Shanghai"),
            profile("m-2", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T14:00:00Z")),
            Input::Action(action("birthday", "m-2", "2026-11-20T14:00:30Z")),
        ]
    };
    let mut straight = Policy::new(settings(0));
    let whole = run(&mut straight, inputs(), "2026-11-21T01:00:00Z");

    let mut first = Policy::new(settings(0));
    let part = run(&mut first, inputs(), "2026-11-20T14:00:40Z");
    assert!(part.written.is_empty());
    // One held for quiet hours, one in its open arbitration window.
    assert_eq!(first.held(), 2);
    let mut second = restored(&first);
    assert_eq!(second.held(), 2);
    let mut rest = Output::default();
    second.advance(t("2026-11-21T01:00:00Z"), &mut rest);
    assert_eq!(rest.written, whole.written);
    assert_eq!(whole.written.len(), 2);
    assert_eq!(second.held(), 0);
}

#[test]
fn the_outcome_does_not_depend_on_how_workers_interleave() {
    // Worker 0 owns the customer; worker 1 (a store's) offers them a markdown in the
    // same window as worker 0's cart reminder, and either message may arrive first.
    let facts = || profile("m-1", "2026-11-20T09:00:00Z", true, "UTC");
    let cart = || Input::Action(action("abandoned_cart", "m-1", "2026-11-20T10:00:30Z"));
    let offer = || Input::Action(action("markdown_offer", "m-1", "2026-11-20T10:00:10Z"));
    let mut outcomes = Vec::new();
    for offer_first in [false, true] {
        let mut p = Policy::new(settings(0));
        let mut out = Output::default();
        if offer_first {
            p.push(1, 0, offer(), &mut out);
            p.push(0, 0, facts(), &mut out);
            p.push(0, 1, cart(), &mut out);
        } else {
            p.push(0, 0, facts(), &mut out);
            p.push(0, 1, cart(), &mut out);
            p.push(1, 0, offer(), &mut out);
        }
        p.advance(t("2026-11-20T11:00:00Z"), &mut out);
        outcomes.push((
            out.written
                .iter()
                .map(|a| a.trigger().to_owned())
                .collect::<Vec<_>>(),
            reasons(&out)
                .into_iter()
                .map(|(a, b)| format!("{a}:{b}"))
                .collect::<Vec<_>>(),
        ));
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].0, vec!["abandoned_cart"]);
}

#[test]
fn purchases_credit_written_actions_in_their_group() {
    let mut s = settings(0);
    s.holdout.per_trigger.insert("birthday".into(), 10_000);
    let mut p = Policy::new(s);
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-11-20T09:00:00Z", true, "UTC"),
            Input::Action(action("abandoned_cart", "m-1", "2026-11-20T10:00:00Z")),
            Input::Action(action("birthday", "m-1", "2026-11-20T10:00:10Z")),
            purchase("2026-11-21T10:00:00Z"),
        ],
        "2026-11-21T10:00:01Z",
    );
    assert_eq!(out.written.len(), 2, "control birthday and treatment cart");
    let mut credited: Vec<(String, Group)> = out
        .conversions
        .iter()
        .map(|c| (c.trigger.clone(), c.group))
        .collect();
    credited.sort();
    assert_eq!(
        credited,
        vec![
            ("abandoned_cart".to_owned(), Group::Treatment),
            ("birthday".to_owned(), Group::Control)
        ]
    );
}

#[test]
fn customer_and_day_rows_of_earlier_checkpoints_still_restore() {
    let mut p = Policy::new(settings(0));
    let a = action("abandoned_cart", "m-1", "2026-11-20T10:00:00Z");
    let mut customer = Customer::default();
    customer.consent = [("push", true)].into_iter().collect();
    let id = xxhash_rust::xxh3::xxh3_128(a.action_id().as_bytes());
    let day = t("2026-11-20T10:00:00Z").as_secs().div_euclid(86_400);
    p.restore("c:m-1", &serde_json::to_vec(&customer).unwrap())
        .unwrap();
    p.restore(&format!("d:{day}"), &serde_json::to_vec(&vec![id]).unwrap())
        .unwrap();
    let out = run(
        &mut p,
        vec![
            Input::Action(a),
            Input::Action(action("birthday", "m-1", "2026-11-20T11:00:00Z")),
        ],
        "2026-11-20T12:00:00Z",
    );
    // The first was written before the restart; the second passes on the restored
    // consent.
    assert_eq!(out.duplicates, 1);
    assert_eq!(out.written.len(), 1);
    assert_eq!(out.written[0].trigger(), "birthday");
}

#[test]
fn a_rules_priority_changes_while_running_but_never_overrides_the_config() {
    let window = |p: &mut Policy, minute: u32, priorities: &[(&str, i32)]| {
        let at = |s: u32| format!("2026-11-20T10:{minute:02}:{s:02}Z");
        let out = run(
            p,
            vec![
                Input::Priorities(
                    priorities
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                ),
                Input::Action(action("flash_sale", &format!("m-{minute}"), &at(5))),
                Input::Action(action("abandoned_cart", &format!("m-{minute}"), &at(10))),
            ],
            &format!("2026-11-20T10:{:02}:00Z", minute + 1),
        );
        out.written
            .iter()
            .map(|a| a.trigger().to_owned())
            .collect::<Vec<_>>()
    };
    let mut p = Policy::new(settings(0));
    let mut consent = Output::default();
    for m in 0..3 {
        p.push(
            9,
            m,
            profile(&format!("m-{m}"), "2026-11-20T09:00:00Z", true, "UTC"),
            &mut consent,
        );
    }
    // flash_sale is a rule: its header's priority 90 beats abandoned_cart's 50...
    assert_eq!(window(&mut p, 0, &[("flash_sale", 90)]), ["flash_sale"]);
    // ...and a new version with priority 10 loses, without a restart.
    assert_eq!(window(&mut p, 1, &[("flash_sale", 10)]), ["abandoned_cart"]);
    // A rule cannot change what the config sets (abandoned_cart is in [policy.priority]).
    assert_eq!(
        window(&mut p, 2, &[("flash_sale", 10), ("abandoned_cart", 1)]),
        ["abandoned_cart"]
    );
}

#[test]
fn an_expired_customer_loses_consent_caps_and_attribution_with_their_state() {
    let mut p = Policy::new(settings(0));
    let out = run(
        &mut p,
        vec![
            profile("m-1", "2026-01-01T10:00:00Z", true, "UTC"),
            Input::Action(action("abandoned_cart", "m-1", "2026-01-01T12:00:00Z")),
        ],
        "2026-01-01T13:00:00Z",
    );
    assert_eq!(out.written.len(), 1);
    assert_eq!(p.customers(), 1);
    // 400 days without an event: the worker expires the key, and says so.
    let expire = Input::Fact(
        t("2027-02-05T13:00:00Z"),
        Fact::Expire { key: "m-1".into() },
    );
    let mut out = Output::default();
    p.push(0, 10, expire, &mut out);
    p.push(
        0,
        11,
        Input::Action(action("abandoned_cart", "m-1", "2027-02-05T14:00:00Z")),
        &mut out,
    );
    p.advance(t("2027-02-05T15:00:00Z"), &mut out);
    assert_eq!(
        reasons(&out),
        [("abandoned_cart", "no_consent")],
        "consent expired with the state"
    );
    assert_eq!(p.customers(), 0);
}

#[test]
fn a_late_purchase_takes_its_place_where_its_worker_received_it_whatever_the_interleaving() {
    // Worker 0 sends two cart reminders; worker 1's clock had passed 10:30 when a
    // purchase from 10:10 reached it late. Whether worker 1's messages come before or
    // after worker 0's, the purchase applies where worker 1 stood (10:30): after the
    // second reminder, which is then the latest and fired after the purchase, so
    // nothing is credited. Before, it applied whenever its message came in.
    let uncapped = || Settings {
        caps: Vec::new(),
        ..settings(0)
    };
    let reminder = |at: &str| Input::Action(action("abandoned_cart", "m-1", at));
    let mut outcomes = Vec::new();
    for worker_1_first in [false, true] {
        let mut p = Policy::new(uncapped());
        let mut out = Output::default();
        let worker_0 = |p: &mut Policy, out: &mut Output| {
            let start = t("2026-11-20T08:00:00Z");
            p.push_arrived(
                0,
                0,
                start,
                profile("m-1", "2026-11-20T08:00:00Z", true, "UTC"),
                out,
            );
            p.push_arrived(0, 1, start, reminder("2026-11-20T09:00:00Z"), out);
            p.push_arrived(0, 2, start, reminder("2026-11-20T10:20:00Z"), out);
        };
        let worker_1 = |p: &mut Policy, out: &mut Output| {
            p.push_arrived(
                1,
                0,
                t("2026-11-20T10:30:00Z"),
                purchase("2026-11-20T10:10:00Z"),
                out,
            );
        };
        if worker_1_first {
            worker_1(&mut p, &mut out);
            p.advance(t("2026-11-20T07:00:00Z"), &mut out);
            worker_0(&mut p, &mut out);
        } else {
            worker_0(&mut p, &mut out);
            p.advance(t("2026-11-20T10:25:00Z"), &mut out);
            worker_1(&mut p, &mut out);
        }
        p.advance(t("2026-11-20T12:00:00Z"), &mut out);
        assert_eq!(out.written.len(), 2, "both reminders are written");
        outcomes.push(out.conversions.len());
    }
    assert_eq!(outcomes, vec![0, 0]);

    // A purchase that arrives late still counts at its own time.
    let mut p = Policy::new(uncapped());
    let mut out = Output::default();
    let start = t("2026-11-20T08:00:00Z");
    p.push_arrived(
        0,
        0,
        start,
        profile("m-1", "2026-11-20T08:00:00Z", true, "UTC"),
        &mut out,
    );
    p.push_arrived(0, 1, start, reminder("2026-11-20T09:00:00Z"), &mut out);
    p.push_arrived(
        0,
        2,
        t("2026-11-20T10:30:00Z"),
        purchase("2026-11-20T10:10:00Z"),
        &mut out,
    );
    p.advance(t("2026-11-20T12:00:00Z"), &mut out);
    assert_eq!(out.conversions.len(), 1);
    assert_eq!(out.conversions[0].purchased_at, t("2026-11-20T10:10:00Z"));
}

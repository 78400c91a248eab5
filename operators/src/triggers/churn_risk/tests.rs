use super::*;
use crate::churn::BgNbd;
use crate::config::ChurnRiskConfig;
use crate::testing::{Script, at};

fn script(cfg: &ChurnRiskConfig) -> Script {
    Script::new(vec![Box::new(ChurnRisk::new(cfg))])
}

fn buy(s: &mut Script, user: &str, time: &str, value: &str) {
    s.purchase(
        user,
        time,
        &format!(r#""currency":"CNY","value":"{value}""#),
    );
}

/// The first whole second at which P(alive) < threshold, found by scanning forward
/// without the closed form: hour by hour, then second by second within the hour.
fn brute_force(cfg: &ChurnRiskConfig, days: &[i64], from: i64) -> i64 {
    let m = BgNbd {
        r: cfg.r,
        alpha: cfg.alpha,
        a: cfg.a,
        b: cfg.b,
    };
    let p = |s: i64| {
        m.p_alive(Rfm {
            x: (days.len() - 1) as f64,
            t_x: (days[days.len() - 1] - days[0]) as f64,
            t: (s - days[0] * DAY) as f64 / DAY as f64,
        })
    };
    let mut s = from;
    while p(s + 3600) >= cfg.threshold {
        s += 3600;
    }
    while p(s) >= cfg.threshold {
        s += 1;
    }
    s
}

#[test]
fn fires_once_at_the_crossing_second_that_a_brute_force_search_finds() {
    let cfg = ChurnRiskConfig::default();
    let mut s = script(&cfg);
    buy(&mut s, "u-1", "2026-01-05T10:00:00Z", "10.00");
    buy(&mut s, "u-1", "2026-01-15T18:30:00Z", "5.50");
    s.advance("2030-01-01T00:00:00Z");
    let a = s.only_action();
    let day = |d: &str| at(&format!("{d}T00:00:00Z")).as_secs() / DAY;
    let days = [day("2026-01-05"), day("2026-01-15")];
    let expected = brute_force(&cfg, &days, at("2026-01-15T18:30:00Z").as_secs());
    assert_eq!(a.fired_at, Timestamp::from_secs(expected));
    assert_eq!(a.trigger, "churn_risk");
    assert_eq!(a.payload["x"], 1);
    assert_eq!(a.payload["t_x"], 10);
    let p = a.payload["p_alive"].as_f64().unwrap();
    assert!((p - 0.3).abs() < 1e-4, "{p}");
    let t = a.payload["T"].as_f64().unwrap();
    assert!((t - (expected - days[0] * DAY) as f64 / 86_400.0).abs() < 1e-9);
    assert_eq!(a.payload["total_spend"], "15.5");
    assert_eq!(a.payload["last_purchase_at"], "2026-01-15T18:30:00Z");
    // About two months after the last purchase with the CDNOW parameters.
    assert!(a.fired_at > at("2026-03-01T00:00:00Z") && a.fired_at < at("2026-04-30T00:00:00Z"));
}

#[test]
fn the_closed_form_agrees_with_brute_force_across_histories_and_parameters() {
    let params = [
        ChurnRiskConfig::default(),
        ChurnRiskConfig {
            r: 1.7,
            alpha: 20.0,
            a: 0.1,
            b: 9.0,
            threshold: 0.6,
            ..ChurnRiskConfig::default()
        },
    ];
    let base = at("2025-06-01T00:00:00Z").as_secs() / DAY;
    for cfg in &params {
        for days in [
            vec![0, 1],
            vec![0, 3, 4, 30],
            vec![0, 100],
            vec![0, 2, 5, 9, 12, 13],
        ] {
            let days: Vec<i64> = days.iter().map(|d| base + d).collect();
            let last = days[days.len() - 1] * DAY + 12 * 3600;
            let c = Customer {
                days: days.clone(),
                ..Customer::default()
            };
            let op = ChurnRisk::new(cfg);
            let got = op.crossing(&c, Timestamp::from_secs(last)).unwrap();
            assert_eq!(
                got.as_secs(),
                brute_force(cfg, &days, last),
                "{days:?} {cfg:?}"
            );
        }
    }
}

#[test]
fn a_single_purchase_day_never_fires() {
    let mut s = script(&ChurnRiskConfig::default());
    buy(&mut s, "u-1", "2026-01-05T10:00:00Z", "10");
    buy(&mut s, "u-1", "2026-01-05T23:59:59Z", "10");
    s.advance("2036-01-01T00:00:00Z");
    assert!(s.actions().is_empty());
}

#[test]
fn days_are_utc_calendar_dates() {
    let cfg = ChurnRiskConfig::default();
    let mut s = script(&cfg);
    // Two minutes apart, but on two UTC days: x = 1, t_x = 1.
    buy(&mut s, "u-1", "2026-01-05T23:59:00Z", "1");
    buy(&mut s, "u-1", "2026-01-06T00:01:00+00:00", "1");
    s.advance("2030-01-01T00:00:00Z");
    assert_eq!(s.only_action().payload["t_x"], 1);
}

#[test]
fn a_same_day_purchase_changes_nothing_and_a_new_day_starts_a_new_episode() {
    let cfg = ChurnRiskConfig::default();
    let mut a = script(&cfg);
    buy(&mut a, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut a, "u-1", "2026-01-15T10:00:00Z", "1");
    a.advance("2030-01-01T00:00:00Z");
    let first = a.only_action().fired_at;

    let mut b = script(&cfg);
    buy(&mut b, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut b, "u-1", "2026-01-15T10:00:00Z", "1");
    buy(&mut b, "u-1", "2026-01-15T20:00:00Z", "1");
    b.advance("2030-01-01T00:00:00Z");
    assert_eq!(b.only_action().fired_at, first, "same day: same crossing");

    // After the episode fired, a purchase on a new day starts another: one more action.
    let mut c = script(&cfg);
    buy(&mut c, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut c, "u-1", "2026-01-15T10:00:00Z", "1");
    c.advance(&first.to_string());
    assert_eq!(c.actions().len(), 1);
    buy(&mut c, "u-1", "2026-06-01T10:00:00Z", "1");
    c.advance("2030-01-01T00:00:00Z");
    assert_eq!(c.actions().len(), 2);
    assert_eq!(c.actions()[1].payload["x"], 2);
    assert!(c.actions()[1].fired_at > at("2026-06-01T10:00:00Z"));
    assert_ne!(c.actions()[0].action_id, c.actions()[1].action_id);

    // A new day before the crossing moves it later, and the old instant fires nothing.
    let mut d = script(&cfg);
    buy(&mut d, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut d, "u-1", "2026-01-15T10:00:00Z", "1");
    buy(&mut d, "u-1", "2026-02-01T10:00:00Z", "1");
    d.advance("2030-01-01T00:00:00Z");
    assert!(d.only_action().fired_at > first);
}

#[test]
fn already_below_at_the_purchase_fires_at_its_timestamp() {
    // A threshold so high that P(alive) right after a repeat purchase is below it.
    let cfg = ChurnRiskConfig {
        threshold: 0.95,
        ..ChurnRiskConfig::default()
    };
    let mut s = script(&cfg);
    buy(&mut s, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut s, "u-1", "2026-01-06T09:00:00Z", "1");
    let a = s.only_action();
    assert_eq!(a.fired_at, at("2026-01-06T09:00:00Z"));
    assert!(a.payload["p_alive"].as_f64().unwrap() < 0.95);
}

#[test]
fn the_crossing_survives_a_restart_and_erase_forgets_it() {
    let cfg = ChurnRiskConfig::default();
    let mut s = script(&cfg);
    buy(&mut s, "u-1", "2026-01-05T10:00:00Z", "1");
    buy(&mut s, "u-1", "2026-01-15T10:00:00Z", "1");
    buy(&mut s, "u-2", "2026-01-05T10:00:00Z", "1");
    buy(&mut s, "u-2", "2026-01-15T10:00:00Z", "1");
    s.restart(vec![Box::new(ChurnRisk::new(&cfg))]);
    s.erase("u-2", "2026-01-20T00:00:00Z");
    s.advance("2030-01-01T00:00:00Z");
    assert_eq!(s.only_action().customer_id.as_deref(), Some("u-1"));
}

use super::*;
use crate::event::Topic;
use crate::testing::Script;

fn script(cfg: &WeatherPromoConfig) -> Script {
    Script::new(vec![Box::new(WeatherPromo::new(cfg))])
}

fn store(s: &mut Script, id: &str, lat: f64, lon: f64, tz: &str, region: &str) {
    s.feed(
        Topic::Stores,
        &format!(r#""store_id":"{id}""#),
        "2026-07-01T00:00:00Z",
        &format!(r#""type":"store","lat":{lat},"lon":{lon},"timezone":"{tz}","region":"{region}""#),
    );
}

fn weather(s: &mut Script, ids: &str, time: &str, temp: f64, cond: &str) {
    s.feed(
        Topic::Weather,
        ids,
        time,
        &format!(r#""type":"weather","temp_c":{temp},"condition":"{cond}""#),
    );
}

fn ping(s: &mut Script, user: &str, time: &str, lat: f64, lon: f64) {
    s.click(
        user,
        time,
        &format!(r#""type":"location","lat":{lat},"lon":{lon}"#),
    );
}

/// Two stores 800 m apart on a parallel in Shanghai.
fn two_stores() -> Script {
    let mut s = script(&WeatherPromoConfig::default());
    store(&mut s, "st-a", 31.2300, 121.4700, "Asia/Shanghai", "sh");
    store(&mut s, "st-b", 31.2300, 121.4784, "Asia/Shanghai", "sh");
    s
}

#[test]
fn the_nearest_store_within_the_radius_with_current_weather_fires() {
    let mut s = two_stores();
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-07-10T03:00:00Z",
        33.5,
        "clear",
    );
    weather(
        &mut s,
        r#""store_id":"st-b""#,
        "2026-07-10T03:00:00Z",
        24.0,
        "clear",
    );
    // 300 m east of st-a, 500 m west of st-b: st-a is nearest (and hot).
    ping(&mut s, "u-1", "2026-07-10T04:00:00Z", 31.2300, 121.47315);
    let a = s.only_action();
    assert_eq!(a.trigger, "weather_promo");
    assert_eq!(a.payload["campaign"], "hot_day");
    assert_eq!(a.payload["store_id"], "st-a");
    assert_eq!(a.template, "cold_drinks");
    assert_eq!(a.payload["temp_c"], 33.5);
    let d = a.payload["distance_m"].as_f64().unwrap();
    assert!((d - 299.5).abs() < 2.0, "{d}");
    // 133 m from st-b, 666 m from st-a: at st-b, where it is 24 °C.
    ping(&mut s, "u-2", "2026-07-10T04:00:00Z", 31.2300, 121.4770);
    assert_eq!(s.actions().len(), 1);
}

#[test]
fn nothing_fires_beyond_the_radius_or_on_stale_weather() {
    let mut s = two_stores();
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-07-10T03:00:00Z",
        35.0,
        "clear",
    );
    // 600 m south of st-a.
    ping(&mut s, "u-1", "2026-07-10T04:00:00Z", 31.2246, 121.4700);
    assert!(s.actions().is_empty());
    // Observed at 03:00, current until 06:00 exclusive.
    ping(&mut s, "u-1", "2026-07-10T06:00:00Z", 31.2300, 121.4700);
    assert!(s.actions().is_empty(), "three hours old: stale");
    ping(&mut s, "u-1", "2026-07-10T05:59:59Z", 31.2300, 121.4700);
    assert_eq!(s.actions().len(), 1, "late ping within the age");
}

#[test]
fn once_per_customer_per_campaign_per_store_local_date() {
    let mut s = two_stores();
    weather(
        &mut s,
        r#""region":"sh""#,
        "2026-07-10T14:00:00Z",
        21.0,
        "rain",
    );
    ping(&mut s, "u-1", "2026-07-10T15:00:00Z", 31.2300, 121.4700);
    ping(&mut s, "u-1", "2026-07-10T15:30:00Z", 31.2300, 121.4784);
    // 16:00 UTC is midnight in Shanghai: a new local date.
    ping(&mut s, "u-1", "2026-07-10T16:00:00Z", 31.2300, 121.4700);
    ping(&mut s, "u-2", "2026-07-10T15:45:00Z", 31.2300, 121.4700);
    let fired: Vec<_> = s
        .actions()
        .iter()
        .map(|a| {
            (
                a.customer_id.clone().unwrap(),
                a.payload["local_date"].clone(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        [
            ("u-1".to_owned(), "2026-07-10".into()),
            ("u-1".to_owned(), "2026-07-11".into()),
            ("u-2".to_owned(), "2026-07-10".into()),
        ]
    );
    assert!(
        s.actions()
            .iter()
            .all(|a| a.payload["campaign"] == "rainy_day")
    );
}

#[test]
fn every_condition_a_campaign_names_must_hold() {
    let cfg = WeatherPromoConfig {
        campaigns: vec![WeatherCampaign {
            name: "cold_and_snowy".into(),
            temp_c_min: None,
            temp_c_max: Some(-2.0),
            conditions: Some(vec!["snow".into()]),
            template: "gloves".into(),
        }],
        ..WeatherPromoConfig::default()
    };
    let mut s = script(&cfg);
    store(&mut s, "st-a", 45.0, 10.0, "Europe/Rome", "n");
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-12-10T08:00:00Z",
        -1.0,
        "snow",
    );
    ping(&mut s, "u-1", "2026-12-10T08:10:00Z", 45.0, 10.0);
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-12-10T09:00:00Z",
        -3.0,
        "clear",
    );
    ping(&mut s, "u-1", "2026-12-10T09:10:00Z", 45.0, 10.0);
    assert!(s.actions().is_empty());
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-12-10T10:00:00Z",
        -2.0,
        "snow",
    );
    ping(&mut s, "u-1", "2026-12-10T10:10:00Z", 45.0, 10.0);
    assert_eq!(s.only_action().template, "gloves");
}

#[test]
fn a_hot_rainy_day_fires_both_campaigns_and_survives_a_restart() {
    let cfg = WeatherPromoConfig::default();
    let mut s = two_stores();
    weather(
        &mut s,
        r#""store_id":"st-a""#,
        "2026-07-10T03:00:00Z",
        31.0,
        "storm",
    );
    ping(&mut s, "u-1", "2026-07-10T04:00:00Z", 31.2300, 121.4700);
    assert_eq!(s.actions().len(), 2);
    s.restart(vec![Box::new(WeatherPromo::new(&cfg))]);
    ping(&mut s, "u-1", "2026-07-10T04:30:00Z", 31.2300, 121.4700);
    assert_eq!(
        s.actions().len(),
        2,
        "used campaigns and the weather survive"
    );
    ping(&mut s, "u-2", "2026-07-10T04:30:00Z", 31.2300, 121.4700);
    assert_eq!(
        s.actions().len(),
        4,
        "the stores and weather were restored too"
    );
}

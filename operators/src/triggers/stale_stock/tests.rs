use super::*;
use crate::action::OutputTopic;
use crate::event::Topic;
use crate::testing::Script;

fn script(cfg: &StaleStockConfig) -> Script {
    Script::new(vec![Box::new(StaleStock::new(cfg))])
}

fn stock(s: &mut Script, time: &str, item: &str, lot: &str, on_hand: u64, price: &str, exp: &str) {
    let exp = match exp {
        "" => String::new(),
        e => format!(r#","expires_at":"{e}""#),
    };
    s.feed(
        Topic::Inventory,
        r#""store_id":"st-1""#,
        time,
        &format!(
            r#""type":"stock","item_id":"{item}","item_category":"bakery","lot_id":"{lot}","on_hand":{on_hand},"price":"{price}","currency":"CNY"{exp}"#
        ),
    );
}

fn sell(s: &mut Script, user: &str, time: &str, item: &str, qty: u32) {
    s.purchase(
        user,
        time,
        &format!(
            r#""store_id":"st-1","currency":"CNY","items":[{{"item_id":"{item}","item_category":"bakery","quantity":{qty}}}]"#
        ),
    );
}

fn markdowns(s: &Script) -> Vec<(String, String, u64, String)> {
    s.actions()
        .iter()
        .filter(|a| a.topic == OutputTopic::Markdowns)
        .map(|a| {
            (
                a.fired_at.to_string(),
                a.payload["lot_id"].as_str().unwrap().to_owned(),
                a.payload["on_hand"].as_u64().unwrap(),
                a.payload["new_price"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn offers(s: &Script) -> Vec<(String, String)> {
    s.actions()
        .iter()
        .filter(|a| a.trigger == "markdown_offer")
        .map(|a| (a.fired_at.to_string(), a.customer_id.clone().unwrap()))
        .collect()
}

#[test]
fn the_default_schedule_marks_down_at_six_and_two_hours_before_expiry() {
    let mut s = script(&StaleStockConfig::default());
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "L1",
        5,
        "12.90",
        "2026-11-20T18:00:00Z",
    );
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(
        markdowns(&s),
        [
            ("2026-11-20T12:00:00Z".into(), "L1".into(), 5, "9.03".into()),
            ("2026-11-20T16:00:00Z".into(), "L1".into(), 5, "6.45".into()),
        ]
    );
    let a = &s.actions()[0];
    assert_eq!(a.trigger, "stale_stock");
    assert_eq!(a.store_id.as_deref(), Some("st-1"));
    assert_eq!(a.customer_id, None);
    assert_eq!(a.payload["discount_pct"], 30);
    assert_eq!(a.payload["price"], "12.90");
    assert_eq!(a.payload["valid_until"], "2026-11-20T18:00:00Z");
}

#[test]
fn new_price_rounds_half_away_from_zero_to_the_minor_unit() {
    assert_eq!(
        discounted("9.99".parse().unwrap(), 30, Some("CNY")).to_string(),
        "6.99"
    );
    assert_eq!(
        discounted("0.05".parse().unwrap(), 50, Some("EUR")).to_string(),
        "0.03"
    );
    assert_eq!(
        discounted("155".parse().unwrap(), 30, Some("JPY")).to_string(),
        "109"
    );
    assert_eq!(
        discounted("1.005".parse().unwrap(), 50, Some("KWD")).to_string(),
        "0.503"
    );
    assert_eq!(
        discounted("12.90".parse().unwrap(), 0, Some("CNY")).to_string(),
        "12.90"
    );
}

#[test]
fn sales_deplete_lots_earliest_expiry_first() {
    let mut s = script(&StaleStockConfig::default());
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "late",
        10,
        "10.00",
        "2026-11-21T18:00:00Z",
    );
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "early",
        3,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    sell(&mut s, "u-1", "2026-11-20T09:00:00Z", "bread", 5);
    s.advance("2026-11-22T00:00:00Z");
    // The early lot sold out (no markdown); the late lot has 8 left.
    assert_eq!(
        markdowns(&s),
        [
            (
                "2026-11-21T12:00:00Z".into(),
                "late".into(),
                8,
                "7.00".into()
            ),
            (
                "2026-11-21T16:00:00Z".into(),
                "late".into(),
                8,
                "5.00".into()
            ),
        ]
    );
}

#[test]
fn a_replaced_lot_keeps_its_schedule_unless_its_expiry_changes() {
    let mut s = script(&StaleStockConfig::default());
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "L1",
        5,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    s.advance("2026-11-20T13:00:00Z");
    // Restocked, same best-before: the 30 % step is done; only 50 % is left.
    stock(
        &mut s,
        "2026-11-20T13:00:00Z",
        "bread",
        "L1",
        9,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    s.advance("2026-11-20T17:00:00Z");
    assert_eq!(markdowns(&s).len(), 2);
    assert_eq!(markdowns(&s)[1].2, 9);
    // A new best-before starts a new schedule.
    stock(
        &mut s,
        "2026-11-20T17:00:00Z",
        "bread",
        "L1",
        4,
        "10.00",
        "2026-11-22T18:00:00Z",
    );
    s.advance("2026-11-23T00:00:00Z");
    let m = markdowns(&s);
    assert_eq!(m.len(), 4);
    assert_eq!(m[2].0, "2026-11-22T12:00:00Z");
    assert_eq!(m[3].0, "2026-11-22T16:00:00Z");
}

#[test]
fn steps_already_passed_when_the_lot_arrives_do_not_fire() {
    let mut s = script(&StaleStockConfig::default());
    // Arrives three hours before expiry: past the 6 h step.
    stock(
        &mut s,
        "2026-11-20T15:00:00Z",
        "bread",
        "L1",
        5,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(
        markdowns(&s),
        [("2026-11-20T16:00:00Z".into(), "L1".into(), 5, "5.00".into())]
    );
}

#[test]
fn a_category_schedule_overrides_the_default() {
    let mut cfg = StaleStockConfig::default();
    cfg.categories.insert(
        "bakery".into(),
        vec![MarkdownStep {
            hours_before_expiry: 1.5,
            discount_pct: 25,
        }],
    );
    let mut s = script(&cfg);
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "L1",
        5,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(
        markdowns(&s),
        [("2026-11-20T16:30:00Z".into(), "L1".into(), 5, "7.50".into())]
    );
}

#[test]
fn slow_movers_without_expiry_are_marked_down_after_the_no_sale_period() {
    let mut s = script(&StaleStockConfig::default());
    stock(
        &mut s,
        "2026-11-01T00:00:00Z",
        "pan",
        "P1",
        20,
        "100.00",
        "",
    );
    stock(&mut s, "2026-11-01T00:00:00Z", "pot", "Q1", 12, "50.00", "");
    // A pan sells on day 10: its period restarts (14 days from then).
    sell(&mut s, "u-1", "2026-11-11T00:00:00Z", "pan", 1);
    // Pots drop below the minimum on hand before their period ends.
    stock(&mut s, "2026-11-10T00:00:00Z", "pot", "Q1", 9, "50.00", "");
    s.advance("2026-12-31T00:00:00Z");
    let m = markdowns(&s);
    assert_eq!(
        m,
        [(
            "2026-11-25T00:00:00Z".into(),
            "P1".into(),
            19,
            "80.00".into()
        )]
    );
    assert_eq!(
        s.actions()[0].payload["valid_until"],
        serde_json::Value::Null
    );
}

#[test]
fn offers_go_to_recent_buyers_of_the_category_most_recent_first_once_a_day() {
    let cfg = StaleStockConfig {
        offer_max_customers: 2,
        ..StaleStockConfig::default()
    };
    let mut s = script(&cfg);
    stock(&mut s, "2026-10-01T00:00:00Z", "bun", "B0", 100, "2.00", "");
    sell(&mut s, "u-old", "2026-10-15T10:00:00Z", "bun", 1);
    sell(&mut s, "u-1", "2026-11-18T10:00:00Z", "bun", 1);
    sell(&mut s, "u-2", "2026-11-19T10:00:00Z", "bun", 1);
    sell(&mut s, "u-3", "2026-11-20T07:00:00Z", "bun", 1);
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "L1",
        5,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    s.erase("u-3", "2026-11-20T09:00:00Z");
    s.advance("2026-11-21T00:00:00Z");
    // The 30 % markdown offers to u-2 then u-1 (u-3 was erased, u-old bought more than
    // 30 days before); the 50 % one the same day offers nothing more.
    assert_eq!(
        offers(&s),
        [
            ("2026-11-20T12:00:00Z".into(), "u-2".into()),
            ("2026-11-20T12:00:00Z".into(), "u-1".into()),
        ]
    );
    let o = s
        .actions()
        .iter()
        .find(|a| a.trigger == "markdown_offer")
        .unwrap();
    assert_eq!(o.topic, OutputTopic::Notifications);
    assert_eq!(o.payload["new_price"], "7.00");
}

#[test]
fn lots_and_timers_survive_a_restart() {
    let cfg = StaleStockConfig::default();
    let mut s = script(&cfg);
    stock(
        &mut s,
        "2026-11-20T08:00:00Z",
        "bread",
        "L1",
        5,
        "10.00",
        "2026-11-20T18:00:00Z",
    );
    sell(&mut s, "u-1", "2026-11-20T09:00:00Z", "bread", 2);
    s.restart(vec![Box::new(StaleStock::new(&cfg))]);
    s.advance("2026-11-21T00:00:00Z");
    assert_eq!(markdowns(&s).len(), 2);
    assert_eq!(markdowns(&s)[0].2, 3);
    assert_eq!(offers(&s), [("2026-11-20T12:00:00Z".into(), "u-1".into())]);
}

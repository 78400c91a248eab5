//! Properties of the whole catalogue over random event sequences: no action names a
//! customer after their `erase`, and the same input always yields the same actions
//! (devices' carts and pings merging into customers included).

use proptest::prelude::*;

use crate::config::TriggersConfig;
use crate::event::Topic;
use crate::testing::Script;
use crate::time::{Span, Timestamp};

#[derive(Clone, Debug)]
enum Op {
    Cart(u8),
    Buy(u8),
    Refund(u8),
    Ping(u8),
    Profile(u8),
    Erase(u8),
    Restock,
    /// A device's anonymous cart.
    AnonCart(u8),
    /// A device's anonymous location ping.
    AnonPing(u8),
    /// A device logs in as a customer.
    Identify(u8, u8),
}

fn op() -> impl Strategy<Value = (Op, u32)> {
    let c = 0u8..4;
    let op = prop_oneof![
        c.clone().prop_map(Op::Cart),
        c.clone().prop_map(Op::Buy),
        c.clone().prop_map(Op::Refund),
        c.clone().prop_map(Op::Ping),
        c.clone().prop_map(Op::Profile),
        c.clone().prop_map(Op::Erase),
        Just(Op::Restock),
        c.clone().prop_map(Op::AnonCart),
        c.clone().prop_map(Op::AnonPing),
        (c.clone(), c).prop_map(|(d, c)| Op::Identify(d, c)),
    ];
    // Minutes since the previous event: up to two days, so timers fire in between.
    (op, 0u32..2880)
}

/// A location ping next to store `st-1`.
const PING: &str = r#""type":"location","lat":31.2301,"lon":121.47"#;

/// Weather at `st-1` that its campaigns act on, at `now`.
fn hot_weather(s: &mut Script, now: &str) {
    s.feed(
        Topic::Weather,
        r#""store_id":"st-1""#,
        now,
        r#""type":"weather","temp_c":33,"condition":"rain""#,
    );
}

/// Runs `ops` through every trigger; returns each action's JSON and, per erase, how
/// many actions had been emitted when it applied.
fn run(ops: &[(Op, u32)]) -> (Vec<String>, Vec<(String, usize)>) {
    let mut s = Script::new(crate::triggers::build(&TriggersConfig::default()));
    let mut t = Timestamp::parse_rfc3339("2026-11-19T00:00:00Z").unwrap();
    let at = |t: Timestamp| t.to_string();
    s.feed(
        Topic::Stores,
        r#""store_id":"st-1""#,
        &at(t),
        r#""type":"store","lat":31.23,"lon":121.47,"timezone":"Asia/Shanghai""#,
    );
    let mut erased = Vec::new();
    for (n, (op, minutes)) in ops.iter().enumerate() {
        t = t.plus(Span::from_secs(i64::from(*minutes) * 60));
        let now = at(t);
        let user = |c: &u8| format!("m-{c}");
        match op {
            Op::Cart(c) => s.click(
                &user(c),
                &now,
                r#""type":"add_to_cart","currency":"CNY","items":[{"item_id":"a","price":"5.00"}]"#,
            ),
            Op::Buy(c) => s.purchase(
                &user(c),
                &now,
                r#""store_id":"st-1","currency":"CNY","value":"5.00","items":[{"item_id":"bread","item_category":"bakery","quantity":1}]"#,
            ),
            Op::Refund(c) => s.feed(
                Topic::Transactions,
                &format!(r#""user_id":"{}""#, user(c)),
                &now,
                &format!(r#""type":"refund","transaction_id":"r{n}","value":"1.00""#),
            ),
            Op::Ping(c) => {
                hot_weather(&mut s, &now);
                s.click(&user(c), &now, PING);
            }
            Op::Profile(c) => s.feed(
                Topic::Customers,
                &format!(r#""user_id":"{}""#, user(c)),
                &now,
                &format!(r#""type":"profile","birthday":"--{}""#, &now[5..10]),
            ),
            Op::Erase(c) => {
                s.erase(&user(c), &now);
                erased.push((user(c), s.actions().len()));
            }
            Op::AnonCart(d) => s.anon_click(
                &format!("dev-{d}"),
                &now,
                r#""type":"add_to_cart","currency":"CNY","items":[{"item_id":"b","price":"7.50"}]"#,
            ),
            Op::AnonPing(d) => {
                hot_weather(&mut s, &now);
                s.anon_click(&format!("dev-{d}"), &now, PING);
            }
            Op::Identify(d, c) => s.identify(&format!("dev-{d}"), &user(c), &now),
            Op::Restock => {
                let expires = at(t.plus(Span::from_secs(8 * 3600)));
                s.feed(
                    Topic::Inventory,
                    r#""store_id":"st-1""#,
                    &now,
                    &format!(
                        r#""type":"stock","item_id":"bread","item_category":"bakery","lot_id":"L{n}","on_hand":20,"price":"9.99","currency":"CNY","expires_at":"{expires}""#
                    ),
                );
            }
        }
    }
    s.advance(&at(t.plus(Span::from_secs(400 * 86_400))));
    let actions = s
        .actions()
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    (actions, erased)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_action_names_a_customer_after_their_erase_and_replay_is_deterministic(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let (actions, erased) = run(&ops);
        for (user, from) in &erased {
            let quoted = format!("\"{user}\"");
            for a in &actions[*from..] {
                prop_assert!(!a.contains(&quoted), "{user} erased, then named: {a}");
            }
        }
        let (again, _) = run(&ops);
        prop_assert_eq!(actions, again);
    }
}

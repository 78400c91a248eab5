//! Golden test: fixture → `footfall produce` → `footfall replay --until` → topics equal
//! the expected JSONL.

use footfall_pipeline::log::{Batch, Log};
use serde_json::Value;

use crate::support::{canonical, consume, data, footfall_ok, path};

fn read_lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(data("golden").join(name))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn abandoned_carts_and_dead_letters_match_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for topic in ["clickstream", "transactions"] {
        let input = std::fs::read(data("golden").join(format!("{topic}.jsonl"))).unwrap();
        footfall_ok(
            &["produce", "--data-dir", path(dir), "--topic", topic],
            Some(&input),
        );
    }
    // This golden checks the trigger alone: policies only assign the holdout group.
    let config = dir.join("footfall.toml");
    std::fs::write(&config, "[policy]\nenabled = false\n").unwrap();
    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(dir),
            "--config",
            path(&config),
            "--until",
            "2026-11-20T12:00:00Z",
        ],
        None,
    );

    let notifications = consume(dir, "notifications");
    assert!(notifications.iter().all(|a| a["emitted_at"].is_string()));
    assert_eq!(
        canonical(&notifications, &["emitted_at"]),
        canonical(&read_lines("expected_notifications.jsonl"), &[]),
    );

    let dead = consume(dir, "deadletter");
    assert_eq!(
        canonical(&dead, &["received_at", "partition", "offset"]),
        canonical(&read_lines("expected_deadletter.jsonl"), &[]),
    );
    // Each dead letter points at the very record it quotes.
    let log = Log::open(dir, Default::default()).unwrap();
    for d in &dead {
        let (topic, p, off) = (
            d["topic"].as_str().unwrap(),
            d["partition"].as_u64().unwrap() as u32,
            d["offset"].as_u64().unwrap(),
        );
        let mut r = log.reader(topic, p, off).unwrap();
        let mut b = Batch::default();
        assert_eq!(r.poll(&mut b, 1, 1 << 20).unwrap(), 1);
        let (o, bytes) = b.iter().next().unwrap();
        assert_eq!(o, off);
        assert_eq!(
            Some(String::from_utf8_lossy(bytes).as_ref()),
            d["raw"].as_str()
        );
    }

    // Replaying again over the same log adds nothing: the log is the outbox.
    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(dir),
            "--until",
            "2026-11-20T12:00:00Z",
        ],
        None,
    );
    assert_eq!(consume(dir, "notifications").len(), notifications.len());
    assert_eq!(consume(dir, "deadletter").len(), dead.len());
}

/// An `identify` whose anonymous key and customer key hash to different workers still
/// merges the anonymous cart into the customer's, and later anonymous events follow.
#[test]
fn identify_across_workers_moves_the_cart() {
    use footfall_operators::key::partition_for;
    let user = "m-cross";
    let anon = (0..)
        .map(|i| format!("dev-{i}"))
        .find(|a| partition_for(&format!("anon:{a}"), 4) != partition_for(user, 4))
        .unwrap();
    let clicks = format!(
        concat!(
            r#"{{"message_id":"x1","type":"add_to_cart","timestamp":"2026-11-20T10:00:00Z","anonymous_id":"{a}","cart_id":"cart-x","currency":"EUR","items":[{{"item_id":"a","price":"2.50","quantity":2}}]}}"#,
            "\n",
            r#"{{"message_id":"x2","type":"identify","timestamp":"2026-11-20T10:05:00Z","anonymous_id":"{a}","user_id":"{u}"}}"#,
            "\n",
            r#"{{"message_id":"x3","type":"add_to_cart","timestamp":"2026-11-20T10:10:00Z","anonymous_id":"{a}","cart_id":"cart-x","currency":"EUR","items":[{{"item_id":"b","price":"1.00"}}]}}"#,
            "\n",
        ),
        a = anon,
        u = user
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    footfall_ok(
        &["produce", "--data-dir", path(dir), "--topic", "clickstream"],
        Some(clicks.as_bytes()),
    );
    // Consented, so the merged cart's reminder passes the delivery policies.
    let profile = format!(
        r#"{{"message_id":"p1","type":"profile","timestamp":"2026-11-20T09:00:00Z","user_id":"{user}","consent":{{"push":true}}}}"#
    );
    footfall_ok(
        &["produce", "--data-dir", path(dir), "--topic", "customers"],
        Some(profile.as_bytes()),
    );
    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(dir),
            "--until",
            "2026-11-20T12:00:00Z",
        ],
        None,
    );
    let actions = consume(dir, "notifications");
    assert_eq!(actions.len(), 1, "{actions:?}");
    let a = &actions[0];
    assert_eq!(a["customer_id"], user);
    assert_eq!(a["anonymous_id"], anon.as_str());
    assert_eq!(a["payload"]["cart_id"], "cart-x");
    assert_eq!(a["payload"]["value"], "6.00");
    assert_eq!(a["fired_at"], "2026-11-20T10:40:00Z");
}

/// Every trigger of the catalogue on a small hand-made scenario, against records whose
/// values were worked out from `triggers.md` independently of the code (see the
/// scenario's comments in `tests/data/catalogue/`): the weather promotion at the store
/// 67 m away, the Shanghai birthday at 09:00 local, the markdowns of a lot the sales
/// depleted and the offer to its recent buyer, the churn crossing to the second, the
/// refund alert. An erased customer's birthday and a ping on stale weather fire nothing.
#[test]
fn every_trigger_of_the_catalogue_matches_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = data("catalogue");
    for topic in [
        "stores",
        "weather",
        "customers",
        "inventory",
        "clickstream",
        "transactions",
    ] {
        let input = std::fs::read(src.join(format!("{topic}.jsonl"))).unwrap();
        footfall_ok(
            &["produce", "--data-dir", path(dir), "--topic", topic],
            Some(&input),
        );
    }
    let config = dir.join("footfall.toml");
    std::fs::write(&config, "[policy]\nholdout_bp = 0\nenabled = false\n").unwrap();
    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(dir),
            "--config",
            path(&config),
            "--until",
            "2026-11-20T12:00:00Z",
        ],
        None,
    );
    for topic in ["notifications", "markdowns", "alerts"] {
        let expected: Vec<Value> =
            std::fs::read_to_string(src.join(format!("expected_{topic}.jsonl")))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        assert_eq!(
            canonical(&consume(dir, topic), &["emitted_at"]),
            canonical(&expected, &[]),
            "{topic}"
        );
    }
}

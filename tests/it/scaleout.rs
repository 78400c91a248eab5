//! Two processes sharing one pipeline (`transport.worker_index` / `worker_count`) on
//! one embedded log: each owns half of the key partitions, and together they write
//! exactly what one process writes (devices that log in as another worker's customer
//! included), also when one of them is SIGKILLed at random points and restarted from
//! its own checkpoints while the other runs on; and after their checkpoints are
//! resharded for three workers, the three go on as one process would.

use std::time::Duration;

use serde_json::Value;

use crate::support::{
    assert_same_records, consume, copy_dir, footfall, footfall_ok, generate, kill_at_random_points,
    path, produce, replay_from_checkpoint, spawn_replay, wait_ok,
};

/// Output topics, with the fields that differ between runs.
pub const OUTPUTS: [(&str, &[&str]); 6] = [
    ("notifications", &["emitted_at"]),
    ("suppressions", &["emitted_at"]),
    ("conversions", &[]),
    ("markdowns", &["emitted_at"]),
    ("alerts", &["emitted_at"]),
    ("deadletter", &["received_at"]),
];

/// A config file making this process worker `index` of `count`, checkpointing every
/// 0.2 s, with `extra` added to `[transport]`.
pub fn worker_config(
    dir: &std::path::Path,
    index: u32,
    count: u32,
    extra: &str,
) -> std::path::PathBuf {
    let file = dir.join(format!("w{index}-of-{count}.toml"));
    std::fs::write(
        &file,
        format!(
            "[transport]\nworker_index = {index}\nworker_count = {count}\n{extra}\n\n\
             [checkpoint]\ninterval_secs = 0.2\n"
        ),
    )
    .unwrap();
    file
}

/// Runs `footfall replay` of `data` as `count` workers at once; each must succeed.
fn replay_as(root: &std::path::Path, data: &std::path::Path, count: u32) {
    let runs: Vec<_> = (0..count)
        .map(|i| {
            let config = worker_config(root, i, count, "");
            (spawn_replay(data, &config), config)
        })
        .collect();
    for (run, config) in runs {
        wait_ok(run, &config);
    }
}

#[test]
fn two_workers_write_what_one_writes_across_a_crash_of_one() {
    let root = tempfile::tempdir().unwrap();
    let (one, two) = (root.path().join("one"), root.path().join("two"));
    generate(&one, 12000, 3, 23);
    copy_dir(&one, &two);
    let nock = root.path().join("nock.toml");
    std::fs::write(&nock, "[checkpoint]\nenabled = false\n").unwrap();
    footfall_ok(
        &["replay", "--data-dir", path(&one), "--config", path(&nock)],
        None,
    );

    let (w0, w1) = (
        worker_config(root.path(), 0, 2, ""),
        worker_config(root.path(), 1, 2, ""),
    );
    // Worker 0 runs to the end; worker 1 is killed a few times, each restart resuming
    // from its newest checkpoint.
    let first = spawn_replay(&two, &w0);
    // Paced: the four runs (0.3 to 1.5 s each) read at most 35,000 × 3.2 s of the
    // input, so every one is killed mid-way however fast the machine.
    let kills = kill_at_random_points(
        &[
            "replay",
            "--data-dir",
            path(&two),
            "--config",
            path(&w1),
            "--rate",
            "35000",
        ],
        4,
        0x51_7cc1_b727_220a,
        Duration::from_millis(300),
        Duration::from_millis(1200),
    );
    assert!(
        kills >= 2,
        "only {kills} runs of worker 1 were killed mid-way"
    );
    replay_from_checkpoint(&two, &w1);
    wait_ok(first, &w0);

    // Each checkpointed only its own partitions, in its own place.
    let ck = two.join("checkpoints");
    for w in ["worker-0", "worker-1"] {
        assert!(ck.join(w).is_dir(), "no checkpoints in {w}");
    }
    for (topic, drop) in OUTPUTS {
        assert_same_records(topic, &consume(&one, topic), &consume(&two, topic), drop);
    }
    assert!(consume(&two, "notifications").len() > 500);
}

#[test]
fn a_worker_refuses_a_checkpoint_of_another_worker_count() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    generate(&data, 300, 1, 3);
    replay_as(root.path(), &data, 2);
    // Worker 1's checkpoints, now as worker 1 of 3.
    let three = root.path().join("three.toml");
    std::fs::write(&three, "[transport]\nworker_index = 1\nworker_count = 3\n").unwrap();
    let out = footfall(
        &[
            "replay",
            "--data-dir",
            path(&data),
            "--config",
            path(&three),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("written by worker 1 of 2, and this is worker 1 of 3"),
        "{err}"
    );
}

#[test]
fn resharding_from_two_workers_to_three_keeps_the_state_with_its_partitions() {
    let root = tempfile::tempdir().unwrap();
    let (one, many) = (root.path().join("one"), root.path().join("many"));
    generate(&one, 2000, 2, 5);
    copy_dir(&one, &many);
    // First half: one process, and two workers.
    footfall_ok(&["replay", "--data-dir", path(&one)], None);
    replay_as(root.path(), &many, 2);
    let said = footfall_ok(
        &[
            "checkpoint",
            "reshard",
            "--data-dir",
            path(&many),
            "--from",
            "2",
            "--to",
            "3",
        ],
        None,
    );
    assert!(said.contains("worker 2 of 3: checkpoint"), "{said}");
    // Devices seen in the first half log in as customers in the second and add to the
    // carts they left: their carts must have followed them through the reshard.
    let logins = logins_of_unlinked_devices(&one, 40);
    assert!(logins.lines().count() >= 40, "{logins}");
    // Second half, later in time (after the first half's clock), for the same
    // customers: one process resumes, and three workers resume from the resharded
    // checkpoints.
    for d in [&one, &many] {
        produce(d, "clickstream", &logins);
        footfall_ok(
            &[
                "generate",
                "--data-dir",
                path(d),
                "--customers",
                "2000",
                "--hours",
                "2",
                "--seed",
                "6",
                "--start",
                "2026-11-22T08:00:00Z",
            ],
            None,
        );
    }
    footfall_ok(&["replay", "--data-dir", path(&one)], None);
    replay_as(root.path(), &many, 3);
    for (topic, drop) in OUTPUTS {
        assert_same_records(topic, &consume(&one, topic), &consume(&many, topic), drop);
    }
    assert!(consume(&many, "notifications").len() > 500);

    // Only worker 0 of 3 reads what came next: the checkpoints no longer agree on where
    // they stand, and resharding them is refused with what to do.
    produce(
        &many,
        "clickstream",
        r#"{"message_id":"late-1","type":"page_view","timestamp":"2026-11-23T08:00:00Z","user_id":"m-0000001"}"#,
    );
    let config = root.path().join("w0-of-3.toml");
    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(&many),
            "--config",
            path(&config),
        ],
        None,
    );
    let out = footfall(
        &[
            "checkpoint",
            "reshard",
            "--data-dir",
            path(&many),
            "--from",
            "3",
            "--to",
            "2",
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("stands elsewhere in the input than worker 0's: stop the producers"),
        "{err}"
    );
}

/// JSON lines in which `n` devices that added to a cart in `data` without ever being
/// linked to a customer identify as one, then add to that cart again.
fn logins_of_unlinked_devices(data: &std::path::Path, n: usize) -> String {
    let raw = footfall_ok(
        &[
            "consume",
            "--data-dir",
            path(data),
            "--topic",
            "clickstream",
            "--from-beginning",
        ],
        None,
    );
    // Some generated records are broken on purpose.
    let events: Vec<Value> = raw
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let linked: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e["user_id"].is_string())
        .filter_map(|e| e["anonymous_id"].as_str())
        .collect();
    let mut carts: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "add_to_cart" && !e["user_id"].is_string())
        .filter_map(|e| Some((e["anonymous_id"].as_str()?, e["cart_id"].as_str()?)))
        .filter(|(d, _)| !linked.contains(d))
        .collect();
    carts.sort();
    carts.dedup_by_key(|(d, _)| *d);
    let mut out = String::new();
    for (i, (device, cart)) in carts.into_iter().take(n).enumerate() {
        let user = format!("m-{:07}", 1 + i * 37);
        let (login, add) = (i * 60, i * 60 + 30);
        out.push_str(&format!(
            "{{\"message_id\":\"login-{i}\",\"type\":\"identify\",\"timestamp\":\"2026-11-22T07:{:02}:{:02}Z\",\"user_id\":\"{user}\",\"anonymous_id\":\"{device}\"}}\n",
            login / 60,
            login % 60
        ));
        out.push_str(&format!(
            "{{\"message_id\":\"again-{i}\",\"type\":\"add_to_cart\",\"timestamp\":\"2026-11-22T07:{:02}:{:02}Z\",\"user_id\":\"{user}\",\"anonymous_id\":\"{device}\",\"cart_id\":\"{cart}\",\"currency\":\"CNY\",\"items\":[{{\"item_id\":\"sku-again\",\"price\":\"1.00\",\"quantity\":1}}]}}\n",
            add / 60,
            add % 60
        ));
    }
    out
}

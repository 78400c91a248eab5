//! Crash recovery: SIGKILL mid-replay, restart from the checkpoint, and the output equals
//! an uninterrupted run's, with no action or dead letter written twice.

use std::time::Duration;

use crate::support::{
    assert_same_records, consume, copy_dir, footfall_ok, generate, kill_at_random_points, path,
    replay_from_checkpoint,
};

#[test]
fn sigkill_at_random_points_loses_nothing_and_sends_nothing_twice() {
    let root = tempfile::tempdir().unwrap();
    let (clean, crashed) = (root.path().join("clean"), root.path().join("crashed"));
    let generated = generate(&clean, 20000, 3, 11);
    let total: usize = generated
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected generate output: {generated}"));
    assert!(total >= 200_000, "the input has {total} events");
    copy_dir(&clean, &crashed);
    let ck = root.path().join("ck.toml");
    std::fs::write(&ck, "[checkpoint]\ninterval_secs = 0.2\n").unwrap();
    let nock = root.path().join("nock.toml");
    std::fs::write(&nock, "[checkpoint]\nenabled = false\n").unwrap();

    footfall_ok(
        &[
            "replay",
            "--data-dir",
            path(&clean),
            "--config",
            path(&nock),
        ],
        None,
    );

    // Kill points from a fixed seed, 0.3 to 1.8 s into each run. Paced, the six runs
    // together read at most 35,000 × 6.4 s (plus the first checkpoint's wait), well
    // short of the input: every run is killed mid-way, on a fast machine as on a slow
    // one.
    let kills = kill_at_random_points(
        &[
            "replay",
            "--data-dir",
            path(&crashed),
            "--config",
            path(&ck),
            "--rate",
            "35000",
        ],
        6,
        0x9e37_79b9_7f4a_7c15,
        Duration::from_millis(300),
        Duration::from_millis(1500),
    );
    assert!(kills >= 5, "only {kills} runs were killed mid-way");
    replay_from_checkpoint(&crashed, &ck);

    for (topic, drop) in [
        ("notifications", &["emitted_at"][..]),
        ("deadletter", &["received_at"][..]),
    ] {
        assert_same_records(
            topic,
            &consume(&clean, topic),
            &consume(&crashed, topic),
            drop,
        );
    }
    let actions = consume(&crashed, "notifications");
    assert!(actions.len() > 1000, "only {} actions", actions.len());
}

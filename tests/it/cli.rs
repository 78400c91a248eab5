//! The command line: help, validate, produce/consume.

use crate::support::{consume, data, footfall, footfall_ok, path};

#[test]
fn every_subcommand_has_help() {
    let top = footfall_ok(&["--help"], None);
    for sub in [
        "demo",
        "generate",
        "produce",
        "consume",
        "replay",
        "run",
        "validate",
        "bench",
        "checkpoint",
        "fit-churn",
    ] {
        assert!(top.contains(sub), "top-level help lists {sub}");
        let help = footfall_ok(&[sub, "--help"], None);
        assert!(help.contains("Usage: footfall"), "{sub} --help");
    }
}

#[test]
fn every_config_under_deploy_validates() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut n = 0;
    for entry in std::fs::read_dir(&deploy).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out = footfall_ok(&["validate", path(&p)], None);
            assert!(out.contains(": ok"), "{out}");
            n += 1;
        }
    }
    assert!(n >= 1, "deploy/ holds at least the example config");
}

#[test]
fn a_bad_config_fails_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[clock]\nallowed_lateness_secs = 5\n\n[triggers.abandoned_cart]\ndelay = 30\n",
    )
    .unwrap();
    let out = footfall(&["validate", path(&cfg)], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delay") && err.contains("line 5"), "{err}");

    std::fs::write(&cfg, "[policy]\nholdout_bp = 12000\n").unwrap();
    let out = footfall(&["validate", path(&cfg)], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy.holdout_bp"));
}

#[test]
fn produce_then_consume_round_trips_and_routes_by_customer() {
    let dir = tempfile::tempdir().unwrap();
    let d = path(dir.path());
    let lines: String = (0..50)
        .map(|i| {
            format!(
                "{{\"message_id\":\"m{i}\",\"user_id\":\"u{}\",\"type\":\"page_view\"}}\n",
                i % 7
            )
        })
        .collect();
    footfall_ok(
        &["produce", "--data-dir", d, "--topic", "clickstream"],
        Some(lines.as_bytes()),
    );
    let out = footfall_ok(
        &[
            "consume",
            "--data-dir",
            d,
            "--topic",
            "clickstream",
            "--from-beginning",
        ],
        None,
    );
    let mut got: Vec<&str> = out.lines().collect();
    let mut want: Vec<&str> = lines.lines().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let first3 = footfall_ok(
        &[
            "consume",
            "--data-dir",
            d,
            "--topic",
            "clickstream",
            "--from-beginning",
            "--max",
            "3",
        ],
        None,
    );
    assert_eq!(first3.lines().count(), 3);
    let missing = footfall(
        &[
            "consume",
            "--data-dir",
            d,
            "--topic",
            "nope",
            "--from-beginning",
        ],
        None,
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("clickstream"));
}

#[test]
fn fit_churn_reproduces_the_published_cdnow_fit_and_reads_transactions() {
    let cdnow = data("cdnow_customers_summary.csv");
    let out = footfall_ok(&["fit-churn", "--summary", path(&cdnow)], None);
    // lifetimes' documented fit: r 0.2426, alpha 4.4135, a 0.7929, b 2.4259, and a
    // log-likelihood of -9582.43.
    for want in [
        "on 2357 customers (946 with repeat purchases)",
        "log-likelihood -9582.4",
        "r = 0.242",
        "alpha = 4.41",
        "a = 0.79",
        "b = 2.42",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }

    // From transactions: two repeat buyers and a one-off, a refund and a broken line.
    let dir = tempfile::tempdir().unwrap();
    let tx = dir.path().join("tx.jsonl");
    std::fs::write(
        &tx,
        [
            r#"{"type":"purchase","user_id":"m-1","timestamp":"2026-01-01T10:00:00Z"}"#,
            r#"{"type":"purchase","user_id":"m-1","timestamp":"2026-01-05T10:00:00Z"}"#,
            r#"{"type":"purchase","user_id":"m-2","timestamp":"2026-01-02T10:00:00Z"}"#,
            r#"{"type":"purchase","user_id":"m-2","timestamp":"2026-01-09T10:00:00Z"}"#,
            r#"{"type":"refund","user_id":"m-2","timestamp":"2026-01-10T10:00:00Z"}"#,
            r#"{"type":"purchase","user_id":"m-3","timestamp":"2026-01-03T10:00:00Z"}"#,
            "not json",
        ]
        .join("\n"),
    )
    .unwrap();
    let out = footfall(
        &[
            "fit-churn",
            "--transactions",
            path(&tx),
            "--until",
            "2026-02-01T00:00:00Z",
        ],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("on 3 customers (2 with repeat purchases), in days"),
        "{stdout}"
    );
    assert!(stderr.contains("skipped 1 lines"), "{stderr}");
    assert!(stderr.contains("too few for a meaningful fit"), "{stderr}");

    let neither = footfall(&["fit-churn"], None);
    assert!(!neither.status.success());
}

#[test]
fn bench_measures_the_policies_against_a_replay_without_them() {
    // The baseline really goes without: every action its triggers make is written, none
    // suppressed, none held out.
    let dir = tempfile::tempdir().unwrap();
    let out = footfall_ok(
        &[
            "bench",
            "--events",
            "20000",
            "--without-policies",
            "--data-dir",
            path(dir.path()),
        ],
        None,
    );
    assert!(out.contains("policies          none"), "{out}");
    let notifications = consume(dir.path(), "notifications");
    assert!(!notifications.is_empty(), "{out}");
    assert!(
        notifications.iter().all(|n| n["group"] == "treatment"),
        "no holdout without the policies"
    );
    assert!(consume(dir.path(), "suppressions").is_empty());
    // A second bench into the same directory would measure both logs: refused.
    let again = footfall(
        &["bench", "--events", "1000", "--data-dir", path(dir.path())],
        None,
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("is not empty"),
        "{err}"
    );

    let out = footfall_ok(
        &[
            "bench",
            "--events",
            "20000",
            "--policy-cost",
            "--split",
            "--rounds",
            "1",
        ],
        None,
    );
    let figure = |prefix: &str, after: &str| -> u64 {
        let line = out
            .lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("{out}"));
        let rest = &line[line.find(after).unwrap() + after.len()..];
        let n: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .collect();
        n.replace(',', "")
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    assert!(out.contains("policies and identity add"), "{out}");
    assert!(
        out.contains("single rounds: +") || out.contains("single rounds: -"),
        "{out}"
    );
    // The demo customers' consent suppresses some of what the triggers make.
    let with = figure("actions written:", "actions written:");
    let without = figure("actions written:", "with (after the policies),");
    assert!(0 < with && with < without, "{out}");
    let round = out
        .lines()
        .find(|l| l.starts_with("  1 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        round.matches(" s CPU ").count(),
        2,
        "both replays' figures: {out}"
    );
    // `--split`: each of the two alone against the same baseline. The policies alone
    // suppress some of what the triggers make; the identity graph alone suppresses none
    // of what its triggers make, which the policies then do.
    let alone_policies = figure("the delivery policies alone:", "CPU;");
    let alone_identity = figure("the identity graph alone:", "CPU;");
    assert!(0 < alone_policies && alone_policies < without, "{out}");
    assert!(with < alone_identity, "{out}");
}

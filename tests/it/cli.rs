//! The command line: help, validate, produce/consume.

use crate::support::{footfall, footfall_ok, path};

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

//! The Fluvio transport against a real cluster: set `FLUVIO_ENDPOINT` (e.g.
//! `127.0.0.1:9003`) to run these; without it they say that they skipped. They delete
//! and recreate footfall's topics on that cluster, so point them at a test cluster.
//!
//! - Reading a partition of a few MiB with small fetches (where the published client
//!   drops batches) returns every offset exactly once.
//! - Generated traffic loaded with `footfall generate --transport fluvio`, replayed
//!   from Fluvio with SIGKILLs at random points and restarts from the checkpoints,
//!   writes to Fluvio exactly the actions (and dead letters) an uninterrupted run on
//!   the embedded log writes, none twice.
//! - Two processes sharing the partitions of that traffic (`worker_count = 2`), one of
//!   them SIGKILLed at random points and restarted, write to Fluvio exactly what the
//!   embedded log's one process writes.

use std::sync::Arc;
use std::time::Duration;

use footfall_operators::action::OutputTopic;
use footfall_operators::event::Topic;
use footfall_pipeline::config::TransportConfig;
use footfall_pipeline::fluvio::Cluster;
use footfall_pipeline::fluvio::io::{FluvioReader, FluvioWriter};
use footfall_pipeline::log::Batch;
use serde_json::Value;

use crate::scaleout::{OUTPUTS, worker_config};
use crate::support::{
    assert_same_records, consume, footfall, footfall_ok, generate, kill_at_random_points, path,
    replay_from_checkpoint, spawn_replay, wait_ok,
};

/// The cluster's endpoint, or `None` after saying the test skipped.
fn endpoint(test: &str) -> Option<String> {
    match std::env::var("FLUVIO_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            eprintln!(
                "SKIPPED {test}: FLUVIO_ENDPOINT is not set (no Fluvio cluster to test against)"
            );
            None
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(endpoint: &str, max_fetch: u64) -> Arc<Cluster> {
    let t = TransportConfig {
        fluvio_endpoint: endpoint.to_owned(),
        fluvio_max_fetch_bytes: max_fetch,
        // Batches of the size other producers use (Fluvio's default): each fits a
        // fetch of the small reader below.
        fluvio_batch_bytes: 16 << 10,
        ..TransportConfig::default()
    };
    Cluster::connect(&t).await.expect("connect to Fluvio")
}

/// One test: the cases share the cluster's topic names, so they run in order.
#[test]
fn fluvio_cluster() {
    let Some(endpoint) = endpoint("fluvio_cluster") else {
        return;
    };
    small_fetches_skip_nothing(&endpoint);
    replay_with_crashes_matches_the_embedded_log(&endpoint);
}

fn small_fetches_skip_nothing(endpoint: &str) {
    let rt = runtime();
    rt.block_on(async {
        let c = connect(endpoint, 1 << 21).await;
        // A new topic each run (a name deleted and created again at once can hang a
        // cluster's controller).
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let topic = &format!("footfall-test-fetch-{stamp}");
        c.ensure_topics(&[topic], 1, 1).await.unwrap();
        // About 6 MiB of records of varied size.
        let w = FluvioWriter::open(&c, topic, 0, 0).await.unwrap();
        let n = 24_000u64;
        for i in 0..n {
            let pad = "x".repeat(100 + (i as usize * 37) % 400);
            w.append(b"", format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes())
                .unwrap();
        }
        w.flush().await.unwrap();
        assert_eq!(c.end_now(topic, 0).await.unwrap(), n);

        // 64 KiB fetches: the published client drops a batch every few hundred records.
        let small = connect(endpoint, 64 << 10).await;
        let mut r = FluvioReader::new(small, topic, 0, 0, true);
        let mut batch = Batch::default();
        let mut next = 0u64;
        while r.poll(&mut batch, 1000, 1 << 20).await > 0 {
            for (offset, bytes) in batch.iter() {
                assert_eq!(offset, next, "offsets out of order");
                let v: Value = serde_json::from_slice(bytes).unwrap();
                assert_eq!(v["i"], offset, "record {offset} holds another record");
                next += 1;
            }
        }
        assert_eq!(next, n, "every record read exactly once");
        let gaps = footfall_pipeline::metrics::get()
            .offset_gaps
            .with_label_values(&[topic, "0"])
            .get();
        eprintln!("read {n} records with 64 KiB fetches; the client skipped {gaps} times and each gap was read again");
        c.delete_topic(topic).await.unwrap();
    });
}

fn replay_with_crashes_matches_the_embedded_log(endpoint: &str) {
    let root = tempfile::tempdir().unwrap();
    let clean = root.path().join("clean");
    let state = root.path().join("state");
    let (customers, hours, seed) = (12000, 3, 17);
    generate(&clean, customers, hours, seed);

    // Fresh topics, loaded with the same traffic.
    runtime().block_on(async {
        let c = connect(endpoint, 4 << 20).await;
        for t in Topic::ALL.iter().map(|t| t.name()) {
            c.delete_topic(t).await.unwrap();
        }
        for t in OutputTopic::ALL.iter().map(|t| t.name()) {
            c.delete_topic(t).await.unwrap();
        }
    });
    let loaded = footfall(
        &[
            "generate",
            "--transport",
            "fluvio",
            "--customers",
            &customers.to_string(),
            "--hours",
            &hours.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        None,
    );
    let said = String::from_utf8_lossy(&loaded.stderr);
    assert!(
        loaded.status.success() && said.contains("into Fluvio"),
        "{said}"
    );

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
    let fl = root.path().join("fluvio.toml");
    std::fs::write(
        &fl,
        format!(
            "[transport]\nkind = \"fluvio\"\nfluvio_endpoint = \"{endpoint}\"\n\n\
             [checkpoint]\ninterval_secs = 0.3\n"
        ),
    )
    .unwrap();

    let kills = kill_at_random_points(
        &["replay", "--data-dir", path(&state), "--config", path(&fl)],
        4,
        0x2545_f491_4f6c_dd1d,
        Duration::from_millis(500),
        Duration::from_millis(2000),
    );
    eprintln!("killed {kills} Fluvio replays mid-way");
    assert!(kills >= 2, "only {kills} replays were killed mid-way");
    replay_from_checkpoint(&state, &fl);

    // Offsets are committed once a checkpoint covers them: after the last one, at the
    // end of every input partition.
    runtime().block_on(async {
        let c = connect(endpoint, 4 << 20).await;
        let committed = c.committed().await.unwrap();
        for t in Topic::ALL.iter().map(|t| t.name()) {
            let Some(n) = c.partitions(t).await.unwrap() else {
                continue;
            };
            for p in 0..n {
                let end = c.end_now(t, p).await.unwrap();
                let got = committed.get(&(t.to_owned(), p)).copied().unwrap_or(0);
                assert_eq!(got, end, "{t}/{p}: committed offset");
            }
        }
    });

    assert_fluvio_outputs_match(&clean);
    two_workers_with_a_crash_match_the_embedded_log(endpoint, root.path(), &clean);
}

/// Asserts Fluvio's output topics hold exactly what the embedded log in `clean` does.
fn assert_fluvio_outputs_match(clean: &std::path::Path) {
    for (topic, drop) in OUTPUTS {
        let out = footfall_ok(
            &[
                "consume",
                "--transport",
                "fluvio",
                "--topic",
                topic,
                "--from-beginning",
            ],
            None,
        );
        let got: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_same_records(topic, &consume(clean, topic), &got, drop);
    }
    assert!(consume(clean, "notifications").len() > 100);
}

fn two_workers_with_a_crash_match_the_embedded_log(
    endpoint: &str,
    root: &std::path::Path,
    clean: &std::path::Path,
) {
    // The input stays; the outputs start empty.
    runtime().block_on(async {
        let c = connect(endpoint, 4 << 20).await;
        for t in OutputTopic::ALL.iter().map(|t| t.name()) {
            c.delete_topic(t).await.unwrap();
        }
    });
    let fluvio = format!("kind = \"fluvio\"\nfluvio_endpoint = \"{endpoint}\"");
    let shared = root.join("shared");
    let (w0, w1) = (
        worker_config(root, 0, 2, &fluvio),
        worker_config(root, 1, 2, &fluvio),
    );
    let first = spawn_replay(&shared, &w0);
    let kills = kill_at_random_points(
        &["replay", "--data-dir", path(&shared), "--config", path(&w1)],
        3,
        0x7f4a_7c15_9e37_79b9,
        Duration::from_millis(800),
        Duration::from_millis(2500),
    );
    eprintln!("killed worker 1 of 2 {kills} times mid-way");
    assert!(
        kills >= 2,
        "only {kills} runs of worker 1 were killed mid-way"
    );
    replay_from_checkpoint(&shared, &w1);
    wait_ok(first, &w0);
    assert_fluvio_outputs_match(clean);
}

//! `footfall produce`, `consume` and `generate` against a Fluvio cluster
//! (`--transport fluvio`, endpoint from `FLUVIO_ENDPOINT`).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use footfall_operators::event::Topic;
use footfall_operators::key::partition_for;
use footfall_pipeline::config::TransportConfig;
use footfall_pipeline::fluvio::Cluster;
use footfall_pipeline::fluvio::io::{FluvioReader, FluvioWriter};
use footfall_pipeline::generate::Record;
use footfall_pipeline::log::Batch;
use tokio::sync::mpsc;

/// Connects to `FLUVIO_ENDPOINT` (default `127.0.0.1:9003`), plaintext.
pub async fn connect() -> anyhow::Result<Arc<Cluster>> {
    let mut t = TransportConfig::default();
    if let Ok(e) = std::env::var("FLUVIO_ENDPOINT") {
        t.fluvio_endpoint = e;
    }
    Ok(Cluster::connect(&t).await?)
}

/// One producer per partition of `topic` (created with `partitions` if missing).
async fn writers(
    cluster: &Arc<Cluster>,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<Vec<FluvioWriter>> {
    let counts = cluster.ensure_topics(&[topic], partitions, 1).await?;
    let n = counts.get(topic).copied().unwrap_or(partitions);
    let mut out = Vec::new();
    for p in 0..n {
        let end = cluster.end_now(topic, p).await?;
        out.push(FluvioWriter::open(cluster, topic, p, end).await?);
    }
    Ok(out)
}

/// Appends every line of standard input to `topic`, keyed like the embedded log.
pub async fn produce(topic: &str, partitions: u32) -> anyhow::Result<()> {
    let cluster = connect().await?;
    let ws = writers(&cluster, topic, partitions).await?;
    let n = ws.len() as u32;
    let input_topic: Option<Topic> = topic.parse().ok();
    let count = super::topics::each_line(|line| {
        let (key, p) = super::topics::route(input_topic, line, n);
        ws[p as usize].append(key.unwrap_or_default().as_bytes(), line)?;
        Ok(())
    })?;
    for w in &ws {
        w.flush().await?;
    }
    eprintln!(
        "produced {count} records to {topic} ({n} partitions) on Fluvio at {}",
        cluster.endpoint()
    );
    Ok(())
}

/// Writes generated records to their topics, each to the partition of its key.
pub async fn write_generated(records: &[Record], partitions: u32) -> anyhow::Result<u64> {
    let cluster = connect().await?;
    let started = Instant::now();
    let mut all = Vec::new();
    for t in Topic::ALL {
        all.push(writers(&cluster, t.name(), partitions).await?);
    }
    for (i, r) in records.iter().enumerate() {
        let ti = Topic::ALL.iter().position(|&t| t == r.topic).unwrap_or(0);
        let ws = &all[ti];
        let p = partition_for(&r.key, ws.len() as u32) as usize;
        ws[p].append(r.key.as_bytes(), &r.bytes)?;
        if (i + 1) % 200_000 == 0 {
            // Keep the queues short, and show progress on long loads.
            for ws in &all {
                for w in ws {
                    w.flush().await?;
                }
            }
            eprintln!(
                "  {} of {} records sent ({:.0}/s)",
                i + 1,
                records.len(),
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    for ws in &all {
        for w in ws {
            w.flush().await?;
        }
    }
    Ok(records.len() as u64)
}

/// Prints `topic`'s records as JSON lines, partition after partition for what is there;
/// with `follow`, then everything that arrives, as it arrives.
pub async fn consume(
    topic: &str,
    from_beginning: bool,
    max: Option<u64>,
    follow: bool,
) -> anyhow::Result<()> {
    let cluster = connect().await?;
    let topics = cluster.topics().await?;
    let Some(&n) = topics.get(topic) else {
        let mut names: Vec<&String> = topics.keys().collect();
        names.sort();
        bail!(
            "no topic `{topic}` on Fluvio at {} (topics there: {})",
            cluster.endpoint(),
            if names.is_empty() {
                "none".into()
            } else {
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    };
    let limit = max.unwrap_or(u64::MAX);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4096);
    for p in 0..n {
        let start = match from_beginning {
            true => 0,
            false => cluster
                .end_now(topic, p)
                .await
                .with_context(|| format!("reading where {topic}/{p} ends"))?,
        };
        let mut reader = FluvioReader::new(cluster.clone(), topic, p, start, !follow);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut batch = Batch::default();
            loop {
                let got = reader.poll(&mut batch, 1024, 1 << 20).await;
                if got == 0 && !follow {
                    return;
                }
                for (_, payload) in batch.iter() {
                    if tx.send(payload.to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0;
    while printed < limit {
        let Some(payload) = rx.recv().await else {
            break;
        };
        out.write_all(String::from_utf8_lossy(&payload).as_bytes())?;
        out.write_all(b"\n")?;
        printed += 1;
        if rx.is_empty() {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

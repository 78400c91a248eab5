//! `footfall produce` and `footfall consume`: records in and out of the embedded log.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use footfall_operators::event::Topic;
use footfall_operators::key::partition_for;
use footfall_pipeline::log::{Batch, Log};
use xxhash_rust::xxh3::xxh3_64;

pub fn produce(data_dir: &Path, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let log = Log::open(data_dir, Default::default())?;
    let n = log.create_topic(topic, partitions)?;
    let input_topic: Option<Topic> = topic.parse().ok();
    let mut writers = (0..n)
        .map(|p| log.writer(topic, p))
        .collect::<Result<Vec<_>, _>>()?;
    let count = each_line(|line| {
        let (_, p) = route(input_topic, line, n);
        writers[p as usize].append(line)?;
        Ok(())
    })?;
    for w in &mut writers {
        w.sync()?;
    }
    eprintln!(
        "produced {count} records to {topic} ({n} partitions) in {}",
        data_dir.display()
    );
    Ok(())
}

/// Calls `each` with every non-blank line of standard input, without its line end.
/// Returns how many lines it took.
pub(super) fn each_line(mut each: impl FnMut(&[u8]) -> anyhow::Result<()>) -> anyhow::Result<u64> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    let mut count = 0u64;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            return Ok(count);
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        each(&line)?;
        count += 1;
    }
}

/// The key of `line` (if it has one) and its partition of `n`: the key's, else a hash
/// of the line's.
pub(super) fn route(topic: Option<Topic>, line: &[u8], n: u32) -> (Option<String>, u32) {
    let key = route_key(topic, line);
    let p = match &key {
        Some(k) => partition_for(k, n),
        None => (xxh3_64(line) % u64::from(n)) as u32,
    };
    (key, p)
}

/// The partitioning key a producer would set: the customer key as far as the record
/// alone tells (`user_id`, else `anon:<anonymous_id>`), or the store for store topics.
fn route_key(topic: Option<Topic>, line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ids {
        user_id: Option<String>,
        anonymous_id: Option<String>,
        store_id: Option<String>,
        region: Option<String>,
    }
    let ids: Ids = serde_json::from_slice(line).ok()?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match topic {
        Some(t) if t.keyed_by_store() => nonempty(ids.store_id).or(nonempty(ids.region)),
        _ => nonempty(ids.user_id).or(nonempty(ids.anonymous_id).map(|a| format!("anon:{a}"))),
    }
}

pub async fn consume(
    data_dir: &Path,
    topic: &str,
    from_beginning: bool,
    max: Option<u64>,
    follow: bool,
) -> anyhow::Result<()> {
    let log = Log::open(data_dir, Default::default())?;
    let Some(n) = log.partitions(topic)? else {
        let topics = log.topics()?;
        bail!(
            "no topic `{topic}` in {} (topics there: {})",
            data_dir.display(),
            if topics.is_empty() {
                "none".into()
            } else {
                topics.join(", ")
            }
        );
    };
    let mut readers = Vec::new();
    for p in 0..n {
        let start = if from_beginning {
            0
        } else {
            log.end_offset(topic, p)?
        };
        readers.push(log.reader(topic, p, start)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut batch = Batch::default();
    let mut printed = 0u64;
    let limit = max.unwrap_or(u64::MAX);
    loop {
        let mut any = false;
        for r in &mut readers {
            while printed < limit {
                if r.poll(&mut batch, 1024, 1 << 20)? == 0 {
                    break;
                }
                any = true;
                for (_, payload) in batch.iter() {
                    if printed >= limit {
                        break;
                    }
                    out.write_all(String::from_utf8_lossy(payload).as_bytes())?;
                    out.write_all(b"\n")?;
                    printed += 1;
                }
            }
        }
        out.flush()?;
        if printed >= limit || (!any && !follow) {
            return Ok(());
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

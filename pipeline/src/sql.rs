//! SQL over a data directory: the embedded log's input and output topics loaded into
//! the retained tables (`footfall sql --data-dir D`), and SQL rules validated and
//! tested (`footfall rules validate|test DIR`).

use std::time::Duration;

use footfall_operators::action::Action;
use footfall_operators::decode::decode;
use footfall_operators::event::Topic;
use footfall_operators::identity::Identity;
use footfall_operators::time::{Span, Timestamp};
use footfall_sql::{Limits, Retention, Table, Tables};

use crate::config::SqlConfig;
use crate::log::{Batch, Log, LogError};

/// The tables' retention and the query limits of `cfg`.
pub fn tables(cfg: &SqlConfig) -> Tables {
    let base = Retention {
        age: Span::from_secs(cfg.retention_secs.min(i64::MAX as u64 / 2_000_000_000) as i64),
        bytes: cfg.retention_bytes as usize,
    };
    let mut t = Tables::new(base);
    for table in Table::ALL {
        if let Some(o) = cfg.retention.get(table.name()) {
            t.set_retention(
                table,
                Retention {
                    age: o.secs.map_or(base.age, |s| {
                        Span::from_secs(s.min(i64::MAX as u64 / 2_000_000_000) as i64)
                    }),
                    bytes: o.bytes.map_or(base.bytes, |b| b as usize),
                },
            );
        }
    }
    t
}

/// Query limits from `cfg`.
pub fn limits(cfg: &SqlConfig) -> Limits {
    Limits {
        memory_bytes: cfg.query_memory_bytes as usize,
        timeout: Duration::from_secs_f64(cfg.query_timeout_secs.max(0.001)),
    }
}

/// Unknown `[sql.retention.*]` tables are a config mistake.
pub fn check(cfg: &SqlConfig) -> Result<(), String> {
    for name in cfg.retention.keys() {
        if !Table::ALL.iter().any(|t| t.name() == name) {
            let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
            return Err(format!(
                "[sql.retention.{name}]: no such table (tables: {})",
                names.join(", ")
            ));
        }
    }
    Ok(())
}

/// What [`load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Input events loaded.
    pub events: u64,
    /// Input records that did not decode (dead letters).
    pub skipped: u64,
    /// Actions and suppressions loaded.
    pub actions: u64,
}

/// Reads every input and output topic of `log` into `tables`; `progress` hears of every
/// million records.
pub fn load(
    log: &Log,
    tables: &mut Tables,
    mut progress: impl FnMut(u64),
) -> Result<Loaded, LogError> {
    let mut loaded = Loaded::default();
    let mut identity = Identity::default();
    let now = Timestamp::now();
    let mut batch = Batch::default();
    let mut seen = 0u64;
    for topic in Topic::ALL {
        let Some(parts) = log.partitions(topic.name())? else {
            continue;
        };
        for p in 0..parts {
            let mut reader = log.reader(topic.name(), p, 0)?;
            while reader.poll(&mut batch, 4096, 8 << 20)? > 0 {
                for (_, bytes) in batch.iter() {
                    match decode(topic, bytes, now) {
                        Ok(ev) => {
                            let key = identity.resolve(topic, &ev).key;
                            tables.append(topic, &key, &ev);
                            loaded.events += 1;
                        }
                        Err(_) => loaded.skipped += 1,
                    }
                    seen += 1;
                    if seen.is_multiple_of(1_000_000) {
                        progress(seen);
                    }
                }
            }
        }
    }
    for topic in ["notifications", "markdowns", "alerts", "suppressions"] {
        let Some(parts) = log.partitions(topic)? else {
            continue;
        };
        for p in 0..parts {
            let mut reader = log.reader(topic, p, 0)?;
            while reader.poll(&mut batch, 4096, 8 << 20)? > 0 {
                for (_, bytes) in batch.iter() {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                        continue;
                    };
                    let detail = v.get("detail").and_then(|d| d.as_str()).map(str::to_owned);
                    let Ok(a) = serde_json::from_value::<Action>(v) else {
                        continue;
                    };
                    tables.append_action(topic, &a, detail.as_deref());
                    loaded.actions += 1;
                }
            }
        }
    }
    tables.seal();
    Ok(loaded)
}

/// The live state tables' rows as of the newest checkpoint in `cfg`'s checkpoint store
/// (for `data_dir`), with that checkpoint's id; `None` without a checkpoint.
pub async fn live_state(
    cfg: &crate::config::Config,
    data_dir: &std::path::Path,
) -> Result<Option<(u64, footfall_operators::live::Live)>, String> {
    use footfall_operators::live::Live;
    use footfall_operators::policy::{Policy, Settings};
    use footfall_operators::worker::Worker;

    if !cfg.checkpoint.enabled {
        return Ok(None);
    }
    let store = crate::checkpoint::Store::open(
        &cfg.checkpoint_location(data_dir),
        cfg.checkpoint.keep,
        &cfg.checkpoint.options,
    )
    .map_err(|e| e.to_string())?;
    let Some((manifest, data)) = store.load_newest().await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let settings = Settings::from_config(&cfg.policy, &cfg.triggers.birthday.default_timezone)?;
    let mut live = Live::default();
    for (i, mut snap) in data.workers.into_iter().enumerate() {
        if let Some(at) = snap
            .operators
            .iter()
            .position(|(name, _)| name == crate::runtime::checkpointer::POLICY)
        {
            let (_, image) = snap.operators.remove(at);
            let mut policy = Policy::new(settings.clone());
            crate::runtime::policy::restore(&mut policy, image.as_ref())
                .map_err(|e| format!("checkpoint {}, policy {i}: {e}", manifest.id))?;
            live.extend(policy.live());
        }
        let mut worker = Worker::new(footfall_operators::triggers::build(&cfg.triggers));
        worker
            .restore(snap)
            .map_err(|e| format!("checkpoint {}, worker {i}: {e}", manifest.id))?;
        live.extend(worker.live());
    }
    Ok(Some((manifest.id, live)))
}

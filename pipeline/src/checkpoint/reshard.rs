//! Changing how many processes share a pipeline, with the state following its
//! partitions: the newest checkpoints of the `from` workers become checkpoints for `to`
//! workers.
//!
//! Every worker reads all the input, so the old workers' checkpoints can be recombined
//! when they stand at the same place in it (the same next offset and no event held, in
//! every input partition): the workers were stopped once they had caught up with input
//! that had stopped arriving. Then new worker `j` gets, for each key partition `p`:
//! - if it owns `p`, everything `p`'s old owner held: customers, devices, stores,
//!   timers, the policies, and the output positions;
//! - otherwise what every worker keeps whole (see `runtime::assign`): the stores' state
//!   and the devices' not linked to a customer yet, from the same old owner.
//!
//! Every worker's sequencer is the same at such a point: the one taken is the old worker
//! 0's, with the earliest clock of all (a later clock only means timers of an idle input
//! fired sooner; those already fired are not in any checkpoint's timers).

use std::path::Path;

use footfall_operators::identity::ANON_PREFIX;
use footfall_operators::state::EncodedState;
use footfall_operators::worker::{REFERENCE, Snapshot};

use super::{CheckpointData, Manifest, Store};
use crate::config::Config;
use crate::runtime::checkpointer::POLICY;

/// Operators keyed by store, whose state every worker keeps whole.
const STORE_KEYED: [&str; 2] = [footfall_operators::triggers::stale_stock::NAME, REFERENCE];

/// What [`reshard`] wrote: per new worker, where and which checkpoint.
pub struct Resharded {
    /// (worker index, store location, checkpoint id).
    pub written: Vec<(u32, String, u64)>,
}

fn location(cfg: &Config, data_dir: &Path, index: u32, count: u32) -> String {
    let mut c = cfg.clone();
    c.transport.worker_index = index;
    c.transport.worker_count = count;
    c.checkpoint_location(data_dir)
}

/// Writes checkpoints for `to` workers from the newest ones of the `from` workers in the
/// checkpoint store of `cfg` (under `data_dir`).
pub async fn reshard(
    cfg: &Config,
    data_dir: &Path,
    from: u32,
    to: u32,
) -> Result<Resharded, String> {
    if from == 0 || to == 0 {
        return Err("worker counts are at least 1".into());
    }
    let c = &cfg.checkpoint;
    let mut old: Vec<(Manifest, CheckpointData)> = Vec::new();
    let mut next_id = 1;
    for i in 0..from {
        let url = location(cfg, data_dir, i, from);
        let store = Store::open(&url, c.keep, &c.options).map_err(|e| e.to_string())?;
        next_id = next_id.max(store.next_id().await.map_err(|e| e.to_string())?);
        let Some((m, d)) = store.load_newest().await.map_err(|e| e.to_string())? else {
            return Err(format!(
                "no complete checkpoint of worker {i} of {from} at {url}"
            ));
        };
        if (m.worker_index, m.worker_count) != (i, from) {
            return Err(format!(
                "{url}: checkpoint {} was written by worker {} of {}, not {i} of {from}",
                m.id, m.worker_index, m.worker_count
            ));
        }
        old.push((m, d));
    }
    let position = |d: &CheckpointData| -> Vec<(String, u32, u64, usize)> {
        let mut p: Vec<_> = d
            .sequencer
            .sources
            .iter()
            .map(|s| (s.topic.clone(), s.partition, s.next_offset, s.held.len()))
            .collect();
        p.sort();
        p
    };
    let first = position(&old[0].1);
    for (i, (m, d)) in old.iter().enumerate() {
        let here = position(d);
        if here != first {
            return Err(format!(
                "worker {i}'s checkpoint {} stands elsewhere in the input than worker 0's: \
                 stop the producers, wait until every worker has read everything and its \
                 clock has passed the last event (footfall_consumer_lag at 0 for \
                 clock.idle_timeout_secs), stop the workers, and run this again",
                m.id
            ));
        }
        if here.iter().any(|(_, _, _, held)| *held > 0) {
            return Err(format!(
                "worker {i}'s checkpoint {} still holds events for the clock: let the \
                 workers run until the clock passes the last event, then stop them",
                m.id
            ));
        }
    }
    let partitions = old[0].1.workers.len();
    if let Some((m, _)) = old.iter().find(|(_, d)| d.workers.len() != partitions) {
        return Err(format!(
            "checkpoint {} has {} partition workers, not {partitions}",
            m.id, m.workers
        ));
    }
    let earliest = old
        .iter()
        .min_by_key(|(_, d)| d.sequencer.clock)
        .map(|(_, d)| d.sequencer.clock)
        .unwrap_or_default();

    let mut out = Resharded {
        written: Vec::new(),
    };
    for j in 0..to {
        let mut sequencer = old[0].1.sequencer.clone();
        sequencer.clock = earliest;
        let workers = (0..partitions)
            .map(|p| {
                let owner = &old[p % from as usize].1.workers[p];
                share(owner, p as u32 % to == j)
            })
            .collect();
        let outputs = old[0]
            .0
            .outputs
            .iter()
            .map(|(topic, _)| {
                let ends = (0..partitions)
                    .map(|p| {
                        let m = &old[p % from as usize].0;
                        m.outputs
                            .iter()
                            .find(|(t, _)| t == topic)
                            .and_then(|(_, e)| e.get(p).copied())
                            .unwrap_or(0)
                    })
                    .collect();
                (topic.clone(), ends)
            })
            .collect();
        let url = location(cfg, data_dir, j, to);
        let store = Store::open(&url, c.keep, &c.options)
            .map_err(|e| e.to_string())?
            .with_share(j, to);
        store
            .write(next_id, CheckpointData { sequencer, workers }, outputs)
            .await
            .map_err(|e| format!("writing worker {j} of {to}'s checkpoint at {url}: {e}"))?;
        out.written.push((j, url, next_id));
    }
    Ok(out)
}

/// A partition's snapshot for a new worker: all of it for the owner; the stores' and
/// unlinked devices' state, and their timers, for the others.
fn share(s: &Snapshot, owner: bool) -> Snapshot {
    let keep =
        |op: &str, key: &str| owner || STORE_KEYED.contains(&op) || key.starts_with(ANON_PREFIX);
    let mut kept_keys = std::collections::HashSet::new();
    let operators = s
        .operators
        .iter()
        .filter(|(name, _)| owner || name != POLICY)
        .map(|(name, image)| {
            let mut rows = Vec::new();
            image.encode(&mut |key, bytes| {
                if keep(name, key) {
                    kept_keys.insert(key.to_owned());
                    rows.push((key.into(), bytes.to_vec()));
                }
            });
            (
                name.clone(),
                Box::new(EncodedState(rows)) as Box<dyn footfall_operators::state::StateImage>,
            )
        })
        .collect();
    Snapshot {
        clock: s.clock,
        timers: s
            .timers
            .iter()
            .filter(|t| keep(&t.operator, &t.key))
            .cloned()
            .collect(),
        operators,
        touched: s
            .touched
            .iter()
            .filter(|(k, _)| owner || kept_keys.contains(k.as_str()))
            .cloned()
            .collect(),
    }
}

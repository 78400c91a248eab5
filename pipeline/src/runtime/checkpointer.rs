//! Takes checkpoints on the wall-clock interval and at a clean stop, and brings a
//! restarted pipeline back to the newest complete one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use footfall_operators::decode::decode;
use footfall_operators::event::Topic;
use footfall_operators::time::Timestamp;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::dedupe::message_hash;
use super::sequencer::{Sequencer, WorkerGone};
use super::sink::Sinks;
use super::source::Decoded;
use super::stats::Stats;
use super::topics::Topics;
use crate::checkpoint::{CheckpointData, SourceState, Store};
use crate::fluvio::{Cluster, CommitGate, Transport};
use crate::log::LogError;
use crate::metrics;

/// The name under which a worker's snapshot carries its partition's policies' state.
pub const POLICY: &str = "policy";

/// Marks a checkpoint as being taken in the run's stats while it lives.
struct Checkpointing(Arc<Stats>);

impl Checkpointing {
    fn start(stats: Arc<Stats>) -> Self {
        stats.checkpointing(true);
        Checkpointing(stats)
    }
}

impl Drop for Checkpointing {
    fn drop(&mut self) {
        self.0.checkpointing(false);
    }
}

/// Periodic checkpoints of one pipeline.
pub struct Checkpointer {
    store: Store,
    interval: Duration,
    last: Instant,
    next_id: u64,
    inflight: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    /// Fluvio: where the input offsets a written checkpoint covers are committed.
    commits: Option<(Arc<Cluster>, Arc<Mutex<CommitGate>>)>,
}

impl Checkpointer {
    /// Checkpoints into `store` every `interval`, numbering from `next_id`.
    pub fn new(store: Store, interval: Duration, next_id: u64, stats: Arc<Stats>) -> Self {
        Checkpointer {
            store,
            interval,
            last: Instant::now(),
            next_id,
            inflight: None,
            stats,
            commits: None,
        }
    }

    /// Commits the input offsets each written checkpoint covers to `cluster` (Fluvio),
    /// after flushing the outputs the checkpoint counts.
    pub fn with_commits(mut self, cluster: Option<Arc<Cluster>>) -> Self {
        self.commits = cluster.map(|c| (c, Arc::default()));
        self
    }

    /// Takes a checkpoint if the interval has passed (or `force`) and the previous one
    /// is written. The barrier is taken here; the writing goes on in the background.
    pub async fn maybe(
        &mut self,
        seq: &mut Sequencer,
        sinks: &Arc<Sinks>,
        force: bool,
    ) -> Result<(), WorkerGone> {
        if !force && self.last.elapsed() < self.interval {
            return Ok(());
        }
        if self.inflight.as_ref().is_some_and(|h| !h.is_finished()) {
            if !force {
                return Ok(());
            }
            self.wait().await;
        }
        self.last = Instant::now();
        let started = Instant::now();
        // From the barrier until the manifest is written (or the attempt is given up).
        let during = Checkpointing::start(self.stats.clone());
        let (sequencer, replies) = seq.barrier().await?;
        self.stats.stall(started.elapsed().as_micros() as u64);
        // Nothing after the barrier has been sent yet: every output record appended from
        // here on is read back on recovery.
        let outputs = sinks.positions();
        let (store, id, stats) = (self.store.clone(), self.next_id, self.stats.clone());
        self.next_id += 1;
        let commits = self.commits.clone();
        if let Some((_, gate)) = &commits {
            // Everything before a source's first held event is processed.
            let offsets = sequencer.sources.iter().map(|s| {
                let next = s.held.iter().copied().min().unwrap_or(s.next_offset);
                (s.topic.clone(), s.partition, next.min(s.next_offset))
            });
            lock(gate).barrier(id, offsets);
        }
        let sinks = sinks.clone();
        self.inflight = Some(tokio::spawn(async move {
            let _during = during;
            let mut workers = Vec::with_capacity(replies.len());
            for (r, policy) in replies {
                match (r.await, policy.await) {
                    (Ok(mut w), Ok(p)) => {
                        w.operators.push((POLICY.to_owned(), p));
                        workers.push(w);
                    }
                    // A worker stopped: the run is failing; this checkpoint is moot.
                    _ => return,
                }
            }
            let clock = sequencer.clock;
            let data = CheckpointData { sequencer, workers };
            if commits.is_some()
                && let Err(e) = sinks.sync().await
            {
                // Outputs the checkpoint counts as written are not: it must not be used.
                warn!(checkpoint = id, error = %e, "checkpoint abandoned: outputs not flushed");
                return;
            }
            match store.write(id, data, outputs).await {
                Ok(written) => {
                    if let Some((cluster, gate)) = &commits {
                        let due = lock(gate).written(id);
                        commit(cluster, due).await;
                    }
                    let m = metrics::get();
                    for s in &written.sections {
                        if let Some(op) = s.section.strip_prefix("state/") {
                            m.state_keys.with_label_values(&[op]).set(s.rows as i64);
                            m.state_bytes.with_label_values(&[op]).set(s.bytes as i64);
                        }
                    }
                    let bytes = written.bytes;
                    let secs = started.elapsed().as_secs_f64();
                    m.checkpoint_duration.observe(secs);
                    m.checkpoint_bytes.set(bytes as i64);
                    m.last_checkpoint.set(Timestamp::now().as_secs_f64());
                    stats.checkpoint(started.elapsed().as_micros() as u64, bytes);
                    info!(checkpoint = id, bytes, secs, clock = %clock, "checkpoint written");
                }
                Err(e) => warn!(checkpoint = id, error = %e, "checkpoint failed"),
            }
        }));
        Ok(())
    }

    /// Waits for the checkpoint being written, if any.
    pub async fn wait(&mut self) {
        if let Some(h) = self.inflight.take() {
            let _ = h.await;
        }
    }
}

/// Commits `offsets` (topic, partition, next offset) under the pipeline's consumer name.
/// A failure is logged: the next checkpoint commits again, and a restart resumes from
/// the checkpoint, not from these.
async fn commit(cluster: &Arc<Cluster>, offsets: Vec<(String, u32, u64)>) {
    let all = offsets.iter().map(|(t, p, next)| async move {
        if let Err(e) = cluster.commit(t, *p, *next).await {
            warn!(topic = %t, partition = p, offset = next, error = %e, "committing the offset to Fluvio");
        }
    });
    futures_util::future::join_all(all).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Re-reads and decodes the events a checkpoint's sequencer still held.
pub async fn read_held(topics: &Topics, s: &SourceState) -> Result<Vec<Decoded>, LogError> {
    let Some(&first) = s.held.iter().min() else {
        return Ok(Vec::new());
    };
    let Some(topic) = Topic::ALL.into_iter().find(|t| t.name() == s.topic) else {
        return Ok(Vec::new());
    };
    let mut wanted: Vec<u64> = s.held.clone();
    wanted.sort_unstable();
    let last = wanted[wanted.len() - 1];
    let mut out = Vec::with_capacity(wanted.len());
    let now = Timestamp::now();
    let mut i = 0;
    topics
        .read_to_end(&s.topic, s.partition, first, |offset, bytes| {
            while i < wanted.len() && wanted[i] < offset {
                i += 1;
            }
            if i < wanted.len() && offset == wanted[i] {
                i += 1;
                // It decoded when first read; a record that no longer does is skipped.
                if let Ok(event) = decode(topic, bytes, now) {
                    out.push(Decoded {
                        topic,
                        partition: s.partition,
                        offset,
                        id: message_hash(&event.message_id),
                        event: Box::new(event),
                    });
                }
            }
            offset < last
        })
        .await?;
    Ok(out)
}

//! Partition worker tasks: each owns the keys that hash to its partition and runs the
//! operators on them, in the order the sequencer sends.

use std::sync::Arc;
use std::time::Instant;

use footfall_operators::action::Action;
use footfall_operators::event::{Event, Str};
use footfall_operators::time::Timestamp;
use footfall_operators::worker::{KeyStates, Snapshot, Worker};
use tokio::sync::{mpsc, oneshot};

use super::sink::Sinks;
use super::stats::Stats;
use crate::log::LogError;
use crate::metrics;

/// One unit of work for a partition worker.
pub enum Work {
    /// Apply an event to `key`.
    Event {
        /// The resolved key.
        key: Str,
        /// The event.
        event: Box<Event>,
        /// When its record was read.
        read_at: Instant,
    },
    /// The pipeline clock reached `clock`.
    Advance {
        /// The clock.
        clock: Timestamp,
        /// When the record that moved it was read.
        read_at: Instant,
    },
    /// Move `from`'s state into `into`; both are this worker's.
    Merge {
        /// The key whose state moves.
        from: Str,
        /// The surviving key.
        into: Str,
    },
    /// Delete all of `key`'s state: its customer was erased.
    Erase {
        /// The key.
        key: Str,
    },
    /// Hand `key`'s state to another worker.
    Export {
        /// The key whose state moves.
        key: Str,
        /// Where it goes.
        reply: oneshot::Sender<KeyStates>,
    },
    /// A checkpoint barrier: write out held actions, then send the worker's state.
    Snapshot {
        /// Where the state goes.
        reply: oneshot::Sender<Snapshot>,
    },
    /// Merge state exported by another worker into `key`.
    Import {
        /// The surviving key.
        key: Str,
        /// The state, once the exporting worker has sent it.
        states: oneshot::Receiver<KeyStates>,
    },
}

/// Actions a worker holds before writing them.
const CHUNK: usize = 4096;

/// Actions a worker has produced and not yet written, each with the read time of the
/// record that made it due.
struct Pending {
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
    actions: Vec<Action>,
    read_ats: Vec<Instant>,
    buf: Vec<u8>,
    latencies: Vec<u32>,
}

impl Pending {
    /// Attributes the actions not yet attributed to `read_at`.
    fn mark(&mut self, read_at: Instant) {
        self.read_ats.resize(self.actions.len(), read_at);
    }

    /// Writes the actions and records their latency and counts.
    fn emit(&mut self) -> Result<(), LogError> {
        if self.actions.is_empty() {
            return Ok(());
        }
        let m = metrics::get();
        self.sinks.write_actions(&mut self.actions, &mut self.buf)?;
        self.latencies.clear();
        // Actions already in the output (a replay over the same log) are not new.
        for (a, t) in self.actions.iter().zip(&self.read_ats) {
            if a.emitted_at.is_none() {
                continue;
            }
            let secs = t.elapsed().as_secs_f64();
            m.latency.observe(secs);
            m.actions
                .with_label_values(&[a.trigger.as_str(), a.group.as_str()])
                .inc();
            self.latencies
                .push((secs * 1e6).min(f64::from(u32::MAX)) as u32);
        }
        self.actions.retain(|a| a.emitted_at.is_some());
        self.stats.actions(&self.actions, &self.latencies);
        self.actions.clear();
        self.read_ats.clear();
        Ok(())
    }
}

/// Runs one partition worker until the sequencer hangs up.
pub async fn run(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Vec<Work>>,
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
) -> Result<Worker, LogError> {
    let m = metrics::get();
    let mut p = Pending {
        sinks,
        stats,
        actions: Vec::new(),
        read_ats: Vec::new(),
        buf: Vec::with_capacity(4096),
        latencies: Vec::new(),
    };
    let mut last_timers = 0i64;
    while let Some(batch) = rx.recv().await {
        for work in batch {
            let read_at = match work {
                Work::Event {
                    key,
                    event,
                    read_at,
                } => {
                    worker.on_event(&key, &event, &mut p.actions);
                    read_at
                }
                Work::Advance { clock, read_at } => {
                    // A big clock jump fires many timers: write them in bounded chunks.
                    while !worker.advance_some(clock, &mut p.actions, CHUNK) {
                        p.mark(read_at);
                        p.emit()?;
                    }
                    read_at
                }
                Work::Merge { from, into } => {
                    worker.merge(&from, &into, &mut p.actions);
                    Instant::now()
                }
                Work::Snapshot { reply } => {
                    // Actions of events before the barrier are in the log before the
                    // state that says they fired is in a checkpoint.
                    p.emit()?;
                    let paused = Instant::now();
                    let snap = worker.snapshot();
                    let secs = paused.elapsed();
                    m.checkpoint_stall.observe(secs.as_secs_f64());
                    p.stats.stall(secs.as_micros() as u64);
                    let _ = reply.send(snap);
                    continue;
                }
                Work::Erase { key } => {
                    worker.erase(&key);
                    continue;
                }
                Work::Export { key, reply } => {
                    let _ = reply.send(worker.export(&key));
                    continue;
                }
                Work::Import { key, states } => {
                    if let Ok(states) = states.await {
                        worker.import(&key, states, &mut p.actions);
                    }
                    Instant::now()
                }
            };
            p.mark(read_at);
        }
        p.emit()?;
        for (op, n) in worker.take_evicted() {
            m.state_evicted.with_label_values(&[op]).inc_by(n);
        }
        let timers = worker.timers_pending() as i64;
        m.timers_pending.add(timers - last_timers);
        last_timers = timers;
    }
    m.timers_pending.sub(last_timers);
    Ok(worker)
}

//! Partition worker tasks: each owns the keys that hash to its partition and runs the
//! operators on them, in the order the sequencer sends.

use std::sync::Arc;
use std::time::Instant;

use footfall_operators::action::Action;
use footfall_operators::event::{Event, Str};
use footfall_operators::time::Timestamp;
use footfall_operators::worker::{KeyStates, Worker};
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
    /// Hand `key`'s state to another worker.
    Export {
        /// The key whose state moves.
        key: Str,
        /// Where it goes.
        reply: oneshot::Sender<KeyStates>,
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

/// Writes `out` (each action with the read time of what made it due) and records metrics.
fn emit(
    sinks: &Sinks,
    stats: &Stats,
    out: &mut Vec<Action>,
    read_ats: &mut Vec<Instant>,
    buf: &mut Vec<u8>,
    latencies: &mut Vec<u32>,
) -> Result<(), LogError> {
    if out.is_empty() {
        return Ok(());
    }
    let m = metrics::get();
    sinks.write_actions(out, buf)?;
    latencies.clear();
    // Actions already in the output (a replay over the same log) are not new.
    for (a, t) in out
        .iter()
        .zip(read_ats.iter())
        .filter(|(a, _)| a.emitted_at.is_some())
    {
        let secs = t.elapsed().as_secs_f64();
        m.latency.observe(secs);
        m.actions
            .with_label_values(&[a.trigger.as_str(), a.group.as_str()])
            .inc();
        latencies.push((secs * 1e6).min(f64::from(u32::MAX)) as u32);
    }
    out.retain(|a| a.emitted_at.is_some());
    stats.actions(out, latencies);
    out.clear();
    read_ats.clear();
    Ok(())
}

/// Runs one partition worker until the sequencer hangs up.
pub async fn run(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Vec<Work>>,
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
) -> Result<Worker, LogError> {
    let m = metrics::get();
    let mut out: Vec<Action> = Vec::new();
    let mut read_ats: Vec<Instant> = Vec::new();
    let mut buf = Vec::with_capacity(4096);
    let mut latencies = Vec::new();
    let mut last_timers = 0i64;
    while let Some(batch) = rx.recv().await {
        for work in batch {
            let before = out.len();
            let read_at = match work {
                Work::Event {
                    key,
                    event,
                    read_at,
                } => {
                    worker.on_event(&key, &event, &mut out);
                    read_at
                }
                Work::Advance { clock, read_at } => {
                    // A big clock jump fires many timers: write them in bounded chunks.
                    while !worker.advance_some(clock, &mut out, CHUNK) {
                        read_ats.resize(out.len(), read_at);
                        emit(
                            &sinks,
                            &stats,
                            &mut out,
                            &mut read_ats,
                            &mut buf,
                            &mut latencies,
                        )?;
                    }
                    tracing::trace!(%clock, age_ms = read_at.elapsed().as_millis() as u64, "advance");
                    read_at
                }
                Work::Merge { from, into } => {
                    worker.merge(&from, &into, &mut out);
                    Instant::now()
                }
                Work::Export { key, reply } => {
                    let _ = reply.send(worker.export(&key));
                    continue;
                }
                Work::Import { key, states } => {
                    if let Ok(states) = states.await {
                        worker.import(&key, states, &mut out);
                    }
                    Instant::now()
                }
            };
            read_ats.resize(read_ats.len() + (out.len() - before), read_at);
        }
        emit(
            &sinks,
            &stats,
            &mut out,
            &mut read_ats,
            &mut buf,
            &mut latencies,
        )?;
        let timers = worker.timers_pending() as i64;
        m.timers_pending.add(timers - last_timers);
        last_timers = timers;
    }
    m.timers_pending.sub(last_timers);
    Ok(worker)
}

//! A partition worker's batches taken in and not yet applied, and the early exports
//! they allow.
//!
//! When an `identify` merges a device into a customer on another worker, that worker
//! waits at the merge for the device's state. The exporting worker would send it once
//! it has applied everything queued before the export: with a few batches queued, the
//! importer (and its thread) idles meanwhile. So a worker takes in every batch waiting
//! in its channel at once (up to the channel's capacity, which keeps the backpressure)
//! and sends a device's state as soon as the batch asking for it arrives, if nothing
//! queued before the export can change that state: no work naming the device, no
//! checkpoint barrier (the state must be in the checkpoint the barrier takes), no
//! erasure or reference data (which reach every key), and no timer of the device due
//! before the export's turn. The export then finds exactly what it would have found at
//! its turn.

use std::collections::VecDeque;

use footfall_operators::event::EventKind;
use footfall_operators::time::Timestamp;
use footfall_operators::worker::Worker;
use tokio::sync::mpsc;

use super::shard::Work;

/// Batches taken in from a worker's channel, in order.
pub struct Backlog {
    batches: VecDeque<Vec<Work>>,
    limit: usize,
    /// Exports sent ahead of their turn.
    pub early: u64,
    /// All exports taken in.
    pub exports: u64,
}

impl Backlog {
    /// Holds at most `limit` batches (the channel's capacity).
    pub fn new(limit: usize) -> Self {
        Backlog {
            batches: VecDeque::new(),
            limit: limit.max(1),
            early: 0,
            exports: 0,
        }
    }

    /// Whether no batch is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The next batch to apply.
    pub fn pop(&mut self) -> Option<Vec<Work>> {
        self.batches.pop_front()
    }

    /// Takes in the batches waiting in `rx`, up to the limit.
    pub fn take_waiting(&mut self, rx: &mut mpsc::Receiver<Vec<Work>>, worker: &mut Worker) {
        while self.batches.len() < self.limit {
            match rx.try_recv() {
                Ok(batch) => self.admit(batch, worker),
                Err(_) => break,
            }
        }
    }

    /// Takes in `batch`, sending the states its exports ask for where they can go now.
    pub fn admit(&mut self, mut batch: Vec<Work>, worker: &mut Worker) {
        for i in 0..batch.len() {
            let (before, rest) = batch.split_at_mut(i);
            let Work::Export { key, reply, at } = &mut rest[0] else {
                continue;
            };
            self.exports += 1;
            // Gone already, or no one waits for it (another process merges its own copy).
            if reply.as_ref().is_none_or(|r| r.is_closed()) {
                continue;
            }
            // The latest instant the work before it may move the clock to, unless some
            // of it keeps the export at its turn. The sequencer ends a batch at each
            // export a worker waits for: a held batch is looked through at most once for
            // each batch taken in behind it, no more than the channel holds.
            let until = (self.batches.iter().flatten().chain(before.iter()))
                .try_fold(*at, |until, w| Some(until.max(horizon(w, key)?)));
            let Some(until) = until else { continue };
            if let Some(states) = worker.export_early(key, until)
                && let Some(reply) = reply.take()
            {
                let _ = reply.send(states);
                self.early += 1;
            }
        }
        self.batches.push_back(batch);
    }
}

/// The latest instant applying `w` may move the worker's clock to; `None` when `w` may
/// change `key`'s state (it names the key, reaches every key, or is a barrier).
fn horizon(w: &Work, key: &str) -> Option<Timestamp> {
    match w {
        Work::Event { key: k, event, .. } => {
            let everyone = matches!(event.kind, EventKind::Store(_) | EventKind::Weather(_));
            (k != key && !everyone).then_some(event.timestamp)
        }
        Work::Advance { clock, .. } => Some(*clock),
        Work::Merge { from, into, at } => (from != key && into != key).then_some(*at),
        Work::Export { key: k, at, .. } | Work::Import { key: k, at, .. } => {
            (k != key).then_some(*at)
        }
        Work::Erase { .. } | Work::Snapshot { .. } => None,
    }
}

//! Where workers publish their retained tables for the service's queries and rules.
//!
//! A worker seals its open rows and publishes a snapshot (shared batches, no copy) at
//! most once a second of wall time; a query merges the latest snapshot of every worker.

use std::collections::BTreeMap;
use std::sync::Mutex;

use footfall_operators::time::Timestamp;

use crate::retained::Snapshot;

/// The latest tables of every worker.
#[derive(Default)]
pub struct Hub {
    workers: Mutex<BTreeMap<u32, (Snapshot, Timestamp)>>,
    expected: std::sync::atomic::AtomicUsize,
}

impl Hub {
    /// Worker `worker` publishes `tables`, as of its clock `clock`.
    pub fn publish(&self, worker: u32, tables: Snapshot, clock: Timestamp) {
        let mut w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        w.insert(worker, (tables, clock));
    }

    /// `n` workers will publish: until each has, there is no clock.
    pub fn expect(&self, n: usize) {
        self.expected.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every worker's tables merged, and the earliest of their clocks (what every
    /// worker has passed); no clock until every expected worker has published.
    pub fn snapshot(&self) -> (Snapshot, Option<Timestamp>) {
        let w = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let expected = self.expected.load(std::sync::atomic::Ordering::Relaxed);
        let mut all = Snapshot::default();
        let mut clock: Option<Timestamp> = None;
        for (s, c) in w.values() {
            all.merge(s.clone());
            clock = Some(clock.map_or(*c, |m| m.min(*c)));
        }
        if w.len() < expected {
            clock = None;
        }
        (all, clock)
    }

    /// Workers that published.
    pub fn workers(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

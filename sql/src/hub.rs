//! Where workers publish their retained tables for the service's queries and rules.
//!
//! A worker seals its open rows and publishes a snapshot (shared batches, no copy) at
//! most once a second of wall time; a query merges the latest snapshot of every worker.
//!
//! Live state (`customers`, `carts`, `lots`) is taken only when a query asks: the query
//! bumps a generation, every worker sees it (at once if idle, else after
//! the batch in hand) and publishes its rows, and the query waits for all of them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use footfall_operators::live::Live;
use footfall_operators::time::Timestamp;
use tokio::sync::watch;

use crate::retained::{Snapshot, Tables};

/// The latest tables of every worker, and live state on request.
pub struct Hub {
    workers: Mutex<BTreeMap<u32, (Snapshot, Timestamp)>>,
    expected: std::sync::atomic::AtomicUsize,
    /// Live rows per source (a worker, or the policies it applies), with the generation they answer.
    live: Mutex<BTreeMap<LiveSource, (u64, Live)>>,
    live_sources: std::sync::atomic::AtomicUsize,
    asked: watch::Sender<u64>,
    /// The `actions` table: what the service wrote, appended as it is written.
    actions: std::sync::OnceLock<std::sync::Arc<Mutex<Tables>>>,
}

/// Who publishes live rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LiveSource {
    /// A partition worker: carts, lots, purchase figures.
    Worker(u32),
    /// A worker's policies: consent, zone, home store.
    Policy(u32),
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            workers: Mutex::default(),
            expected: Default::default(),
            live: Mutex::default(),
            live_sources: Default::default(),
            asked: watch::Sender::new(0),
            actions: Default::default(),
        }
    }
}

impl Hub {
    /// The table written actions and suppressions are appended to; `make` creates it on
    /// the first call. Queries see its rows as of the query.
    pub fn actions(&self, make: impl FnOnce() -> Tables) -> std::sync::Arc<Mutex<Tables>> {
        self.actions
            .get_or_init(|| std::sync::Arc::new(Mutex::new(make())))
            .clone()
    }

    /// Drops customer `key`'s rows from the `actions` table (an erasure; the workers
    /// erase their own tables).
    pub fn erase_actions(&self, key: &str) {
        if let Some(t) = self.actions.get() {
            t.lock().unwrap_or_else(|p| p.into_inner()).erase(key);
        }
    }

    /// `n` sources (workers, and the policies they apply, counted apart) answer live-state requests.
    pub fn expect_live(&self, n: usize) {
        self.live_sources
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// What a source watches for requests: a new generation means "publish your rows".
    pub fn live_requests(&self) -> watch::Receiver<u64> {
        self.asked.subscribe()
    }

    /// `source`'s rows, answering request `generation`.
    pub fn publish_live(&self, source: LiveSource, generation: u64, rows: Live) {
        let mut l = self.live.lock().unwrap_or_else(|p| p.into_inner());
        l.insert(source, (generation, rows));
    }

    /// The live tables `sql` may read, fresh from every source; `None` when it names
    /// none of them.
    pub async fn live_for(&self, sql: &str) -> Option<crate::live::LiveTables> {
        if !crate::live::mentioned(sql) {
            return None;
        }
        let rows = self.live(Duration::from_secs(2)).await;
        crate::live::LiveTables::build(&rows).ok()
    }

    /// Asks every source for its rows and waits up to `wait` for all of them. Sources
    /// that did not answer in time give their previous rows, if any.
    pub async fn live(&self, wait: Duration) -> Live {
        let mut generation = 0;
        self.asked.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        let expected = self.live_sources.load(std::sync::atomic::Ordering::Relaxed);
        let until = Instant::now() + wait;
        loop {
            let answered = {
                let l = self.live.lock().unwrap_or_else(|p| p.into_inner());
                l.values().filter(|(g, _)| *g >= generation).count()
            };
            if answered >= expected || Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let l = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = Live::default();
        for (_, rows) in l.values() {
            all.extend(rows.clone());
        }
        all
    }

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
        if let Some(t) = self.actions.get() {
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            t.seal();
            all.merge(t.snapshot());
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

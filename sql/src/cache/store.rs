//! Where partial aggregates are kept, per rule, between runs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;

use super::view::View;

/// Rows of partial aggregates observed before judging whether they reduce their input.
const DENSE_AFTER_ROWS: u64 = 32_768;

/// Partial aggregates of sealed batches, kept between runs of each rule.
pub struct PartialCache {
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) spaces: HashMap<String, Space>,
    pub(super) bytes: usize,
    pub(super) hits: u64,
    pub(super) misses: u64,
}

/// One rule's part of the cache.
#[derive(Default)]
pub(super) struct Space {
    pub(super) entries: HashMap<(Arc<str>, u64), Entry>,
    /// Descriptions the last run used, and this run.
    pub(super) used_before: HashSet<Arc<str>>,
    pub(super) used_now: HashSet<Arc<str>>,
    /// Rows in and out of each description's partial aggregates so far.
    pub(super) reduced: HashMap<Arc<str>, (u64, u64)>,
    /// Descriptions whose partials barely reduce their batches: not worth keeping.
    pub(super) dense: HashSet<Arc<str>>,
    /// Groupings kept up to date between runs, and their bytes.
    pub(super) views: HashMap<Arc<str>, (View, usize)>,
    /// Groupings too large for the budget: run as planned.
    pub(super) unkept: HashSet<Arc<str>>,
}

pub(super) struct Entry {
    batches: Vec<RecordBatch>,
    pub(super) bytes: usize,
    touched: bool,
}

/// What the cache holds and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Batches answered from the cache.
    pub hits: u64,
    /// Batches aggregated afresh.
    pub misses: u64,
    /// Bytes of partial aggregates held.
    pub bytes: usize,
}

impl PartialCache {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        PartialCache {
            budget,
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, space: &str, key: &Arc<str>, chunk: u64) -> Option<Vec<RecordBatch>> {
        let mut s = self.state();
        let sp = s.spaces.entry(space.to_string()).or_default();
        sp.used_now.insert(key.clone());
        let found = sp.entries.get_mut(&(key.clone(), chunk)).map(|e| {
            e.touched = true;
            e.batches.clone()
        });
        match found {
            Some(_) => s.hits += 1,
            None => s.misses += 1,
        }
        found
    }

    pub(super) fn put(&self, space: &str, key: &Arc<str>, chunk: u64, batches: &[RecordBatch]) {
        let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        let mut s = self.state();
        if s.bytes + bytes > self.budget {
            return;
        }
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        // Only a description the previous run used too is worth keeping.
        if !sp.used_before.contains(key) || sp.dense.contains(key) {
            return;
        }
        let old = sp.entries.insert(
            (key.clone(), chunk),
            Entry {
                batches: batches.to_vec(),
                bytes,
                touched: true,
            },
        );
        s.bytes = s.bytes + bytes - old.map_or(0, |e| e.bytes);
    }

    /// Takes out the grouping kept under `key`, if any, and says whether one is worth
    /// building: a description the previous run used too, that fitted the budget.
    pub(super) fn take_view(&self, space: &str, key: &Arc<str>) -> (Option<View>, bool) {
        let mut s = self.state();
        let sp = s.spaces.entry(space.to_string()).or_default();
        sp.used_now.insert(key.clone());
        let keep = sp.used_before.contains(key) && !sp.unkept.contains(key);
        let taken = sp.views.remove(key);
        let freed = taken.as_ref().map_or(0, |t| t.1);
        s.bytes -= freed;
        (taken.map(|t| t.0), keep)
    }

    /// Keeps `view` under `key` for the next run, if the budget allows; `reused`
    /// batches were unchanged since the last run, `changed` had rows enter or leave.
    pub(super) fn put_view(
        &self,
        space: &str,
        key: &Arc<str>,
        view: View,
        reused: usize,
        changed: usize,
    ) {
        let bytes = view.bytes();
        let mut s = self.state();
        s.hits += reused as u64;
        s.misses += changed as u64;
        let fits = s.bytes + bytes <= self.budget;
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        if !fits {
            sp.unkept.insert(key.clone());
            return;
        }
        sp.views.insert(key.clone(), (view, bytes));
        s.bytes += bytes;
    }

    /// Notes that a partial aggregate of `key` turned a batch of `rows` rows into `out`.
    /// Past a quarter of their input, partials are not worth keeping: the final step
    /// merges nearly as many rows as a fresh run aggregates, and holding them costs
    /// about what the batches do.
    pub(super) fn reduced(&self, space: &str, key: &Arc<str>, rows: usize, out: usize) {
        let mut s = self.state();
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        let r = sp.reduced.entry(key.clone()).or_default();
        r.0 += rows as u64;
        r.1 += out as u64;
        if r.0 >= DENSE_AFTER_ROWS && r.1 * 4 > r.0 {
            sp.dense.insert(key.clone());
            let mut freed = 0;
            sp.entries.retain(|(k, _), e| {
                let keep = k != key;
                if !keep {
                    freed += e.bytes;
                }
                keep
            });
            s.bytes -= freed;
        }
    }

    pub(super) fn is_dense(&self, space: &str, key: &str) -> bool {
        self.state()
            .spaces
            .get(space)
            .is_some_and(|sp| sp.dense.contains(key))
    }

    /// Ends a run of rule `space`: drops what the run did not use.
    pub fn finish(&self, space: &str) {
        let mut s = self.state();
        let Some(sp) = s.spaces.get_mut(space) else {
            return;
        };
        let mut freed = 0;
        sp.entries.retain(|_, e| {
            let keep = std::mem::take(&mut e.touched);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        let used = &sp.used_now;
        sp.views.retain(|key, (_, bytes)| {
            let keep = used.contains(key);
            if !keep {
                freed += *bytes;
            }
            keep
        });
        sp.used_before = std::mem::take(&mut sp.used_now);
        s.bytes -= freed;
    }

    /// Drops the parts of rules `keep` does not name (rules removed or renamed).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut s = self.state();
        let mut freed = 0;
        s.spaces.retain(|name, sp| {
            let k = keep(name);
            if !k {
                freed += sp.entries.values().map(|e| e.bytes).sum::<usize>();
                freed += sp.views.values().map(|v| v.1).sum::<usize>();
            }
            k
        });
        s.bytes -= freed;
    }

    /// What the cache holds and did so far.
    pub fn stats(&self) -> CacheStats {
        let s = self.state();
        CacheStats {
            hits: s.hits,
            misses: s.misses,
            bytes: s.bytes,
        }
    }
}

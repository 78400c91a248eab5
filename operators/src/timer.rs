//! The event-time timer service: one timer per (operator, key, tag), fired in time order.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::time::Timestamp;

/// A due timer, as handed back to the worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fired {
    /// The instant it was due: becomes the action's `fired_at`.
    pub due: Timestamp,
    /// The operator that set it.
    pub op: u16,
    /// The key it belongs to.
    pub key: Arc<str>,
    /// The operator's own name for it (e.g. a hash of the cart id).
    pub tag: u64,
}

/// Pending timers, ordered by (due, operator, key, tag) so firing order is deterministic.
///
/// Setting a timer that exists moves it; cancelling is exact. Both are O(log n), and
/// neither allocates for a key that already has timers.
#[derive(Default)]
pub struct TimerService {
    queue: BTreeSet<(Timestamp, u16, Arc<str>, u64)>,
    /// Per key: (operator, tag, due) of its timers. Keys hold a handful at most.
    index: FxHashMap<Arc<str>, Vec<(u16, u64, Timestamp)>>,
}

impl TimerService {
    /// Sets (or moves) the timer `(op, key, tag)` to `due`.
    pub fn set(&mut self, op: u16, key: &str, tag: u64, due: Timestamp) {
        let k = match self.index.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Arc::from(key),
        };
        let timers = self.index.entry(k.clone()).or_default();
        match timers.iter_mut().find(|t| t.0 == op && t.1 == tag) {
            Some(t) => {
                self.queue.remove(&(t.2, op, k.clone(), tag));
                t.2 = due;
            }
            None => timers.push((op, tag, due)),
        }
        self.queue.insert((due, op, k, tag));
    }

    /// Cancels the timer `(op, key, tag)`, returning when it was due.
    pub fn cancel(&mut self, op: u16, key: &str, tag: u64) -> Option<Timestamp> {
        let (k, timers) = self.index.get_key_value(key)?;
        let i = timers.iter().position(|t| t.0 == op && t.1 == tag)?;
        let k = k.clone();
        let due = self.remove_index(&k, i);
        self.queue.remove(&(due, op, k, tag));
        Some(due)
    }

    fn remove_index(&mut self, key: &Arc<str>, i: usize) -> Timestamp {
        let Some(timers) = self.index.get_mut(key) else {
            return Timestamp::MIN;
        };
        let (_, _, due) = timers.swap_remove(i);
        if timers.is_empty() {
            self.index.remove(key);
        }
        due
    }

    /// Removes and returns the earliest timer due at or before `upto` (strictly before, when
    /// `strict`), if any.
    pub fn pop_due(&mut self, upto: Timestamp, strict: bool) -> Option<Fired> {
        let first = self.queue.first()?;
        let due = first.0;
        if due > upto || (strict && due == upto) {
            return None;
        }
        let (due, op, key, tag) = self.queue.pop_first()?;
        if let Some(i) = self
            .index
            .get(&key)
            .and_then(|ts| ts.iter().position(|t| t.0 == op && t.1 == tag))
        {
            self.remove_index(&key, i);
        }
        Some(Fired { due, op, key, tag })
    }

    /// The earliest pending instant.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|t| t.0)
    }

    /// How many timers are pending.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none are pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_moves_and_cancels() {
        let mut t = TimerService::default();
        let s = Timestamp::from_secs;
        t.set(0, "b", 1, s(20));
        t.set(0, "a", 1, s(10));
        t.set(0, "c", 1, s(30));
        t.set(0, "a", 1, s(25)); // moved
        assert_eq!(t.cancel(0, "c", 1), Some(s(30)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(s(20), true), None);
        let f = t.pop_due(s(20), false).unwrap();
        assert_eq!((&*f.key, f.due), ("b", s(20)));
        assert_eq!(t.pop_due(s(24), false), None);
        assert_eq!(&*t.pop_due(s(99), false).unwrap().key, "a");
        assert!(t.is_empty());
    }
}

//! The event-time timer service: timers per (operator, key, tag), fired in time order.

use std::collections::BTreeSet;

use compact_str::CompactString;

use crate::time::Timestamp;

/// A due timer, as handed back to the worker.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fired {
    /// The instant it was due: becomes the action's `fired_at`.
    pub due: Timestamp,
    /// The operator that set it.
    pub op: u16,
    /// The key it belongs to.
    pub key: CompactString,
    /// The operator's own name for it (e.g. a hash of the cart id).
    pub tag: u64,
}

/// Pending timers, ordered by (due, operator, key, tag) so firing order is deterministic.
///
/// Operators remember the instants they set (they need them anyway to know a timer is
/// armed), so moving or cancelling a timer names it fully and the service keeps no index:
/// one ordered set, 48 bytes a timer, no allocation for keys up to 24 bytes.
#[derive(Default)]
pub struct TimerService {
    queue: BTreeSet<(Timestamp, u16, CompactString, u64)>,
    earliest: Option<Timestamp>,
}

impl TimerService {
    /// Sets the timer `(op, key, tag)` at `due`.
    pub fn set(&mut self, op: u16, key: &str, tag: u64, due: Timestamp) {
        self.queue.insert((due, op, CompactString::from(key), tag));
        self.earliest = Some(self.earliest.map_or(due, |e| e.min(due)));
    }

    /// Every pending timer as `(due, op, key, tag)`, in firing order (for checkpoints).
    pub fn entries(&self) -> impl Iterator<Item = &(Timestamp, u16, CompactString, u64)> {
        self.queue.iter()
    }

    /// Cancels the timer `(op, key, tag)` set at `due`; false if there was none.
    pub fn cancel(&mut self, op: u16, key: &str, tag: u64, due: Timestamp) -> bool {
        let removed = self.queue.remove(&(due, op, CompactString::from(key), tag));
        if removed && self.earliest == Some(due) {
            self.earliest = self.queue.first().map(|t| t.0);
        }
        removed
    }

    /// Removes and returns the earliest timer due at or before `upto` (strictly before, when
    /// `strict`), if any.
    pub fn pop_due(&mut self, upto: Timestamp, strict: bool) -> Option<Fired> {
        // The common case (nothing due) answers from the cached earliest instant.
        if self
            .earliest
            .is_none_or(|e| e > upto || (strict && e == upto))
        {
            return None;
        }
        let first = self.queue.first()?;
        let due = first.0;
        if due > upto || (strict && due == upto) {
            return None;
        }
        let (due, op, key, tag) = self.queue.pop_first()?;
        self.earliest = self.queue.first().map(|t| t.0);
        Some(Fired { due, op, key, tag })
    }

    /// The earliest pending instant.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.earliest
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
    fn fires_in_order_and_cancels_exactly() {
        let mut t = TimerService::default();
        let s = Timestamp::from_secs;
        t.set(0, "b", 1, s(20));
        t.set(0, "a", 1, s(10));
        t.set(0, "c", 1, s(30));
        assert!(t.cancel(0, "a", 1, s(10)));
        t.set(0, "a", 1, s(25)); // moved
        assert!(t.cancel(0, "c", 1, s(30)));
        assert!(!t.cancel(0, "c", 1, s(30)));
        assert_eq!(t.len(), 2);
        assert_eq!(t.pop_due(s(20), true), None);
        let f = t.pop_due(s(20), false).unwrap();
        assert_eq!((f.key.as_str(), f.due), ("b", s(20)));
        assert_eq!(t.pop_due(s(24), false), None);
        assert_eq!(t.pop_due(s(99), false).unwrap().key, "a");
        assert!(t.is_empty());
    }
}

//! The event-time timer service: timers per (operator, key, tag), fired in time order,
//! and per key the bookkeeping the state TTL needs (last event, timers pending).

use std::collections::BTreeSet;

use compact_str::CompactString;
use rustc_hash::FxHashMap;

use crate::time::{Span, Timestamp};

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
///
/// Beside it, per key: when an event last touched it and how many of its timers are
/// pending, so state idle past the TTL with nothing scheduled can be dropped exactly.
#[derive(Default)]
pub struct TimerService {
    queue: BTreeSet<(Timestamp, u16, CompactString, u64)>,
    earliest: Option<Timestamp>,
    keys: FxHashMap<CompactString, KeyMeta>,
}

#[derive(Clone, Copy)]
struct KeyMeta {
    touched: Timestamp,
    timers: u32,
}

impl KeyMeta {
    const NEW: KeyMeta = KeyMeta {
        touched: Timestamp::MIN,
        timers: 0,
    };
}

impl TimerService {
    /// Sets the timer `(op, key, tag)` at `due`.
    pub fn set(&mut self, op: u16, key: &str, tag: u64, due: Timestamp) {
        if self.queue.insert((due, op, CompactString::from(key), tag)) {
            self.meta(key).timers += 1;
        }
        self.earliest = Some(self.earliest.map_or(due, |e| e.min(due)));
    }

    fn meta(&mut self, key: &str) -> &mut KeyMeta {
        if !self.keys.contains_key(key) {
            self.keys.insert(CompactString::from(key), KeyMeta::NEW);
        }
        self.keys.get_mut(key).expect("just inserted")
    }

    fn timer_gone(&mut self, key: &str) {
        if let Some(m) = self.keys.get_mut(key) {
            m.timers = m.timers.saturating_sub(1);
        }
    }

    /// Records an event touching `key` at `at`. Returns true when the key had been idle
    /// for `ttl` or longer with no timer pending: its state has expired and must be
    /// dropped before the event applies.
    pub fn touch(&mut self, key: &str, at: Timestamp, ttl: Span) -> bool {
        match self.keys.get_mut(key) {
            Some(m) => {
                let expired = m.timers == 0 && m.touched.plus(ttl) <= at;
                m.touched = m.touched.max(at);
                expired
            }
            None => {
                self.keys.insert(
                    CompactString::from(key),
                    KeyMeta {
                        touched: at,
                        timers: 0,
                    },
                );
                false
            }
        }
    }

    /// Whether `key`'s state has expired at `now` (idle for `ttl`, no timer pending).
    pub fn expired(&self, key: &str, now: Timestamp, ttl: Span) -> bool {
        self.keys
            .get(key)
            .is_some_and(|m| m.timers == 0 && m.touched.plus(ttl) <= now)
    }

    /// Removes and returns every key idle for `ttl` at `now` with no timer pending.
    pub fn take_expired(&mut self, now: Timestamp, ttl: Span) -> Vec<CompactString> {
        let mut out = Vec::new();
        self.keys.retain(|k, m| {
            let keep = m.timers > 0 || m.touched.plus(ttl) > now;
            if !keep {
                out.push(k.clone());
            }
            keep
        });
        out
    }

    /// Forgets `key`'s bookkeeping (its timers must already be cancelled).
    pub fn forget(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// When an event last touched each key (for checkpoints).
    pub fn touched(&self) -> impl Iterator<Item = (&CompactString, Timestamp)> {
        self.keys
            .iter()
            .filter(|(_, m)| m.touched != Timestamp::MIN)
            .map(|(k, m)| (k, m.touched))
    }

    /// Restores when an event last touched `key`.
    pub fn restore_touched(&mut self, key: &str, at: Timestamp) {
        self.meta(key).touched = at;
    }

    /// Every pending timer as `(due, op, key, tag)`, in firing order (for checkpoints).
    pub fn entries(&self) -> impl Iterator<Item = &(Timestamp, u16, CompactString, u64)> {
        self.queue.iter()
    }

    /// Cancels the timer `(op, key, tag)` set at `due`; false if there was none.
    pub fn cancel(&mut self, op: u16, key: &str, tag: u64, due: Timestamp) -> bool {
        let removed = self.queue.remove(&(due, op, CompactString::from(key), tag));
        if removed {
            self.timer_gone(key);
            if self.earliest == Some(due) {
                self.earliest = self.queue.first().map(|t| t.0);
            }
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
        self.timer_gone(&key);
        Some(Fired { due, op, key, tag })
    }

    /// Whether a timer of `key` falls due at or before `until`; `None` when more than
    /// `limit` timers of any key do (too many to look through).
    pub fn due_by(&self, key: &str, until: Timestamp, limit: usize) -> Option<bool> {
        let mut due = self.queue.iter().take_while(|t| t.0 <= until);
        for _ in 0..limit {
            match due.next() {
                Some(t) if t.2 == key => return Some(true),
                Some(_) => {}
                None => return Some(false),
            }
        }
        due.next().is_none().then_some(false)
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

    #[test]
    fn due_by_finds_a_keys_timer_up_to_the_instant_and_gives_up_past_the_limit() {
        let mut t = TimerService::default();
        let s = Timestamp::from_secs;
        t.set(0, "a", 1, s(10));
        t.set(0, "b", 1, s(20));
        t.set(1, "b", 2, s(30));
        let cases = [
            ("b", 19, 8, Some(false), "not due yet"),
            ("b", 20, 8, Some(true), "due at the instant counts"),
            ("c", 99, 8, Some(false), "no timer of the key"),
            (
                "c",
                99,
                3,
                Some(false),
                "exactly the limit is looked through",
            ),
            ("c", 99, 2, None, "more due than the limit"),
            ("b", 99, 2, Some(true), "found within the limit"),
        ];
        for (key, until, limit, want, why) in cases {
            assert_eq!(t.due_by(key, s(until), limit), want, "{why}");
        }
    }

    #[test]
    fn a_key_expires_only_when_idle_for_the_ttl_with_no_timer_pending() {
        let mut t = TimerService::default();
        let (s, ttl) = (Timestamp::from_secs, Span::from_secs(100));
        assert!(!t.touch("a", s(0), ttl), "a new key has not expired");
        assert!(!t.touch("b", s(0), ttl));
        t.set(0, "b", 1, s(500));
        assert!(!t.touch("a", s(99), ttl), "touched again before the TTL");
        assert!(!t.expired("a", s(198), ttl) && t.expired("a", s(199), ttl));
        assert!(!t.expired("b", s(400), ttl), "a pending timer keeps it");
        assert_eq!(t.take_expired(s(400), ttl), vec![CompactString::from("a")]);
        assert!(t.pop_due(s(500), false).is_some());
        assert!(
            t.expired("b", s(500), ttl),
            "once the timer fired, idle counts again"
        );
        assert!(
            t.touch("b", s(500), ttl),
            "the touch that finds it expired says so"
        );
        assert_eq!(t.touched().count(), 1);
    }
}

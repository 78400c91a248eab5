//! Redelivered input: a `message_id` is applied once within the dedupe window.

use std::collections::VecDeque;

use footfall_operators::time::Timestamp;
use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::xxh3_128;

/// Seen `message_id`s of one input partition, remembered in hourly buckets of event
/// time; buckets further than the window behind the newest are forgotten.
pub struct Dedupe {
    window_secs: i64,
    seen: FxHashSet<u128>,
    buckets: VecDeque<(i64, Vec<u128>)>,
}

const BUCKET_SECS: i64 = 3600;

impl Dedupe {
    /// Remembers ids for `window_secs` of event time, with room for `expected` of them
    /// up front (growing a large set rehashes and faults in fresh memory each time).
    pub fn new(window_secs: u64, expected: usize) -> Self {
        let mut seen = FxHashSet::default();
        seen.reserve(expected.min(1 << 22));
        Dedupe {
            window_secs: window_secs as i64,
            seen,
            buckets: VecDeque::new(),
        }
    }

    /// Records `message_id` at `ts`; false if it was already seen.
    pub fn first_time(&mut self, message_id: &str, ts: Timestamp) -> bool {
        self.first_time_hash(message_hash(message_id), ts)
    }

    /// [`first_time`](Self::first_time) for a `message_id` already hashed.
    pub fn first_time_hash(&mut self, h: u128, ts: Timestamp) -> bool {
        if !self.seen.insert(h) {
            return false;
        }
        let b = ts.as_secs().div_euclid(BUCKET_SECS);
        match self.buckets.iter_mut().rev().find(|(k, _)| *k == b) {
            Some((_, ids)) => ids.push(h),
            None => {
                let at = self.buckets.partition_point(|(k, _)| *k < b);
                self.buckets.insert(at, (b, vec![h]));
            }
        }
        let newest = self.buckets.back().map_or(b, |(k, _)| *k);
        let keep = self.window_secs.div_euclid(BUCKET_SECS) + 1;
        while self
            .buckets
            .front()
            .is_some_and(|(k, _)| newest - *k > keep)
        {
            if let Some((_, ids)) = self.buckets.pop_front() {
                for id in ids {
                    self.seen.remove(&id);
                }
            }
        }
        true
    }
}

impl Dedupe {
    /// The window's buckets, oldest first (for checkpoints).
    pub fn buckets(&self) -> Vec<(i64, Vec<u128>)> {
        self.buckets.iter().cloned().collect()
    }

    /// Restores buckets written by [`buckets`](Self::buckets).
    pub fn restore(&mut self, buckets: Vec<(i64, Vec<u128>)>) {
        for (_, ids) in &buckets {
            self.seen.extend(ids.iter().copied());
        }
        self.buckets = buckets.into();
    }
}

/// The hash a `message_id` is remembered by.
pub fn message_hash(message_id: &str) -> u128 {
    xxh3_128(message_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_within_the_window() {
        let mut d = Dedupe::new(86_400, 0);
        let t = Timestamp::from_secs(1_000_000_000);
        assert!(d.first_time("a", t));
        assert!(!d.first_time("a", t));
        assert!(d.first_time("b", t));
        let later = Timestamp::from_secs(1_000_000_000 + 3 * 86_400);
        assert!(d.first_time("c", later));
        // "a" has aged out of the window.
        assert!(d.first_time("a", later));
    }
}

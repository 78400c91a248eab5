//! Redelivered input: a `message_id` is applied once within the dedupe window.

use std::collections::VecDeque;
use std::sync::Arc;

use footfall_operators::time::Timestamp;
use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::xxh3_128;

/// Seen `message_id`s of one input partition, remembered in hourly buckets of event
/// time; buckets further than the window behind the newest are forgotten.
///
/// A bucket's ids are kept in chunks: a checkpoint seals the chunk being filled and
/// shares every sealed one, so taking it copies no ids however large the window.
pub struct Dedupe {
    window_secs: i64,
    seen: FxHashSet<u128>,
    buckets: VecDeque<Bucket>,
}

/// The id hashes of one hour, in sealed chunks (oldest first).
pub type Chunks = Vec<Arc<Vec<u128>>>;

struct Bucket {
    hour: i64,
    sealed: Chunks,
    open: Vec<u128>,
}

impl Bucket {
    fn ids(self) -> impl Iterator<Item = u128> {
        self.sealed
            .into_iter()
            .flat_map(|c| Arc::unwrap_or_clone(c).into_iter())
            .chain(self.open)
    }
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
        match self.buckets.iter_mut().rev().find(|k| k.hour == b) {
            Some(bucket) => bucket.open.push(h),
            None => {
                let at = self.buckets.partition_point(|k| k.hour < b);
                self.buckets.insert(
                    at,
                    Bucket {
                        hour: b,
                        sealed: Vec::new(),
                        open: vec![h],
                    },
                );
            }
        }
        let newest = self.buckets.back().map_or(b, |k| k.hour);
        let keep = self.window_secs.div_euclid(BUCKET_SECS) + 1;
        while self.buckets.front().is_some_and(|k| newest - k.hour > keep) {
            if let Some(bucket) = self.buckets.pop_front() {
                for id in bucket.ids() {
                    self.seen.remove(&id);
                }
            }
        }
        true
    }
}

impl Dedupe {
    /// The window's buckets, oldest first (for checkpoints): seals the chunks being
    /// filled and shares them all.
    pub fn buckets(&mut self) -> Vec<(i64, Chunks)> {
        self.buckets
            .iter_mut()
            .map(|b| {
                if !b.open.is_empty() {
                    b.sealed.push(Arc::new(std::mem::take(&mut b.open)));
                }
                (b.hour, b.sealed.clone())
            })
            .collect()
    }

    /// Restores buckets written by [`buckets`](Self::buckets).
    pub fn restore(&mut self, buckets: Vec<(i64, Chunks)>) {
        for (_, chunks) in &buckets {
            for c in chunks {
                self.seen.extend(c.iter().copied());
            }
        }
        self.buckets = buckets
            .into_iter()
            .map(|(hour, sealed)| Bucket {
                hour,
                sealed,
                open: Vec::new(),
            })
            .collect();
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

    #[test]
    fn a_checkpoint_shares_sealed_chunks_and_restores_the_window() {
        let mut d = Dedupe::new(86_400, 0);
        let t = Timestamp::from_secs(1_000_000_000);
        assert!(d.first_time("a", t));
        let first = d.buckets();
        assert!(d.first_time("b", t));
        let second = d.buckets();
        assert_eq!(second[0].1.len(), 2, "a chunk per checkpoint");
        assert!(
            Arc::ptr_eq(&first[0].1[0], &second[0].1[0]),
            "shared, not copied"
        );
        let mut back = Dedupe::new(86_400, 0);
        back.restore(second);
        assert!(!back.first_time("a", t) && !back.first_time("b", t));
        assert!(back.first_time("c", t));
    }
}

//! Step 7, dedupe: an `action_id` is written at most once.
//!
//! The sinks keep the durable guarantee (the output log is read back at start, so a
//! replay into the same data directory writes nothing twice). This step keeps ids of
//! the last days in memory, so an action produced twice in one run neither counts
//! against a cap nor credits a conversion twice.

use std::collections::BTreeMap;

use rustc_hash::FxHashSet;
use xxhash_rust::xxh3::xxh3_128;

use crate::time::Timestamp;

/// Days of `fired_at` whose ids are remembered.
const KEEP_DAYS: i64 = 8;

/// The ids written, by day of `fired_at`.
#[derive(Default)]
pub struct Seen {
    ids: FxHashSet<u128>,
    days: BTreeMap<i64, Vec<u128>>,
}

impl Seen {
    /// Whether `action_id` was written.
    pub fn contains(&self, action_id: &str) -> bool {
        self.ids.contains(&xxh3_128(action_id.as_bytes()))
    }

    /// Records `action_id`, due at `at`; false if it was already there.
    pub fn insert(&mut self, action_id: &str, at: Timestamp) -> bool {
        self.insert_hash(
            xxh3_128(action_id.as_bytes()),
            at.as_secs().div_euclid(86_400),
        )
    }

    fn insert_hash(&mut self, h: u128, day: i64) -> bool {
        if !self.ids.insert(h) {
            return false;
        }
        self.days.entry(day).or_default().push(h);
        let newest = self.days.last_key_value().map_or(day, |(d, _)| *d);
        while let Some(entry) = self.days.first_entry() {
            if newest - *entry.key() <= KEEP_DAYS {
                break;
            }
            for h in entry.remove() {
                self.ids.remove(&h);
            }
        }
        true
    }

    /// `(day, ids)` per day (for checkpoints).
    pub fn days(&self) -> impl Iterator<Item = (i64, &[u128])> {
        self.days.iter().map(|(d, ids)| (*d, ids.as_slice()))
    }

    /// Restores one day written by [`days`](Self::days).
    pub fn restore(&mut self, day: i64, ids: Vec<u128>) {
        for h in ids {
            self.insert_hash(h, day);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_passes_once_and_survives_a_restore() {
        let mut s = Seen::default();
        let t = Timestamp::from_secs(1_700_000_000);
        assert!(s.insert("a", t) && !s.insert("a", t) && s.contains("a"));
        let mut back = Seen::default();
        for (d, ids) in s.days() {
            back.restore(d, ids.to_vec());
        }
        assert!(back.contains("a") && !back.insert("a", t));
        // Ten days later the old id is forgotten (the output log still dedupes it).
        assert!(back.insert("b", Timestamp::from_secs(1_700_000_000 + 10 * 86_400)));
        assert!(!back.contains("a"));
    }
}

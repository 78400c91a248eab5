//! Step 1, erased: a customer with an `erase` record gets nothing, ever. Their actions,
//! held ones included, are dropped without a record anywhere (only counted), since no
//! record may name them. Keys are remembered only as hashes.

use rustc_hash::FxHashSet;

use crate::identity::erased_hash;

/// The erased customer keys, as hashes.
#[derive(Default)]
pub struct Erased(FxHashSet<u128>);

impl Erased {
    /// Remembers `key` as erased.
    pub fn insert(&mut self, key: &str) {
        self.0.insert(erased_hash(key));
    }

    /// Whether `key` was erased.
    pub fn contains(&self, key: &str) -> bool {
        !self.0.is_empty() && self.0.contains(&erased_hash(key))
    }

    /// The hashes (for checkpoints).
    pub fn hashes(&self) -> impl Iterator<Item = u128> + '_ {
        self.0.iter().copied()
    }

    /// Restores a hash written by [`hashes`](Self::hashes).
    pub fn restore(&mut self, hash: u128) {
        self.0.insert(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_what_was_erased() {
        let mut e = Erased::default();
        assert!(!e.contains("m-1"));
        e.insert("m-1");
        assert!(e.contains("m-1") && !e.contains("m-2"));
        let mut back = Erased::default();
        e.hashes().for_each(|h| back.restore(h));
        assert!(back.contains("m-1"));
    }
}

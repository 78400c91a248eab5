//! Stable partitioning: which partition (and so which worker) owns a key.

use xxhash_rust::xxh3::xxh3_64;

/// The partition of `key` among `partitions`: XXH3-64 (seed 0) of the key's UTF-8, modulo
/// the partition count. Stable across processes, machines and releases.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    (xxh3_64(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        // Pinned: a change here would re-route every customer of a running deployment.
        assert_eq!(partition_for("m-1001", 4), partition_for("m-1001", 4));
        assert_eq!(
            xxh3_64(b"m-1001") % 4,
            u64::from(partition_for("m-1001", 4))
        );
        for i in 0..1000 {
            assert!(partition_for(&format!("k{i}"), 7) < 7);
        }
        assert_eq!(partition_for("x", 0), 0);
    }
}

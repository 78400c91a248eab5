//! Several processes sharing one pipeline, without consumer groups: worker `index` of
//! `count` owns key partition `p` when `p % count == index`.
//!
//! Owning a key partition means holding the state of the customers whose keys hash to
//! it, running their policies, and writing that partition of every output topic. Every
//! worker reads every input partition and runs the same sequencer (the event-time order,
//! the clock and the identity graph are the same in each), then drops the customer
//! events of keys it does not own. Two kinds of state are kept by every worker, so that
//! no state ever has to cross processes: stores' (stock lots and their recent buyers),
//! so that each makes the store-driven offers of its own customers (only a store's owner
//! writes its markdowns); and that of devices not linked to a customer yet (`anon:`
//! keys), so that when an `identify` links one, the customer's owner merges its own copy
//! and the others drop theirs.

/// This process's share of the key partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    index: u32,
    count: u32,
}

impl Assignment {
    /// The one process of a pipeline that is not shared.
    pub const ALL: Assignment = Assignment { index: 0, count: 1 };

    /// Worker `index` of `count` (`transport.worker_index` / `worker_count`).
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("transport.worker_count: must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "transport.worker_index: {index} is not below transport.worker_count {count}"
            ));
        }
        Ok(Assignment { index, count })
    }

    /// This worker's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many workers share the pipeline.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether several processes share the pipeline.
    pub fn shared(&self) -> bool {
        self.count > 1
    }

    /// The worker that owns key partition `p`.
    pub fn owner(&self, p: u32) -> u32 {
        p % self.count
    }

    /// Whether this worker owns key partition `p`.
    pub fn owns(&self, p: u32) -> bool {
        self.owner(p) == self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_partition_has_exactly_one_owner() {
        for count in 1..=5 {
            let workers: Vec<Assignment> = (0..count)
                .map(|i| Assignment::new(i, count).unwrap())
                .collect();
            for partitions in [1, 4, 7] {
                for p in 0..partitions {
                    let owners: Vec<u32> = workers
                        .iter()
                        .filter(|w| w.owns(p))
                        .map(|w| w.index())
                        .collect();
                    assert_eq!(
                        owners.len(),
                        1,
                        "partition {p} of {partitions}, {count} workers"
                    );
                    assert_eq!(owners[0], workers[0].owner(p));
                }
            }
        }
        // Worker 1 of 2 over 4 partitions owns 1 and 3. More workers than partitions: the
        // extra ones own none.
        let w = Assignment::new(1, 2).unwrap();
        assert_eq!((0..4).filter(|&p| w.owns(p)).collect::<Vec<_>>(), [1, 3]);
        let idle = Assignment::new(5, 6).unwrap();
        assert!((0..4).all(|p| !idle.owns(p)));
        assert!(Assignment::ALL.owns(3) && !Assignment::ALL.shared());
        assert!(Assignment::new(2, 2).unwrap_err().contains("not below"));
        assert!(Assignment::new(0, 0).is_err());
    }
}

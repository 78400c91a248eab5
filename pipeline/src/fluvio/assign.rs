//! Partition assignment without consumer groups: worker `index` of `count` reads
//! partition `p` of a keyed topic when `p % count == index`; every worker reads all of
//! the reference topics (`stores`, `weather`), whose few records each worker keeps
//! whole.

use footfall_operators::event::Topic;

/// This process's share of the partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    index: u32,
    count: u32,
}

impl Assignment {
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

    /// Whether every worker reads all of `topic`.
    pub fn broadcast(topic: Topic) -> bool {
        matches!(topic, Topic::Stores | Topic::Weather)
    }

    /// The partitions of `topic` (which has `partitions`) this worker reads.
    pub fn partitions(&self, topic: Topic, partitions: u32) -> Vec<u32> {
        (0..partitions)
            .filter(|p| Self::broadcast(topic) || p % self.count == self.index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_partitions_are_split_exactly_once_and_reference_topics_read_whole() {
        for count in 1..=5 {
            let workers: Vec<Assignment> = (0..count)
                .map(|i| Assignment::new(i, count).unwrap())
                .collect();
            for topic in Topic::ALL {
                for partitions in [1, 4, 7] {
                    let mut seen = vec![0; partitions as usize];
                    for w in &workers {
                        for p in w.partitions(topic, partitions) {
                            seen[p as usize] += 1;
                        }
                    }
                    let want = if Assignment::broadcast(topic) {
                        count
                    } else {
                        1
                    };
                    assert!(
                        seen.iter().all(|&n| n == want),
                        "{topic:?}, {partitions} partitions, {count} workers: {seen:?}"
                    );
                }
            }
        }
        // Worker 1 of 2 over 4 partitions: 1 and 3. More workers than partitions: the
        // extra ones get nothing of the keyed topics.
        let w = Assignment::new(1, 2).unwrap();
        assert_eq!(w.partitions(Topic::Clickstream, 4), [1, 3]);
        assert_eq!(w.partitions(Topic::Weather, 1), [0]);
        let idle = Assignment::new(5, 6).unwrap();
        assert!(idle.partitions(Topic::Transactions, 4).is_empty());
        assert!(Assignment::new(2, 2).unwrap_err().contains("not below"));
        assert!(Assignment::new(0, 0).is_err());
    }
}

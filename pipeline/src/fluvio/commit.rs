//! When offsets are committed: only once the checkpoint that covers them is written and
//! the outputs it counts are flushed, so a restart (which resumes from the newest
//! checkpoint) never finds the transport's stored offsets ahead of its state.
//!
//! At a barrier the runtime records each input partition's next offset under the
//! checkpoint's id; when that checkpoint's manifest is written, [`CommitGate::written`]
//! gives the offsets to commit (and forgets older checkpoints' offsets, which it
//! covers). A checkpoint that failed is never written: its offsets are never committed,
//! and a later one's replace them.

use std::collections::BTreeMap;

/// Offsets waiting for their checkpoint.
#[derive(Debug, Default)]
pub struct CommitGate {
    pending: BTreeMap<u64, BTreeMap<(String, u32), u64>>,
    committed: BTreeMap<(String, u32), u64>,
}

impl CommitGate {
    /// Checkpoint `id`'s barrier saw these next offsets per (topic, partition).
    pub fn barrier(&mut self, id: u64, offsets: impl IntoIterator<Item = (String, u32, u64)>) {
        let at = self.pending.entry(id).or_default();
        for (topic, partition, next) in offsets {
            at.insert((topic, partition), next);
        }
    }

    /// Checkpoint `id` is written and its outputs flushed: the offsets to commit now,
    /// each partition's newest, none behind what was committed before.
    pub fn written(&mut self, id: u64) -> Vec<(String, u32, u64)> {
        let mut covered = self.pending.split_off(&(id + 1));
        std::mem::swap(&mut covered, &mut self.pending);
        let Some((_, offsets)) = covered.into_iter().next_back().filter(|(i, _)| *i == id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((topic, partition), next) in offsets {
            let done = self
                .committed
                .entry((topic.clone(), partition))
                .or_insert(0);
            if next > *done {
                *done = next;
                out.push((topic, partition, next));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::contiguous::tests::fake;
    use super::super::{Contiguous, Transport};
    use super::*;

    fn o(t: &str, p: u32, n: u64) -> (String, u32, u64) {
        (t.to_owned(), p, n)
    }

    #[test]
    fn offsets_wait_for_their_checkpoint_and_never_go_back() {
        let mut g = CommitGate::default();
        g.barrier(1, [o("clickstream", 0, 100), o("clickstream", 1, 80)]);
        g.barrier(2, [o("clickstream", 0, 150), o("clickstream", 1, 80)]);
        // Nothing is committed before a checkpoint is written.
        assert!(g.committed.is_empty());
        assert_eq!(
            g.written(1),
            [o("clickstream", 0, 100), o("clickstream", 1, 80)]
        );
        // Checkpoint 2 moves only the partition that moved.
        assert_eq!(g.written(2), [o("clickstream", 0, 150)]);
        // Checkpoint 3 failed (never written); 4 is written: 3's offsets are dropped.
        g.barrier(3, [o("clickstream", 0, 170)]);
        g.barrier(4, [o("clickstream", 0, 200)]);
        assert_eq!(g.written(4), [o("clickstream", 0, 200)]);
        assert!(
            g.written(3).is_empty(),
            "an older checkpoint commits nothing later"
        );
    }

    #[tokio::test]
    async fn commits_follow_the_checkpoint_then_flush() {
        // The order the runtime keeps: read, barrier, (outputs flushed, manifest
        // written), then commit (durably) through the transport.
        let t = fake(30, 0..0, None);
        let mut r = Contiguous::new(t.clone(), "clickstream", 0, 0);
        let mut g = CommitGate::default();
        for _ in 0..10 {
            r.next().await.unwrap();
        }
        g.barrier(1, [o("clickstream", 0, r.position())]);
        for _ in 0..5 {
            r.next().await.unwrap();
        }
        t.log.lock().unwrap().push("manifest 1 written".into());
        for (topic, partition, next) in g.written(1) {
            r.transport().commit(&topic, partition, next).await.unwrap();
        }
        assert_eq!(
            *t.log.lock().unwrap(),
            ["manifest 1 written", "commit 10"],
            "the commit covers what checkpoint 1 saw (10), not what was read since (15)"
        );
    }
}

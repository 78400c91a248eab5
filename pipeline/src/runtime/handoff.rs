//! State moving between processes: an identity merge whose anonymous key one worker
//! owns and whose surviving key another owns (see [`super::assign`]).
//!
//! Both workers dispatch the merge at the same place in the event-time order. The
//! owner of the anonymous key exports its state there and writes it to the handoff
//! topic, `footfall-handoff-<count>`, whose partition `from * count + to` carries what
//! worker `from` hands worker `to` (one writer per partition). The owner of the
//! surviving key waits there until the record has arrived, then imports it, so the
//! surviving customer's state is what one process would have made of it.
//!
//! A restarted exporter writes its records again (the importer keeps the first); a
//! restarted importer reads again from the offsets its checkpoint kept: for each
//! partition, the first record it had not used yet.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use footfall_operators::event::Topic;
use footfall_operators::time::Timestamp;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::warn;

use super::assign::Assignment;
use super::topics::Topics;
use crate::log::{Batch, LogError};

/// The handoff topic of a pipeline shared by `count` workers.
pub fn topic(count: u32) -> String {
    format!("footfall-handoff-{count}")
}

/// The partition that carries what worker `from` hands worker `to`.
pub fn partition(from: u32, to: u32, count: u32) -> u32 {
    from * count + to
}

/// Names one merge: the event that caused it, which every worker dispatches alike.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeId {
    /// The event's time, nanoseconds.
    pub at: i64,
    /// Its topic, by position in [`Topic::ALL`].
    pub topic: u8,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
}

impl MergeId {
    /// The merge caused by the event at (`at`, `topic`, `partition`, `offset`).
    pub fn of(order: (Timestamp, Topic, u32, u64)) -> Self {
        let (at, topic, partition, offset) = order;
        MergeId {
            at: at.as_nanos(),
            topic: Topic::ALL.iter().position(|&t| t == topic).unwrap_or(0) as u8,
            partition,
            offset,
        }
    }
}

/// Exported state, per operator: what [`Worker::encode_states`] makes.
///
/// [`Worker::encode_states`]: footfall_operators::worker::Worker::encode_states
pub type Encoded = Vec<(u16, Vec<u8>)>;

/// One handoff record.
#[derive(Serialize, Deserialize)]
pub struct Record {
    /// The merge.
    pub id: MergeId,
    /// The key whose state moves.
    pub from: String,
    /// Its state.
    pub states: Encoded,
}

/// What has arrived for this worker and not been used yet.
#[derive(Default)]
struct Arrived {
    /// By merge: (handoff partition, offset, state).
    records: FxHashMap<MergeId, (u32, u64, Encoded)>,
    /// Imports waiting for their record.
    waiting: FxHashMap<MergeId, oneshot::Sender<Result<Encoded, String>>>,
    /// Per handoff partition read: the offset after the last record read.
    read: Vec<(u32, u64)>,
    /// Why reading stopped, if it did.
    failed: Option<String>,
}

/// This worker's incoming handoffs.
#[derive(Default)]
pub struct Inbox {
    arrived: Mutex<Arrived>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Arrived> {
        self.arrived.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state handed over for merge `id`, once it has arrived.
    pub async fn take(&self, id: MergeId) -> Result<Encoded, String> {
        let rx = {
            let mut a = self.lock();
            if let Some((_, _, states)) = a.records.remove(&id) {
                return Ok(states);
            }
            if let Some(e) = &a.failed {
                return Err(e.clone());
            }
            let (tx, rx) = oneshot::channel();
            a.waiting.insert(id, tx);
            rx
        };
        rx.await
            .unwrap_or_else(|_| Err("the handoff reader stopped".into()))
    }

    fn arrive(&self, partition: u32, offset: u64, record: Record) {
        let mut a = self.lock();
        if let Some(r) = a.read.iter_mut().find(|(p, _)| *p == partition) {
            r.1 = r.1.max(offset + 1);
        }
        if let Some(tx) = a.waiting.remove(&record.id) {
            let _ = tx.send(Ok(record.states));
        } else {
            // A record written twice (its exporter restarted) keeps the first.
            a.records
                .entry(record.id)
                .or_insert((partition, offset, record.states));
        }
    }

    fn fail(&self, why: String) {
        let mut a = self.lock();
        for (_, tx) in a.waiting.drain() {
            let _ = tx.send(Err(why.clone()));
        }
        a.failed = Some(why);
    }

    /// For a checkpoint: per partition read, where a recovery reads again from (the
    /// first record not used yet, or the end of what was read).
    pub fn floor(&self) -> Vec<(u32, u64)> {
        let a = self.lock();
        a.read
            .iter()
            .map(|&(p, next)| {
                let first_unused = a
                    .records
                    .values()
                    .filter(|(q, _, _)| *q == p)
                    .map(|(_, o, _)| *o)
                    .min();
                (p, first_unused.map_or(next, |o| o.min(next)))
            })
            .collect()
    }
}

/// Starts reading this worker's handoff partitions, each from the offset `restored`
/// names (a checkpoint's [`Inbox::floor`]) or the beginning. The readers run until
/// aborted.
pub fn start(
    topics: &Topics,
    me: Assignment,
    restored: &[(u32, u64)],
) -> Result<(Arc<Inbox>, Vec<JoinHandle<()>>), LogError> {
    let inbox = Arc::new(Inbox::default());
    let mut tasks = Vec::new();
    let name = topic(me.count());
    for from in (0..me.count()).filter(|&f| f != me.index()) {
        let p = partition(from, me.index(), me.count());
        let start = restored
            .iter()
            .find(|(q, _)| *q == p)
            .map_or(0, |(_, o)| *o);
        inbox.lock().read.push((p, start));
        // Not finite: a record may be written after this worker needs it.
        let mut reader = topics.reader(&name, p, start, false)?;
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut batch = Batch::default();
            loop {
                match reader.poll(&mut batch, 1024, 8 << 20).await {
                    Ok(0) => tokio::time::sleep(Duration::from_millis(2)).await,
                    Ok(_) => {
                        for (offset, bytes) in batch.iter() {
                            match postcard::from_bytes::<Record>(bytes) {
                                Ok(r) => inbox.arrive(p, offset, r),
                                Err(e) => {
                                    warn!(partition = p, offset, error = %e, "an unreadable handoff record is skipped")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        inbox.fail(format!("reading handoff partition {p}: {e}"));
                        return;
                    }
                }
            }
        }));
    }
    Ok((inbox, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(offset: u64) -> MergeId {
        MergeId {
            at: 1,
            topic: 0,
            partition: 0,
            offset,
        }
    }

    fn record(offset: u64, byte: u8) -> Record {
        Record {
            id: id(offset),
            from: "anon:d-1".into(),
            states: vec![(0, vec![byte])],
        }
    }

    #[tokio::test]
    async fn an_import_gets_its_record_whether_it_came_first_or_not() {
        let inbox = Arc::new(Inbox::default());
        inbox.lock().read.push((1, 0));
        // Arrived before it is asked for; a second copy (a restarted exporter) is dropped.
        inbox.arrive(1, 0, record(10, 7));
        inbox.arrive(1, 1, record(10, 8));
        assert_eq!(inbox.take(id(10)).await.unwrap(), vec![(0, vec![7])]);
        // Asked for before it arrives.
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.take(id(11)).await }
        });
        tokio::task::yield_now().await;
        inbox.arrive(1, 2, record(11, 9));
        assert_eq!(waiting.await.unwrap().unwrap(), vec![(0, vec![9])]);
        // Recovery reads again from the first record not used: none left, so the end.
        assert_eq!(inbox.floor(), vec![(1, 3)]);
        inbox.arrive(1, 3, record(12, 1));
        inbox.arrive(1, 4, record(13, 2));
        inbox.take(id(13)).await.unwrap();
        assert_eq!(inbox.floor(), vec![(1, 3)]);
    }

    #[tokio::test]
    async fn a_failed_reader_fails_the_imports_waiting_and_later() {
        let inbox = Arc::new(Inbox::default());
        let waiting = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.take(id(1)).await }
        });
        tokio::task::yield_now().await;
        inbox.fail("broker gone".into());
        assert_eq!(waiting.await.unwrap().unwrap_err(), "broker gone");
        assert_eq!(inbox.take(id(2)).await.unwrap_err(), "broker gone");
    }
}

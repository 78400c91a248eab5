//! Output topics: actions go to the partition of their customer (or store) key, dead
//! letters to the partition of the record they came from.
//!
//! The log is the outbox: on open, every partition's existing records are read back, and
//! an `action_id` (or a dead letter's source position) already there is never appended
//! again. Replaying the same input into the same data directory adds nothing twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use footfall_operators::action::{Action, DeadLetter, Group, OutputTopic};
use footfall_operators::key::partition_for;
use footfall_operators::policy::Packed;
use footfall_operators::time::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};
use xxhash_rust::xxh3::xxh3_128;

use super::assign::Assignment;
use super::topics::Topics;
use crate::fluvio::io::FluvioWriter;
use crate::log::{LogError, PartitionWriter};

/// Writes one output partition.
enum Writer {
    Log(PartitionWriter),
    Fluvio(FluvioWriter),
}

impl Writer {
    /// The writer of `topic`/`partition`, which ends at `end`.
    async fn open(
        topics: &Topics,
        topic: &str,
        partition: u32,
        end: u64,
    ) -> Result<Self, LogError> {
        Ok(match topics {
            Topics::Log(log) => Writer::Log(log.writer(topic, partition)?),
            Topics::Fluvio(c) => {
                Writer::Fluvio(FluvioWriter::open(c, topic, partition, end).await?)
            }
        })
    }

    fn append(&mut self, key: &str, payload: &[u8]) -> Result<(), LogError> {
        match self {
            Writer::Log(w) => w.append(payload).map(|_| ()),
            Writer::Fluvio(w) => Ok(w.append(key.as_bytes(), payload)?),
        }
    }

    /// Makes what was appended visible to readers (Fluvio's producer sends on its own).
    fn flush(&mut self) -> Result<(), LogError> {
        match self {
            Writer::Log(w) => w.flush(),
            Writer::Fluvio(_) => Ok(()),
        }
    }

    /// Where what is appended next goes, at the latest.
    fn next_offset(&self) -> u64 {
        match self {
            Writer::Log(w) => w.next_offset(),
            // Records queued but not yet acknowledged are after it: reading back from
            // here finds them all.
            Writer::Fluvio(w) => w.acknowledged(),
        }
    }
}

struct Slot {
    writer: Writer,
    /// Identities of the records already in this partition.
    written: FxHashSet<u128>,
    /// Records read back at open (a crashed run wrote them past the checkpoint) that
    /// this run has not produced again yet, by offset. A checkpoint taken before the
    /// run catches up with them must still have them read back on recovery, so its
    /// output position stays at the first of them.
    unconfirmed: BTreeMap<u64, u128>,
    unconfirmed_at: FxHashMap<u128, u64>,
}

impl Slot {
    /// Records `id` as written; false if it already was (then it is confirmed).
    fn insert(&mut self, id: u128) -> bool {
        if self.written.insert(id) {
            return true;
        }
        if let Some(offset) = self.unconfirmed_at.remove(&id) {
            self.unconfirmed.remove(&offset);
        }
        false
    }

    /// Where a recovery from a checkpoint taken now must start reading back.
    fn position(&self) -> u64 {
        let end = self.writer.next_offset();
        self.unconfirmed
            .first_key_value()
            .map_or(end, |(o, _)| end.min(*o))
    }
}

/// Writers of every output topic's partitions (of this worker's partitions, when several
/// processes share the pipeline: the others are `None` and what would go there is
/// another worker's to write).
pub struct Sinks {
    topics: Vec<Vec<Option<Mutex<Slot>>>>,
    /// SQL's `actions` table in the service: every action and suppression written.
    record: Option<Arc<Mutex<footfall_sql::Tables>>>,
}

fn index(t: OutputTopic) -> usize {
    OutputTopic::ALL.iter().position(|&x| x == t).unwrap_or(0)
}

fn dead_identity(topic: &str, partition: u32, offset: u64) -> u128 {
    xxh3_128(format!("{topic}/{partition}/{offset}").as_bytes())
}

/// The identity of a stored output record: its `action_id`, or a dead letter's source.
fn identity(payload: &[u8]) -> Option<u128> {
    #[derive(serde::Deserialize)]
    struct Id {
        conversion_id: Option<String>,
        action_id: Option<String>,
        topic: Option<String>,
        partition: Option<u32>,
        offset: Option<u64>,
    }
    let id: Id = serde_json::from_slice(payload).ok()?;
    if let Some(c) = id.conversion_id {
        return Some(xxh3_128(c.as_bytes()));
    }
    match (id.action_id, id.topic, id.partition, id.offset) {
        (Some(a), ..) => Some(xxh3_128(a.as_bytes())),
        (None, Some(t), Some(p), Some(o)) => Some(dead_identity(&t, p, o)),
        _ => None,
    }
}

impl Sinks {
    /// Creates (if needed) and opens every output topic with `partitions` partitions,
    /// reading back what each already holds: everything, or with `since` (a checkpoint's
    /// output positions) what was appended after the checkpoint.
    pub async fn open(
        topics: &Topics,
        partitions: u32,
        replication: u32,
        since: Option<&[(String, Vec<u64>)]>,
    ) -> Result<Self, LogError> {
        Self::open_share(topics, partitions, replication, since, Assignment::ALL).await
    }

    /// [`open`](Self::open) for worker `me`: only the partitions it owns.
    pub async fn open_share(
        topics: &Topics,
        partitions: u32,
        replication: u32,
        since: Option<&[(String, Vec<u64>)]>,
        me: Assignment,
    ) -> Result<Self, LogError> {
        let names: Vec<&str> = OutputTopic::ALL.iter().map(|t| t.name()).collect();
        topics.create(&names, partitions, replication).await?;
        let mut out = Vec::new();
        for t in OutputTopic::ALL {
            let n = topics.partitions(t.name()).await?.unwrap_or(partitions);
            if me.shared() && n != partitions {
                // Owning a key partition must mean owning the same output partition.
                return Err(LogError::Invalid(format!(
                    "topic {} has {n} partitions but transport.partitions is {partitions}: \
                     workers sharing a pipeline need every output topic to have exactly \
                     transport.partitions",
                    t.name()
                )));
            }
            let from = |p: u32| {
                since
                    .and_then(|s| s.iter().find(|(name, _)| name == t.name()))
                    .and_then(|(_, offsets)| offsets.get(p as usize).copied())
                    .unwrap_or(0)
            };
            // The partitions at once: on a cluster each is a few round trips.
            let slots = (0..n).map(|p| async move {
                match me.owns(p) {
                    true => Self::open_slot(topics, t.name(), p, from(p))
                        .await
                        .map(Some),
                    false => Ok(None),
                }
            });
            let slots = futures_util::future::join_all(slots).await;
            out.push(slots.into_iter().collect::<Result<Vec<_>, _>>()?);
        }
        Ok(Sinks {
            topics: out,
            record: None,
        })
    }

    /// Opens `topic`/`partition` for writing, reading back what it holds from `from`.
    async fn open_slot(
        topics: &Topics,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Mutex<Slot>, LogError> {
        let mut written = FxHashSet::default();
        let mut unconfirmed = BTreeMap::new();
        let mut unconfirmed_at = FxHashMap::default();
        let mut end = from;
        topics
            .read_to_end(topic, partition, from, |offset, b| {
                end = offset + 1;
                if let Some(id) = identity(b) {
                    written.insert(id);
                    unconfirmed.insert(offset, id);
                    unconfirmed_at.insert(id, offset);
                }
                true
            })
            .await?;
        let writer = Writer::open(topics, topic, partition, end).await?;
        Ok(Mutex::new(Slot {
            writer,
            written,
            unconfirmed,
            unconfirmed_at,
        }))
    }

    /// Also appends every action and suppression written to `table` (SQL's `actions`).
    pub fn record_to(&mut self, table: Arc<Mutex<footfall_sql::Tables>>) {
        self.record = Some(table);
    }

    /// Records suppressions in SQL's `actions` table, if it is kept: the action with its
    /// reason code, and why in `detail`.
    pub fn record_suppressions(&self, suppressed: &[footfall_operators::policy::Suppression]) {
        let Some(table) = &self.record else { return };
        let mut t = lock(table);
        for s in suppressed {
            let topic = OutputTopic::Suppressions.name();
            let reason = Some(s.reason.as_str());
            t.append_packed(topic, &s.action, reason, Some(&s.detail));
        }
    }

    /// Appends actions not written before (stamping `emitted_at`) and flushes their
    /// partitions. Returns how many were new.
    pub fn write_actions<A: Outgoing>(
        &self,
        actions: &mut [A],
        buf: &mut Vec<u8>,
    ) -> Result<usize, LogError> {
        let now = Timestamp::now();
        let mut touched: Vec<(usize, usize)> = Vec::new();
        let mut new = 0;
        let mut recorded = Vec::new();
        for (i, a) in actions.iter_mut().enumerate() {
            let t = index(a.topic());
            let p = partition_for(a.key(), self.topics[t].len() as u32) as usize;
            let Some(slot) = &self.topics[t][p] else {
                continue;
            };
            let mut slot = lock(slot);
            if !slot.insert(xxh3_128(a.action_id().as_bytes())) {
                continue;
            }
            a.stamp(now);
            buf.clear();
            a.encode(buf);
            slot.writer.append(a.key(), buf)?;
            new += 1;
            if self.record.is_some() {
                recorded.push(i);
            }
            if !touched.contains(&(t, p)) {
                touched.push((t, p));
            }
        }
        for (t, p) in touched {
            if let Some(slot) = &self.topics[t][p] {
                lock(slot).writer.flush()?;
            }
        }
        if let Some(table) = &self.record
            && !recorded.is_empty()
        {
            let mut table = lock(table);
            for i in recorded {
                actions[i].record(&mut table);
            }
        }
        Ok(new)
    }

    /// Appends records of `topic` not written before: each `(key, id, record)` goes to
    /// the partition of `key`, once per `id`, as `encode` puts it. Flushes. Returns how
    /// many were new.
    pub fn write_records<'a, T: 'a>(
        &self,
        topic: OutputTopic,
        records: impl IntoIterator<Item = (&'a str, &'a str, &'a T)>,
        buf: &mut Vec<u8>,
        encode: impl Fn(&mut Vec<u8>, &T),
    ) -> Result<usize, LogError> {
        let t = index(topic);
        let mut touched: Vec<usize> = Vec::new();
        let mut new = 0;
        for (key, id, record) in records {
            let p = partition_for(key, self.topics[t].len() as u32) as usize;
            let Some(slot) = &self.topics[t][p] else {
                continue;
            };
            let mut slot = lock(slot);
            if !slot.insert(xxh3_128(id.as_bytes())) {
                continue;
            }
            buf.clear();
            encode(buf, record);
            slot.writer.append(key, buf)?;
            new += 1;
            if !touched.contains(&p) {
                touched.push(p);
            }
        }
        for p in touched {
            if let Some(slot) = &self.topics[t][p] {
                lock(slot).writer.flush()?;
            }
        }
        Ok(new)
    }

    /// Appends dead letters of input partition `partition` not written before, and flushes.
    pub fn write_deadletters(&self, partition: u32, dead: &[DeadLetter]) -> Result<(), LogError> {
        let slots = &self.topics[index(OutputTopic::Deadletter)];
        // Every worker reads every input partition; the owner of the dead-letter
        // partition writes.
        let Some(slot) = &slots[partition as usize % slots.len()] else {
            return Ok(());
        };
        let mut slot = lock(slot);
        for d in dead {
            if !slot.insert(dead_identity(&d.topic, d.partition, d.offset)) {
                continue;
            }
            let bytes = serde_json::to_vec(d).unwrap_or_default();
            slot.writer.append("", &bytes)?;
        }
        slot.writer.flush()
    }

    /// Each output topic's partitions' positions for a checkpoint: the end offset, or
    /// the first record read back at open that this run has not produced again.
    pub fn positions(&self) -> Vec<(String, Vec<u64>)> {
        OutputTopic::ALL
            .iter()
            .zip(&self.topics)
            .map(|(t, slots)| {
                // Another worker's partition: its own checkpoints say where it is.
                let ends = slots
                    .iter()
                    .map(|s| s.as_ref().map_or(0, |s| lock(s).position()))
                    .collect();
                (t.name().to_owned(), ends)
            })
            .collect()
    }

    /// Forces everything written to disk (the embedded log), or waits until the cluster
    /// has acknowledged it (Fluvio).
    pub async fn sync(&self) -> Result<(), LogError> {
        let mut remote = Vec::new();
        for s in self.topics.iter().flatten().flatten() {
            match &mut lock(s).writer {
                Writer::Log(w) => w.sync()?,
                Writer::Fluvio(w) => remote.push(w.flush()),
            }
        }
        for r in futures_util::future::join_all(remote).await {
            r?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is a bug; the slot itself is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An action on its way to an output topic: a trigger's own, or one the policies
/// passed (packed).
pub trait Outgoing {
    /// The key that picks its partition.
    fn key(&self) -> &str;
    /// Its `action_id`.
    fn action_id(&self) -> &str;
    /// Its trigger.
    fn trigger(&self) -> &str;
    /// Treatment or control.
    fn group(&self) -> Group;
    /// Where it goes.
    fn topic(&self) -> OutputTopic;
    /// Sets `emitted_at`.
    fn stamp(&mut self, now: Timestamp);
    /// Appends its record's JSON to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);
    /// Adds it to SQL's `actions` table.
    fn record(&self, table: &mut footfall_sql::Tables);
    /// The action itself (a sample for reports).
    fn to_action(&self) -> Action;
}

impl Outgoing for Action {
    fn key(&self) -> &str {
        match self.route.as_str() {
            "" => self
                .customer_id
                .as_deref()
                .or(self.store_id.as_deref())
                .unwrap_or(""),
            route => route,
        }
    }
    fn action_id(&self) -> &str {
        &self.action_id
    }
    fn trigger(&self) -> &str {
        &self.trigger
    }
    fn group(&self) -> Group {
        self.group
    }
    fn topic(&self) -> OutputTopic {
        self.topic
    }
    fn stamp(&mut self, now: Timestamp) {
        self.emitted_at = Some(now);
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        encode(buf, self);
    }
    fn record(&self, table: &mut footfall_sql::Tables) {
        table.append_action(self.topic.name(), self, None);
    }
    fn to_action(&self) -> Action {
        self.clone()
    }
}

/// The policies write an action to its customer's partition.
impl Outgoing for Packed {
    fn key(&self) -> &str {
        self.customer_id().unwrap_or("")
    }
    fn action_id(&self) -> &str {
        Packed::action_id(self)
    }
    fn trigger(&self) -> &str {
        Packed::trigger(self)
    }
    fn group(&self) -> Group {
        self.group
    }
    fn topic(&self) -> OutputTopic {
        self.topic
    }
    fn stamp(&mut self, now: Timestamp) {
        self.emitted_at = Some(now);
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        Packed::encode(self, buf);
    }
    fn record(&self, table: &mut footfall_sql::Tables) {
        table.append_packed(self.topic.name(), self, None, None);
    }
    fn to_action(&self) -> Action {
        self.unpack()
    }
}

/// Appends `record`'s JSON to `buf`: the bytes `serde_json` writes, by sonic-rs's
/// faster string escaping (a test holds the two to the same output).
pub(super) fn encode<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, record: &T) {
    // Serializing structs of strings, numbers and JSON values cannot fail.
    let _ = sonic_rs::to_writer(&mut *buf, record);
}

#[cfg(test)]
mod tests {
    use footfall_operators::action::{Action, OutputTopic};
    use footfall_operators::policy::{Reason, Suppression};
    use footfall_operators::time::Timestamp;
    use footfall_sql::{Engine, Limits, Retention, Tables};

    use super::*;
    use crate::log::{Log, LogConfig};

    #[tokio::test]
    async fn a_shared_worker_writes_only_its_own_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let topics = Topics::Log(log.clone());
        let me = Assignment::new(1, 2).unwrap();
        let sinks = Sinks::open_share(&topics, 4, 1, None, me).await.unwrap();
        let at = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        let mut actions: Vec<Action> = (0..40)
            .map(|i| {
                let key = format!("m-{i}");
                let mut a =
                    Action::new("abandoned_cart", "1", &key, at, OutputTopic::Notifications);
                a.customer_id = Some(key);
                a
            })
            .collect();
        let mine = actions
            .iter()
            .filter(|a| me.owns(partition_for(a.customer_id.as_deref().unwrap(), 4)))
            .count();
        assert!(mine > 0 && mine < 40);
        let new = sinks.write_actions(&mut actions, &mut Vec::new()).unwrap();
        assert_eq!(
            new, mine,
            "only the actions of partitions 1 and 3 are written"
        );
        // Dead letters of input partition 0 are worker 0's to write.
        let dead = DeadLetter {
            topic: "clickstream".into(),
            partition: 0,
            offset: 7,
            reason: "invalid_json",
            error: "bad".into(),
            raw: Some("x".into()),
            raw_base64: None,
            received_at: at,
        };
        sinks
            .write_deadletters(0, std::slice::from_ref(&dead))
            .unwrap();
        sinks.write_deadletters(1, &[dead]).unwrap();
        for p in 0..4 {
            let mut r = log.reader("notifications", p, 0).unwrap();
            let mut batch = crate::log::Batch::default();
            let n = r.poll(&mut batch, 100, 1 << 20).unwrap();
            assert_eq!(n > 0, me.owns(p), "notifications/{p}");
            let mut r = log.reader("deadletter", p, 0).unwrap();
            assert_eq!(
                r.poll(&mut batch, 100, 1 << 20).unwrap(),
                usize::from(p == 1)
            );
        }
        // Another worker's partitions: its own checkpoints say where they stand.
        let positions = sinks.positions();
        let (_, ends) = positions
            .iter()
            .find(|(t, _)| t == "notifications")
            .unwrap();
        assert_eq!(ends[0], 0);
        assert!(ends[1] > 0 || ends[3] > 0);
    }

    #[test]
    fn records_are_encoded_as_serde_json_encodes_them() {
        let at = Timestamp::parse_rfc3339("2026-11-20T10:00:00.123456789Z").unwrap();
        let mut a = Action::new("weather_promo", "3", "m-1", at, OutputTopic::Notifications);
        a.customer_id = Some("m-1".into());
        a.reason = "r\u{e9}gen \"heavy\" \\ \n\t\u{1}\u{1f}\u{7f}\u{2028} \u{1F600}".into();
        a.payload = serde_json::json!({
            "floats": [0.1, 3.0, 1e21, -0.0, 123456.789, 1e-7, 5e-324, f64::MAX, 1e15, 1e16],
            "ints": [0, -42, u64::MAX, i64::MIN],
            "text": "caf\u{e9} </script> \u{0}",
            "nested": {"z": null, "a": true, "m": [{}, []]},
        });
        let s = Suppression {
            action: Packed::new(&a),
            reason: Reason::FrequencyCap,
            detail:
                "push cap 1/day reached: 1 already sent in local day 2026-11-20 (Asia/Shanghai)"
                    .into(),
            at,
        };
        let c = footfall_operators::policy::Conversion {
            conversion_id: "c".into(),
            action_id: a.action_id.clone(),
            trigger: a.trigger.clone(),
            group: a.group,
            customer_id: "m-1".into(),
            fired_at: at,
            transaction_id: "o-1".into(),
            purchased_at: at,
            value: "1234.50".parse().unwrap(),
            currency: None,
        };
        fn ours<T: serde::Serialize>(record: &T) -> String {
            let mut buf = Vec::new();
            encode(&mut buf, record);
            String::from_utf8(buf).unwrap()
        }
        assert_eq!(ours(&a), serde_json::to_string(&a).unwrap());
        assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        assert_eq!(ours(&c), serde_json::to_string(&c).unwrap());
        // The policies' packed action and its suppression give the same bytes.
        let fast = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut buf = Vec::new();
            f(&mut buf);
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(fast(&|b| Packed::new(&a).encode(b)), ours(&a));
        assert_eq!(fast(&|b| s.encode(b)), ours(&s));
    }

    #[tokio::test]
    async fn written_actions_and_suppressions_reach_the_actions_table_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let mut sinks = Sinks::open(&Topics::Log(log), 2, 1, None).await.unwrap();
        let table = Arc::new(Mutex::new(Tables::new(Retention::default())));
        sinks.record_to(table.clone());
        let at = Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        let mut sent = Action::new("abandoned_cart", "1", "m-1", at, OutputTopic::Notifications);
        sent.customer_id = Some("m-1".into());
        let mut buf = Vec::new();
        assert_eq!(
            sinks.write_actions(&mut [sent.clone()], &mut buf).unwrap(),
            1
        );
        // Written once: a second write of the same action_id is not recorded again.
        assert_eq!(sinks.write_actions(&mut [sent], &mut buf).unwrap(), 0);
        let mut stopped = Action::new("birthday", "1", "m-2", at, OutputTopic::Notifications);
        stopped.customer_id = Some("m-2".into());
        sinks.record_suppressions(&[Suppression {
            action: stopped.into(),
            reason: Reason::NoConsent,
            detail: "no consent for push on record".into(),
            at,
        }]);

        let snapshot = {
            let mut t = table.lock().unwrap();
            t.seal();
            t.snapshot()
        };
        let answer = Engine::new(snapshot, Limits::default())
            .query(
                "SELECT topic, trigger, customer_id, reason, detail FROM actions ORDER BY trigger",
            )
            .await
            .unwrap();
        let rows = footfall_sql::format::json_rows(&answer).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0]["topic"], "notifications");
        assert_eq!(rows[0]["trigger"], "abandoned_cart");
        assert_eq!(rows[1]["topic"], "suppressions");
        assert_eq!(rows[1]["customer_id"], "m-2");
        assert_eq!(rows[1]["reason"], "no_consent");
        assert_eq!(rows[1]["detail"], "no consent for push on record");
    }
}

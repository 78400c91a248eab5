//! A checkpoint's content and its Arrow encoding.
//!
//! Every file has the schema `(section: Utf8, key: Utf8, value: Binary)`: one row per
//! key of each kind of state, so `footfall checkpoint inspect` can count keys and bytes
//! per operator without knowing their types. Values are postcard-encoded, uncompressed.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, GenericByteBuilder, StringBuilder};
use arrow_array::types::ByteArrayType;
use arrow_array::{Array, BinaryArray, RecordBatch, StringArray};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use footfall_operators::event::Str;
use footfall_operators::state::{EncodedState, StateImage};
use footfall_operators::time::Timestamp;
use footfall_operators::worker::{SavedTimer, Snapshot};

use crate::runtime::dedupe::Chunks;
use serde::{Deserialize, Serialize};

/// One input partition's position and the sequencer's state about it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceState {
    /// Topic name.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to read: every record before it is reflected in the checkpoint.
    pub next_offset: u64,
    /// The largest event time read (the partition's watermark before lateness).
    pub max_ts: Option<Timestamp>,
    /// Offsets of events read but still held for the clock: re-read on recovery.
    pub held: Vec<u64>,
    /// The `message_id` dedupe window: hourly buckets of id hashes, in chunks.
    pub dedupe: Vec<(i64, Chunks)>,
}

/// The sequencer's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SequencerState {
    /// The pipeline clock.
    pub clock: Timestamp,
    /// Per input partition.
    pub sources: Vec<SourceState>,
    /// Identity links: (anonymous id, customer, since).
    pub links: Vec<(Str, Str, Timestamp)>,
    /// Hashes of erased customers' keys (never the keys themselves).
    pub erased: Vec<u128>,
    /// Hard ids: (type, value, customer).
    pub hard: Vec<(Str, Str, Str)>,
}

/// Everything a checkpoint holds.
#[derive(Debug, Default)]
pub struct CheckpointData {
    /// The sequencer.
    pub sequencer: SequencerState,
    /// Every partition worker, by index.
    pub workers: Vec<Snapshot>,
}

#[derive(Serialize, Deserialize)]
struct SourceRow {
    next_offset: u64,
    max_ts: Option<i64>,
    held: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct TimerRow {
    due: i64,
    operator: Str,
    tag: u64,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("section", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, false),
    ]))
}

/// Rows per record batch.
const BATCH_ROWS: usize = 8_192;

/// Bytes of keys and values per record batch, at most (a dedupe chunk is one large
/// value). Small enough that a batch is built, encoded and written while its buffers
/// are still in the cache, and the allocator hands the same memory back for the next:
/// 4 MiB batches spent more time growing fresh buffers (copies and page faults) than
/// encoding rows.
const BATCH_BYTES: usize = 512 << 10;

/// Builds one Arrow IPC file from rows, written to `W` a record batch at a time.
struct Rows<W: Write> {
    writer: FileWriter<W>,
    section: StringBuilder,
    key: StringBuilder,
    value: BinaryBuilder,
    len: usize,
    bytes: usize,
    sizes: Vec<SectionSize>,
}

impl<W: Write> Rows<W> {
    fn new(out: W) -> Result<Self, ArrowError> {
        let (section, key, value) = columns();
        Ok(Rows {
            writer: FileWriter::try_new(out, &schema())?,
            section,
            key,
            value,
            len: 0,
            bytes: 0,
            sizes: Vec::new(),
        })
    }

    fn push(&mut self, section: &str, key: &str, value: &[u8]) -> Result<(), ArrowError> {
        self.section.append_value(section);
        self.key.append_value(key);
        self.value.append_value(value);
        self.len += 1;
        self.bytes += key.len() + value.len();
        SectionSize::add(
            &mut self.sizes,
            section,
            1,
            (key.len() + value.len()) as u64,
        );
        if self.len == BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ArrowError> {
        if self.len == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.section.finish()),
                Arc::new(self.key.finish()),
                Arc::new(self.value.finish()),
            ],
        )?;
        self.writer.write(&batch)?;
        // `finish` left the builders empty, without capacity.
        (self.section, self.key, self.value) = columns();
        self.len = 0;
        self.bytes = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<(W, Vec<SectionSize>), ArrowError> {
        self.flush()?;
        self.writer.finish()?;
        Ok((self.writer.into_inner()?, self.sizes))
    }
}

/// A batch's column builders (section, key, value), sized for it.
fn columns() -> (StringBuilder, StringBuilder, BinaryBuilder) {
    (sized(SECTION_BYTES), sized(BATCH_BYTES), sized(BATCH_BYTES))
}

/// A column builder sized for a batch of `bytes` (with room for the row that ends it).
fn sized<T: ByteArrayType>(bytes: usize) -> GenericByteBuilder<T> {
    GenericByteBuilder::with_capacity(BATCH_ROWS, bytes + (bytes >> 3))
}

/// Bytes of section names per batch, about: short names, one per row.
const SECTION_BYTES: usize = BATCH_ROWS * 16;

fn pc<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of numbers and strings always encode.
    postcard::to_allocvec(v).unwrap_or_default()
}

/// [`pc`] into `buf`, reused from row to row.
fn pc_into<'a, T: Serialize>(v: &T, buf: &'a mut Vec<u8>) -> &'a [u8] {
    buf.clear();
    // Plain structs of numbers and strings always encode.
    if let Ok(b) = postcard::to_extend(v, std::mem::take(buf)) {
        *buf = b;
    }
    buf
}

/// Encodes the sequencer's state as one Arrow IPC file.
pub(super) fn encode_sequencer<W: Write>(
    s: &SequencerState,
    out: W,
) -> Result<(W, Vec<SectionSize>), ArrowError> {
    let mut rows = Rows::new(out)?;
    rows.push("clock", "", &s.clock.as_nanos().to_le_bytes())?;
    for src in &s.sources {
        let key = format!("{}/{}", src.topic, src.partition);
        let row = SourceRow {
            next_offset: src.next_offset,
            max_ts: src.max_ts.map(|t| t.as_nanos()),
            held: src.held.clone(),
        };
        rows.push("source", &key, &pc(&row))?;
        // One row per chunk: the hour, then the hashes, 16 bytes each, little-endian.
        let mut buf = Vec::new();
        for (hour, chunks) in &src.dedupe {
            for c in chunks {
                buf.clear();
                buf.extend_from_slice(&hour.to_le_bytes());
                for h in c.iter() {
                    buf.extend_from_slice(&h.to_le_bytes());
                }
                rows.push("dedupe", &key, &buf)?;
            }
        }
    }
    let mut buf = Vec::new();
    for (anon, user, since) in &s.links {
        let row = pc_into(&(user.as_str(), since.as_nanos()), &mut buf);
        rows.push("link", anon, row)?;
    }
    for h in &s.erased {
        rows.push("erased", &format!("{h:032x}"), &[])?;
    }
    let mut key = String::new();
    for (t, value, user) in &s.hard {
        key.clear();
        key.push_str(t);
        key.push(':');
        key.push_str(value);
        rows.push("hard", &key, pc_into(&user.as_str(), &mut buf))?;
    }
    rows.finish()
}

/// Encodes one worker's state as one Arrow IPC file.
pub(super) fn encode_worker<W: Write>(
    w: &Snapshot,
    out: W,
) -> Result<(W, Vec<SectionSize>), ArrowError> {
    let mut rows = Rows::new(out)?;
    rows.push("clock", "", &w.clock.as_nanos().to_le_bytes())?;
    for t in &w.timers {
        let row = TimerRow {
            due: t.due.as_nanos(),
            operator: t.operator.clone(),
            tag: t.tag,
        };
        rows.push("timer", &t.key, &pc(&row))?;
    }
    for (key, at) in &w.touched {
        rows.push("touched", key, &at.as_nanos().to_le_bytes())?;
    }
    for (op, image) in &w.operators {
        let section = format!("state/{op}");
        let mut failed = None;
        image.encode(&mut |key, bytes| {
            if failed.is_none()
                && let Err(e) = rows.push(&section, key, bytes)
            {
                failed = Some(e);
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    rows.finish()
}

/// Reads an IPC file's rows, calling `f(section, key, value)` for each.
pub(super) fn for_each_row(
    bytes: &[u8],
    mut f: impl FnMut(&str, &str, &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| format!("not an Arrow IPC file: {e}"))?;
    for batch in reader {
        let batch = batch.map_err(|e| format!("unreadable record batch: {e}"))?;
        let col = |i: usize| batch.column(i).clone();
        let (section, key, value) = (col(0), col(1), col(2));
        let section = section
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("column `section` is not Utf8")?;
        let key = key
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or("column `key` is not Utf8")?;
        let value = value
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or("column `value` is not Binary")?;
        for i in 0..batch.num_rows() {
            f(section.value(i), key.value(i), value.value(i))?;
        }
    }
    Ok(())
}

/// Rows and bytes (key plus value) of one section of a checkpoint file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionSize {
    /// `state/<operator>`, `timer`, `touched`, `source`, `dedupe`, `link`, `erased`, `clock`.
    pub section: String,
    /// Rows: keys, for state.
    pub rows: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

impl SectionSize {
    /// Adds `rows` and `bytes` to `section`'s entry in `sizes`, creating it if missing.
    pub fn add(sizes: &mut Vec<SectionSize>, section: &str, rows: u64, bytes: u64) {
        match sizes.iter_mut().rev().find(|s| s.section == section) {
            Some(s) => {
                s.rows += rows;
                s.bytes += bytes;
            }
            None => sizes.push(SectionSize {
                section: section.to_owned(),
                rows,
                bytes,
            }),
        }
    }
}

/// The sections of one checkpoint file, in order of first appearance.
pub fn section_sizes(bytes: &[u8]) -> Result<Vec<SectionSize>, String> {
    let mut out: Vec<SectionSize> = Vec::new();
    for_each_row(bytes, |section, key, v| {
        SectionSize::add(&mut out, section, 1, (key.len() + v.len()) as u64);
        Ok(())
    })?;
    Ok(out)
}

fn nanos(v: &[u8]) -> Result<Timestamp, String> {
    let b: [u8; 8] = v.try_into().map_err(|_| "a clock is 8 bytes")?;
    Ok(Timestamp::from_nanos(i64::from_le_bytes(b)))
}

fn un<'a, T: Deserialize<'a>>(what: &str, v: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(v).map_err(|e| format!("{what}: {e}"))
}

/// Decodes a `sequencer.arrow`.
pub(super) fn decode_sequencer(bytes: &[u8]) -> Result<SequencerState, String> {
    let mut s = SequencerState::default();
    for_each_row(bytes, |section, key, v| {
        match section {
            "clock" => s.clock = nanos(v)?,
            "source" => {
                let row: SourceRow = un("source", v)?;
                let (topic, part) = key
                    .rsplit_once('/')
                    .ok_or("source key is topic/partition")?;
                s.sources.push(SourceState {
                    topic: topic.to_owned(),
                    partition: part.parse().map_err(|_| "bad partition")?,
                    next_offset: row.next_offset,
                    max_ts: row.max_ts.map(Timestamp::from_nanos),
                    held: row.held,
                    dedupe: Vec::new(),
                });
            }
            "dedupe" => {
                if v.len() < 8 || (v.len() - 8) % 16 != 0 {
                    return Err("a dedupe row is an hour and 16-byte hashes".into());
                }
                let (hour, ids) = v.split_at(8);
                let hour = i64::from_le_bytes(hour.try_into().map_err(|_| "hour")?);
                let ids: Vec<u128> = ids
                    .chunks_exact(16)
                    .map(|b| u128::from_le_bytes(b.try_into().unwrap_or_default()))
                    .collect();
                let (topic, part) = key
                    .rsplit_once('/')
                    .ok_or("dedupe key is topic/partition")?;
                let src = s
                    .sources
                    .iter_mut()
                    .rev()
                    .find(|x| x.topic == topic && x.partition.to_string() == part)
                    .ok_or("dedupe row before its source")?;
                match src.dedupe.last_mut() {
                    Some((h, chunks)) if *h == hour => chunks.push(Arc::new(ids)),
                    _ => src.dedupe.push((hour, vec![Arc::new(ids)])),
                }
            }
            "link" => {
                let (user, since): (&str, i64) = un("link", v)?;
                s.links
                    .push((key.into(), user.into(), Timestamp::from_nanos(since)));
            }
            "erased" => s
                .erased
                .push(u128::from_str_radix(key, 16).map_err(|_| "an erased key is 32 hex digits")?),
            "hard" => {
                let user: &str = un("hard", v)?;
                let (t, value) = key.split_once(':').ok_or("a hard id row is type:value")?;
                s.hard.push((t.into(), value.into(), user.into()));
            }
            other => return Err(format!("unknown section {other:?}")),
        }
        Ok(())
    })?;
    Ok(s)
}

/// Decodes a `worker-N.arrow`.
pub(super) fn decode_worker(bytes: &[u8]) -> Result<Snapshot, String> {
    let mut w = Snapshot::default();
    let mut ops: Vec<(String, EncodedState)> = Vec::new();
    for_each_row(bytes, |section, key, v| {
        if section == "clock" {
            w.clock = nanos(v)?;
        } else if section == "timer" {
            let row: TimerRow = un("timer", v)?;
            w.timers.push(SavedTimer {
                due: Timestamp::from_nanos(row.due),
                operator: row.operator,
                key: key.into(),
                tag: row.tag,
            });
        } else if section == "touched" {
            w.touched.push((key.into(), nanos(v)?));
        } else if let Some(op) = section.strip_prefix("state/") {
            match ops.last_mut() {
                Some((name, keys)) if name == op => keys.0.push((key.into(), v.to_vec())),
                _ => ops.push((op.to_owned(), EncodedState(vec![(key.into(), v.to_vec())]))),
            }
        } else {
            return Err(format!("unknown section {section:?}"));
        }
        Ok(())
    })?;
    w.operators = ops
        .into_iter()
        .map(|(name, keys)| (name, Box::new(keys) as Box<dyn StateImage>))
        .collect();
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequencer_and_worker_state_round_trip() {
        let t = Timestamp::from_secs(1_800_000_000);
        let seq = SequencerState {
            clock: t,
            sources: vec![SourceState {
                topic: "clickstream".into(),
                partition: 3,
                next_offset: 42,
                max_ts: Some(t),
                held: vec![40, 41],
                dedupe: vec![
                    (
                        500_000,
                        vec![Arc::new(vec![1, u128::MAX]), Arc::new(vec![7])],
                    ),
                    (500_001, vec![Arc::new(vec![2])]),
                ],
            }],
            links: vec![("dev-1".into(), "m-1".into(), t)],
            erased: vec![0, u128::MAX],
            hard: vec![("email_sha256".into(), "e-hash".into(), "m-1".into())],
        };
        assert_eq!(
            decode_sequencer(&encode_sequencer(&seq, Vec::new()).unwrap().0).unwrap(),
            seq
        );

        let w = Snapshot {
            clock: t,
            timers: vec![SavedTimer {
                due: t,
                operator: "abandoned_cart".into(),
                key: "m-1".into(),
                tag: 7,
            }],
            operators: vec![(
                "abandoned_cart".into(),
                Box::new(EncodedState(vec![("m-1".into(), vec![1, 2, 3])])),
            )],
            touched: vec![("m-1".into(), t)],
        };
        let (bytes, sizes) = encode_worker(&w, Vec::new()).unwrap();
        let state = sizes.iter().find(|s| s.section == "state/abandoned_cart");
        assert_eq!(state.map(|s| (s.rows, s.bytes)), Some((1, 6)));
        let back = decode_worker(&bytes).unwrap();
        assert_eq!(back.clock, w.clock);
        assert_eq!(back.timers, w.timers);
        let rows = |s: &Snapshot| {
            let mut rows = Vec::new();
            for (op, image) in &s.operators {
                image.encode(&mut |k, v| rows.push((op.clone(), k.to_owned(), v.to_vec())));
            }
            rows
        };
        assert_eq!(rows(&back), rows(&w));
        assert_eq!(back.touched, w.touched);
    }

    #[test]
    fn state_of_many_batches_round_trips_in_order() {
        // More rows than one batch holds, and one value larger than a batch's bytes.
        let n = BATCH_ROWS * 2 + 17;
        let mut rows: Vec<(Str, Vec<u8>)> = (0..n)
            .map(|i| {
                (
                    Str::from(format!("m-{i:07}")),
                    (i as u32).to_le_bytes().to_vec(),
                )
            })
            .collect();
        rows[BATCH_ROWS + 3].1 = vec![7; BATCH_BYTES * 2];
        let w = Snapshot {
            operators: vec![("policy".into(), Box::new(EncodedState(rows.clone())))],
            ..Snapshot::default()
        };
        let (bytes, sizes) = encode_worker(&w, Vec::new()).unwrap();
        let state = sizes.iter().find(|s| s.section == "state/policy");
        assert_eq!(state.map(|s| s.rows), Some(n as u64));
        let mut batches = 0;
        let reader = FileReader::try_new(std::io::Cursor::new(&bytes), None).unwrap();
        for batch in reader {
            assert!(batch.unwrap().num_rows() <= BATCH_ROWS);
            batches += 1;
        }
        assert!(batches >= 3, "{batches} record batches");
        let mut back = Vec::new();
        for (_, image) in &decode_worker(&bytes).unwrap().operators {
            image.encode(&mut |k, v| back.push((Str::from(k), v.to_vec())));
        }
        assert_eq!(back, rows);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_worker(b"not arrow").is_err());
        let good = encode_worker(&Snapshot::default(), Vec::new()).unwrap().0;
        assert!(decode_worker(&good[..good.len() / 2]).is_err());
    }
}

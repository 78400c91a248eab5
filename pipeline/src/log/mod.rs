//! The embedded log: durable, partitioned topics in a data directory.
//!
//! ```text
//! <data_dir>/<topic>/topic.json                  {"partitions": 4}
//! <data_dir>/<topic>/<partition>/<base>.seg      append-only segments (see `segment`)
//! <data_dir>/<topic>/<partition>/.lock           held by the one writer
//! ```
//! One writer per partition (an exclusive file lock, across processes); any number of
//! readers, which tail the files and so see appends from other processes too. Opening a
//! writer recovers the partition: a torn or corrupt tail of the newest segment is
//! truncated, so it is never served.

pub mod segment;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tracing::{info, warn};

use segment::{FRAME_HEADER, Frame, MAGIC};

/// Errors of the embedded log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored record is damaged somewhere other than a recoverable tail.
    #[error("{topic}/{partition} at offset {offset}: corrupt record ({detail})")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// First offset that cannot be read.
        offset: u64,
        /// What is wrong.
        detail: &'static str,
    },
    /// Another process is writing the partition.
    #[error("{topic}/{partition} is being written by another process (lock {path} is held)")]
    Locked {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// The topic does not exist in the data directory.
    #[error("no topic `{topic}` in {dir}")]
    NoSuchTopic {
        /// Topic.
        topic: String,
        /// Data directory.
        dir: PathBuf,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// When appended data is forced to disk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// After every flushed batch: nothing acknowledged is lost on power failure.
    Always,
    /// At most `fsync_interval_ms` after a write, and at every roll and close.
    #[default]
    Interval,
    /// Left to the OS (still flushed at roll and close).
    Never,
}

/// `[log]`: the embedded log's storage settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A segment is closed and a new one started past this size, bytes.
    pub segment_bytes: u64,
    /// Per partition, the oldest closed segments are deleted past this total, bytes
    /// (0: no size limit).
    pub retention_bytes: u64,
    /// Closed segments whose newest record is older than this are deleted, hours
    /// (0: no age limit).
    pub retention_hours: u64,
    /// When appended data is forced to disk.
    pub fsync: Fsync,
    /// For `fsync = "interval"`, milliseconds.
    pub fsync_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 64 << 20,
            retention_bytes: 0,
            retention_hours: 168,
            fsync: Fsync::Interval,
            fsync_interval_ms: 1000,
        }
    }
}

#[derive(serde::Serialize, Deserialize)]
struct TopicMeta {
    partitions: u32,
}

/// A data directory of topics.
#[derive(Clone, Debug)]
pub struct Log {
    dir: PathBuf,
    cfg: LogConfig,
}

impl Log {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: impl Into<PathBuf>, cfg: LogConfig) -> Result<Self, LogError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(Log { dir, cfg })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir.join(topic).join(partition.to_string())
    }

    /// The partition count of `topic`, if it exists.
    pub fn partitions(&self, topic: &str) -> Result<Option<u32>, LogError> {
        let path = self.dir.join(topic).join("topic.json");
        match fs::read(&path) {
            Ok(bytes) => {
                let meta: TopicMeta = serde_json::from_slice(&bytes).map_err(|e| LogError::Io {
                    op: "parse",
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
                Ok(Some(meta.partitions))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Creates `topic` with `partitions` partitions, or returns its existing count.
    pub fn create_topic(&self, topic: &str, partitions: u32) -> Result<u32, LogError> {
        if let Some(n) = self.partitions(topic)? {
            return Ok(n);
        }
        let partitions = partitions.max(1);
        for p in 0..partitions {
            let d = self.partition_dir(topic, p);
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        let path = self.dir.join(topic).join("topic.json");
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(&TopicMeta { partitions }).unwrap_or_default();
        fs::write(&tmp, body).map_err(io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        Ok(partitions)
    }

    /// Every topic in the data directory, by name.
    pub fn topics(&self) -> Result<Vec<String>, LogError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let entry = entry.map_err(io("list", &self.dir))?;
            if entry.path().join("topic.json").exists() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens the single writer of `topic`/`partition`, recovering its tail.
    pub fn writer(&self, topic: &str, partition: u32) -> Result<PartitionWriter, LogError> {
        PartitionWriter::open(self, topic, partition)
    }

    /// A reader of `topic`/`partition` starting at `offset` (or the oldest retained record).
    pub fn reader(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<PartitionReader, LogError> {
        if self.partitions(topic)?.is_none() {
            return Err(LogError::NoSuchTopic {
                topic: topic.to_owned(),
                dir: self.dir.clone(),
            });
        }
        PartitionReader::open(self, topic, partition, offset)
    }

    /// Bytes stored for `topic`/`partition` (a cheap size hint: no file is read).
    pub fn stored_bytes(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let dir = self.partition_dir(topic, partition);
        let mut total = 0;
        for b in segments(&dir)? {
            let p = dir.join(segment::file_name(b));
            total += fs::metadata(&p).map_err(io("stat", &p))?.len();
        }
        Ok(total)
    }

    /// The offset after the last complete record of `topic`/`partition`.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, LogError> {
        let dir = self.partition_dir(topic, partition);
        let segs = segments(&dir)?;
        let Some(&last) = segs.last() else {
            return Ok(0);
        };
        let path = dir.join(segment::file_name(last));
        let f = File::open(&path).map_err(io("open", &path))?;
        let s = segment::scan(std::io::BufReader::new(f)).map_err(io("read", &path))?;
        Ok(last + s.records)
    }
}

/// The base offsets of a partition's segments, oldest first.
fn segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bases),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io("list", dir))?;
        if let Some(b) = segment::parse_file_name(&entry.file_name().to_string_lossy()) {
            bases.push(b);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// The one writer of a partition.
pub struct PartitionWriter {
    topic: String,
    partition: u32,
    dir: PathBuf,
    cfg: LogConfig,
    file: File,
    base: u64,
    seg_len: u64,
    next_offset: u64,
    pending: Vec<u8>,
    pending_records: u64,
    unsynced: bool,
    last_sync: Instant,
    _lock: File,
}

impl PartitionWriter {
    fn open(log: &Log, topic: &str, partition: u32) -> Result<Self, LogError> {
        let dir = log.partition_dir(topic, partition);
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked {
                topic: topic.to_owned(),
                partition,
                path: lock_path,
            });
        }
        let segs = segments(&dir)?;
        let (base, file, seg_len, next_offset) = match segs.last() {
            None => {
                let (f, len) = new_segment(&dir, 0)?;
                (0, f, len, 0)
            }
            Some(&base) => {
                let path = dir.join(segment::file_name(base));
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(io("open", &path))?;
                let scan = segment::scan(std::io::BufReader::new(&f)).map_err(io("read", &path))?;
                if let Some((bytes, why)) = scan.tail {
                    warn!(
                        topic,
                        partition,
                        offset = base + scan.records,
                        bytes,
                        reason = why,
                        "truncating the damaged tail of the log after an unclean stop"
                    );
                    if scan.valid_len == 0 {
                        f.set_len(0).map_err(io("truncate", &path))?;
                        f.write_all(MAGIC).map_err(io("write", &path))?;
                    } else {
                        f.set_len(scan.valid_len).map_err(io("truncate", &path))?;
                    }
                    f.sync_all().map_err(io("sync", &path))?;
                }
                let len = scan.valid_len.max(MAGIC.len() as u64);
                f.seek(SeekFrom::Start(len)).map_err(io("seek", &path))?;
                (base, f, len, base + scan.records)
            }
        };
        Ok(PartitionWriter {
            topic: topic.to_owned(),
            partition,
            dir,
            cfg: log.cfg.clone(),
            file,
            base,
            seg_len,
            next_offset,
            pending: Vec::with_capacity(1 << 20),
            pending_records: 0,
            unsynced: false,
            last_sync: Instant::now(),
            _lock: lock,
        })
    }

    /// The offset the next appended record gets.
    pub fn next_offset(&self) -> u64 {
        self.next_offset + self.pending_records
    }

    /// Appends one record (buffered until [`flush`](Self::flush) or the buffer fills).
    /// Returns its offset.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let frame = (FRAME_HEADER + payload.len()) as u64;
        if self.seg_len + self.pending.len() as u64 + frame > self.cfg.segment_bytes
            && self.seg_len + self.pending.len() as u64 > MAGIC.len() as u64
        {
            self.write_pending()?;
            self.roll()?;
        }
        let offset = self.next_offset();
        segment::encode_frame(&mut self.pending, payload);
        self.pending_records += 1;
        if self.pending.len() >= 1 << 20 {
            self.write_pending()?;
        }
        Ok(offset)
    }

    fn write_pending(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.segment_path();
        self.file
            .write_all(&self.pending)
            .map_err(io("write", &path))?;
        self.seg_len += self.pending.len() as u64;
        self.next_offset += self.pending_records;
        self.pending.clear();
        self.pending_records = 0;
        self.unsynced = true;
        Ok(())
    }

    /// Writes buffered records to the file, so readers see them, and syncs per the policy.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.write_pending()?;
        let due = match self.cfg.fsync {
            Fsync::Always => true,
            Fsync::Interval => {
                self.last_sync.elapsed() >= Duration::from_millis(self.cfg.fsync_interval_ms)
            }
            Fsync::Never => false,
        };
        if due && self.unsynced {
            if self.cfg.fsync == Fsync::Always {
                self.sync()?;
            } else {
                // Off the caller's thread: an fsync can take milliseconds, and the caller is
                // a runtime thread that other partitions' work is waiting on.
                let path = self.segment_path();
                let handle = self.file.try_clone().map_err(io("dup", &path))?;
                background_sync(handle);
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
        }
        Ok(())
    }

    /// Writes and forces everything appended to disk.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.write_pending()?;
        let path = self.segment_path();
        self.file.sync_data().map_err(io("sync", &path))?;
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn segment_path(&self) -> PathBuf {
        self.dir.join(segment::file_name(self.base))
    }

    fn roll(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let (f, len) = new_segment(&self.dir, self.next_offset)?;
        self.file = f;
        self.base = self.next_offset;
        self.seg_len = len;
        info!(topic = %self.topic, partition = self.partition, base = self.base, "log segment rolled");
        self.enforce_retention()
    }

    /// Deletes the oldest closed segments beyond the size and age limits.
    pub fn enforce_retention(&mut self) -> Result<(), LogError> {
        let segs = segments(&self.dir)?;
        let closed: Vec<u64> = segs.into_iter().filter(|&b| b != self.base).collect();
        let mut sizes = Vec::with_capacity(closed.len());
        let mut total = self.seg_len;
        for &b in &closed {
            let p = self.dir.join(segment::file_name(b));
            let m = fs::metadata(&p).map_err(io("stat", &p))?;
            total += m.len();
            sizes.push((b, m.len(), m.modified().unwrap_or(SystemTime::now())));
        }
        let max_age = Duration::from_secs(self.cfg.retention_hours * 3600);
        for (b, len, modified) in sizes {
            let too_big = self.cfg.retention_bytes > 0 && total > self.cfg.retention_bytes;
            let too_old =
                self.cfg.retention_hours > 0 && modified.elapsed().unwrap_or_default() > max_age;
            if !(too_big || too_old) {
                break;
            }
            let p = self.dir.join(segment::file_name(b));
            fs::remove_file(&p).map_err(io("remove", &p))?;
            total -= len;
            info!(topic = %self.topic, partition = self.partition, base = b, "log segment removed by retention");
        }
        Ok(())
    }
}

impl Drop for PartitionWriter {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            warn!(topic = %self.topic, partition = self.partition, error = %e, "log flush on close failed");
        }
    }
}

/// Queues `file` for an fsync on the background syncer thread (started on first use).
fn background_sync(file: File) {
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Mutex, OnceLock};
    static SYNCER: OnceLock<Mutex<Sender<File>>> = OnceLock::new();
    let tx = SYNCER.get_or_init(|| {
        let (tx, rx) = channel::<File>();
        std::thread::Builder::new()
            .name("footfall-fsync".into())
            .spawn(move || {
                for f in rx {
                    if let Err(e) = f.sync_data() {
                        warn!(error = %e, "background fsync failed");
                    }
                }
            })
            .expect("spawn the fsync thread");
        Mutex::new(tx)
    });
    let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(file);
}

fn new_segment(dir: &Path, base: u64) -> Result<(File, u64), LogError> {
    let path = dir.join(segment::file_name(base));
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("create", &path))?;
    f.write_all(MAGIC).map_err(io("write", &path))?;
    Ok((f, MAGIC.len() as u64))
}

/// A batch of records read from one partition, in one buffer.
#[derive(Default)]
pub struct Batch {
    /// Offset of the first record.
    pub first_offset: u64,
    data: Vec<u8>,
    spans: Vec<(u32, u32)>,
}

impl Batch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// (offset, payload) of each record.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.spans.iter().enumerate().map(|(i, &(s, l))| {
            (
                self.first_offset + i as u64,
                &self.data[s as usize..(s + l) as usize],
            )
        })
    }
}

/// A reader of one partition: reads forward from an offset, tailing new appends.
pub struct PartitionReader {
    topic: String,
    partition: u32,
    dir: PathBuf,
    base: u64,
    file: Option<File>,
    /// Unparsed bytes read from `file`.
    buf: Vec<u8>,
    start: usize,
    next_offset: u64,
}

const READ_CHUNK: usize = 256 << 10;

impl PartitionReader {
    fn open(log: &Log, topic: &str, partition: u32, offset: u64) -> Result<Self, LogError> {
        let dir = log.partition_dir(topic, partition);
        let mut r = PartitionReader {
            topic: topic.to_owned(),
            partition,
            dir,
            base: 0,
            file: None,
            buf: Vec::with_capacity(READ_CHUNK * 2),
            start: 0,
            next_offset: 0,
        };
        let segs = segments(&r.dir)?;
        let Some(&first) = segs.first() else {
            return Ok(r);
        };
        let base = segs
            .iter()
            .rev()
            .find(|&&b| b <= offset)
            .copied()
            .unwrap_or(first);
        r.open_segment(base)?;
        // Skip forward to `offset` within the segment.
        let mut skip = Batch::default();
        while r.next_offset < offset {
            let want = (offset - r.next_offset).min(4096) as usize;
            if r.poll(&mut skip, want, usize::MAX)? == 0 {
                break;
            }
        }
        Ok(r)
    }

    fn open_segment(&mut self, base: u64) -> Result<(), LogError> {
        let path = self.dir.join(segment::file_name(base));
        let mut f = File::open(&path).map_err(io("open", &path))?;
        let mut magic = [0u8; MAGIC.len()];
        let n = read_full(&mut f, &mut magic).map_err(io("read", &path))?;
        if n == MAGIC.len() && &magic != MAGIC {
            return Err(self.corrupt("bad segment header"));
        }
        if n < MAGIC.len() {
            // Being created: re-read the header next time.
            f.seek(SeekFrom::Start(0)).map_err(io("seek", &path))?;
        }
        self.file = Some(f);
        self.base = base;
        self.next_offset = base;
        self.buf.clear();
        self.start = 0;
        Ok(())
    }

    fn corrupt(&self, detail: &'static str) -> LogError {
        LogError::Corrupt {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.next_offset,
            detail,
        }
    }

    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// Reads up to `max_records` records (and about `max_bytes`) into `batch`, replacing its
    /// contents. Returns how many; 0 means nothing more is there yet.
    pub fn poll(
        &mut self,
        batch: &mut Batch,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<usize, LogError> {
        batch.data.clear();
        batch.spans.clear();
        batch.first_offset = self.next_offset;
        loop {
            // Parse what is buffered.
            while batch.spans.len() < max_records && batch.data.len() < max_bytes {
                match segment::parse_frame(&self.buf[self.start..]) {
                    Frame::Ok { len } => {
                        let p = self.start + FRAME_HEADER;
                        let at = batch.data.len() as u32;
                        batch.data.extend_from_slice(&self.buf[p..p + len]);
                        batch.spans.push((at, len as u32));
                        self.start = p + len;
                        self.next_offset += 1;
                    }
                    Frame::Incomplete => break,
                    Frame::Corrupt(why) => return Err(self.corrupt(why)),
                }
            }
            if !batch.spans.is_empty() {
                return Ok(batch.spans.len());
            }
            // Need more bytes: read from the current segment, or move to the next one.
            if self.file.is_none() {
                let segs = segments(&self.dir)?;
                match segs.first() {
                    Some(&b) => self.open_segment(b)?,
                    None => return Ok(0),
                }
            }
            self.buf.drain(..self.start);
            self.start = 0;
            let old = self.buf.len();
            self.buf.resize(old + READ_CHUNK, 0);
            let n = match self.file.as_mut() {
                Some(f) => f.read(&mut self.buf[old..]),
                None => Ok(0),
            };
            let path = self.dir.join(segment::file_name(self.base));
            let n = n.map_err(io("read", &path))?;
            self.buf.truncate(old + n);
            if n > 0 {
                continue;
            }
            // End of this segment's file for now. If a newer segment starts where we are,
            // this one is closed: move on. Otherwise the writer has not appended more yet.
            let next = self.dir.join(segment::file_name(self.next_offset));
            if self.next_offset != self.base && next.exists() {
                if self.buf.len() > self.start {
                    return Err(self.corrupt("torn frame in a closed segment"));
                }
                self.open_segment(self.next_offset)?;
                continue;
            }
            return Ok(0);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path, segment_bytes: u64) -> Log {
        Log::open(
            dir,
            LogConfig {
                segment_bytes,
                ..LogConfig::default()
            },
        )
        .unwrap()
    }

    fn read_all(log: &Log, topic: &str, p: u32, from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut r = log.reader(topic, p, from).unwrap();
        let mut b = Batch::default();
        let mut out = Vec::new();
        // Stops at the end, or at a record that cannot be served.
        while let Ok(n) = r.poll(&mut b, 100, 1 << 20) {
            if n == 0 {
                break;
            }
            out.extend(b.iter().map(|(o, p)| (o, p.to_vec())));
        }
        out
    }

    #[test]
    fn append_read_and_seek_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 200);
        log.create_topic("t", 2).unwrap();
        let mut w = log.writer("t", 1).unwrap();
        for i in 0..100u32 {
            assert_eq!(
                w.append(format!("record-{i}").as_bytes()).unwrap(),
                u64::from(i)
            );
        }
        w.flush().unwrap();
        assert!(segments(&dir.path().join("t/1")).unwrap().len() > 5);
        let all = read_all(&log, "t", 1, 0);
        assert_eq!(all.len(), 100);
        assert_eq!(all[42], (42, b"record-42".to_vec()));
        let tail = read_all(&log, "t", 1, 77);
        assert_eq!(tail.first().map(|r| r.0), Some(77));
        assert_eq!(tail.len(), 23);
        assert!(read_all(&log, "t", 0, 0).is_empty());
        assert_eq!(log.end_offset("t", 1).unwrap(), 100);
    }

    #[test]
    fn reader_tails_new_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 1 << 20);
        log.create_topic("t", 1).unwrap();
        let mut w = log.writer("t", 0).unwrap();
        let mut r = log.reader("t", 0, 0).unwrap();
        let mut b = Batch::default();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 0);
        w.append(b"one").unwrap();
        w.flush().unwrap();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 1);
        w.append(b"two").unwrap();
        w.flush().unwrap();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 1);
        assert_eq!(b.iter().next().unwrap(), (1, &b"two"[..]));
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 1 << 20);
        let _w = log.writer("t", 0).unwrap();
        assert!(matches!(log.writer("t", 0), Err(LogError::Locked { .. })));
    }

    #[test]
    fn torn_or_corrupt_tail_is_truncated_and_the_prefix_survives() {
        for damage in ["cut", "flip", "garbage"] {
            let dir = tempfile::tempdir().unwrap();
            let log = log(dir.path(), 1 << 20);
            log.create_topic("t", 1).unwrap();
            {
                let mut w = log.writer("t", 0).unwrap();
                for i in 0..10u32 {
                    w.append(format!("r{i}").as_bytes()).unwrap();
                }
            }
            let seg = dir.path().join("t/0").join(segment::file_name(0));
            let mut bytes = fs::read(&seg).unwrap();
            match damage {
                "cut" => bytes.truncate(bytes.len() - 3),
                "flip" => {
                    let n = bytes.len();
                    bytes[n - 1] ^= 0xff;
                }
                _ => bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            }
            fs::write(&seg, &bytes).unwrap();
            // Readers never serve the damaged record...
            let before = read_all(&log, "t", 0, 0);
            let expect = if damage == "garbage" { 10 } else { 9 };
            assert!(before.len() <= expect, "{damage}");
            // ...and opening the writer truncates it, so appends continue cleanly.
            let mut w = log.writer("t", 0).unwrap();
            assert_eq!(w.next_offset(), expect as u64, "{damage}");
            w.append(b"after").unwrap();
            drop(w);
            let after = read_all(&log, "t", 0, 0);
            assert_eq!(after.len(), expect + 1, "{damage}");
            assert_eq!(after.last().unwrap().1, b"after".to_vec());
            assert_eq!(after[0].1, b"r0".to_vec());
        }
    }

    #[test]
    fn retention_drops_oldest_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 100,
                retention_bytes: 400,
                ..LogConfig::default()
            },
        )
        .unwrap();
        log.create_topic("t", 1).unwrap();
        let mut w = log.writer("t", 0).unwrap();
        for i in 0..200u32 {
            w.append(format!("record-{i:04}").as_bytes()).unwrap();
        }
        w.flush().unwrap();
        let all = read_all(&log, "t", 0, 0);
        assert!(all.len() < 200 && !all.is_empty());
        assert_eq!(all.last().unwrap().0, 199);
        // Reading from a deleted offset starts at the oldest retained record.
        assert_eq!(read_all(&log, "t", 0, 0)[0].0, all[0].0);
    }
}

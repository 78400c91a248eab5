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

mod end;
mod reader;
pub mod segment;
mod writer;

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use end::EndTracker;
pub use reader::{Batch, PartitionReader};
pub use writer::PartitionWriter;

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
    /// The Fluvio cluster failed.
    #[error("fluvio: {0}")]
    Fluvio(#[from] crate::fluvio::TransportError),
    /// The topic does not exist in the data directory.
    #[error("no topic `{topic}` in {dir}")]
    NoSuchTopic {
        /// Topic.
        topic: String,
        /// Data directory.
        dir: PathBuf,
    },
    /// The topics, or a record in them, do not fit what the pipeline needs.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LogError + 'a {
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
        // Processes sharing the log may create a topic at once: each writes its own file
        // and renames it into place; the contents are the same.
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
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
pub(crate) fn segments(dir: &Path) -> Result<Vec<u64>, LogError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
    fn a_reader_that_finds_a_segment_before_its_header_waits_for_it() {
        // The writer creates a segment file, then writes its header: a reader listing
        // the directory in between must not take the header for a record.
        let dir = tempfile::tempdir().unwrap();
        let log = log(dir.path(), 1 << 20);
        log.create_topic("t", 1).unwrap();
        let seg = dir.path().join("t/0").join(segment::file_name(0));
        fs::write(&seg, b"").unwrap();
        let mut r = log.reader("t", 0, 0).unwrap();
        let mut b = Batch::default();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 0);
        // The header half written.
        fs::write(&seg, &segment::MAGIC[..3]).unwrap();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 0);
        fs::remove_file(&seg).unwrap();
        let mut w = log.writer("t", 0).unwrap();
        w.append(b"one").unwrap();
        w.flush().unwrap();
        assert_eq!(r.poll(&mut b, 10, 1 << 20).unwrap(), 1);
        assert_eq!(b.iter().next().unwrap(), (0, &b"one"[..]));
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

//! Follows where a partition ends, for the consumer-lag metric: each call reads only
//! the frame headers appended since the last one.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::segment::{FRAME_HEADER, MAGIC, MAX_FRAME, file_name};
use super::{Log, LogError, io, segments};

/// The end offset of one partition, kept up to date incrementally.
pub struct EndTracker {
    dir: PathBuf,
    /// The newest segment seen, and how far into it frames were counted.
    base: Option<u64>,
    pos: u64,
    records: u64,
}

impl EndTracker {
    /// Follows `topic`/`partition` of `log`.
    pub fn new(log: &Log, topic: &str, partition: u32) -> Self {
        EndTracker {
            dir: log.partition_dir(topic, partition),
            base: None,
            pos: 0,
            records: 0,
        }
    }

    /// The offset after the last whole record: frames are counted by their headers
    /// (checksums are the reader's business), a frame still being written is not.
    pub fn end(&mut self) -> Result<u64, LogError> {
        let Some(&last) = segments(&self.dir)?.last() else {
            return Ok(0);
        };
        if self.base != Some(last) {
            self.base = Some(last);
            self.pos = MAGIC.len() as u64;
            self.records = 0;
        }
        let path = self.dir.join(file_name(last));
        let file = match File::open(&path) {
            Ok(f) => f,
            // Retention removed it between the listing and now: nothing new to count.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(last + self.records),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let len = file.metadata().map_err(io("stat", &path))?.len();
        if len < self.pos + FRAME_HEADER as u64 {
            return Ok(last + self.records);
        }
        let mut r = BufReader::with_capacity(256 << 10, file);
        r.seek(SeekFrom::Start(self.pos))
            .map_err(io("seek", &path))?;
        let mut header = [0u8; FRAME_HEADER];
        while self.pos + FRAME_HEADER as u64 <= len {
            r.read_exact(&mut header).map_err(io("read", &path))?;
            let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let next = self.pos + FRAME_HEADER as u64 + n;
            if n as usize > MAX_FRAME || next > len {
                break;
            }
            r.seek_relative(n as i64).map_err(io("seek", &path))?;
            self.pos = next;
            self.records += 1;
        }
        Ok(last + self.records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;

    #[test]
    fn follows_appends_and_new_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        };
        let log = Log::open(dir.path(), cfg).unwrap();
        log.create_topic("t", 1).unwrap();
        let mut end = EndTracker::new(&log, "t", 0);
        assert_eq!(end.end().unwrap(), 0);
        let mut w = log.writer("t", 0).unwrap();
        let payload = vec![b'x'; 300];
        for _ in 0..5 {
            w.append(&payload).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(end.end().unwrap(), 5);
        // Past 4 KiB the writer rolls to new segments; the count carries on.
        for _ in 0..40 {
            w.append(&payload).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(end.end().unwrap(), 45);
        assert_eq!(end.end().unwrap(), log.end_offset("t", 0).unwrap());
    }
}

//! Reading a partition forward from an offset, tailing new appends.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use super::segment::{self, FRAME_HEADER, Frame, MAGIC, read_full};
use super::{Log, LogError, io, segments};

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

    /// Empties the batch; the next record pushed gets `first_offset`.
    pub fn reset(&mut self, first_offset: u64) {
        self.first_offset = first_offset;
        self.data.clear();
        self.spans.clear();
    }

    /// Appends the record at the next offset.
    pub fn push(&mut self, payload: &[u8]) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(payload);
        self.spans.push((start, payload.len() as u32));
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
    /// A segment found before its writer wrote the header: opened again on next poll.
    reopen: Option<u64>,
}

const READ_CHUNK: usize = 256 << 10;

impl PartitionReader {
    pub(super) fn open(
        log: &Log,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<Self, LogError> {
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
            reopen: None,
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
        self.base = base;
        self.buf.clear();
        self.start = 0;
        self.next_offset = base;
        if n < MAGIC.len() {
            // Being created: its header is not written yet. Reading on from here would
            // take the header for a record; open it again on the next poll.
            self.file = None;
            self.reopen = Some(base);
            return Ok(());
        }
        self.reopen = None;
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
                let base = match self.reopen {
                    Some(b) => b,
                    None => match segments(&self.dir)?.first() {
                        Some(&b) => b,
                        None => return Ok(0),
                    },
                };
                self.open_segment(base)?;
                if self.file.is_none() {
                    return Ok(0);
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

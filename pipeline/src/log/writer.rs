//! The one writer of a partition: appends, rolls segments, syncs, applies retention,
//! and recovers a damaged tail when it opens.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::segment::{self, FRAME_HEADER, MAGIC};
use super::{Fsync, Log, LogConfig, LogError, io, segments};

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
    pub(super) fn open(log: &Log, topic: &str, partition: u32) -> Result<Self, LogError> {
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
/// Without that thread (it could not be started), syncs here.
fn background_sync(file: File) {
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Mutex, OnceLock};
    static SYNCER: OnceLock<Option<Mutex<Sender<File>>>> = OnceLock::new();
    let syncer = SYNCER.get_or_init(|| {
        let (tx, rx) = channel::<File>();
        let spawned = std::thread::Builder::new()
            .name("footfall-fsync".into())
            .spawn(move || {
                for f in rx {
                    if let Err(e) = f.sync_data() {
                        warn!(error = %e, "background fsync failed");
                    }
                }
            });
        match spawned {
            Ok(_) => Some(Mutex::new(tx)),
            Err(e) => {
                warn!(error = %e, "no fsync thread: syncing inline");
                None
            }
        }
    });
    let unsent = match syncer {
        Some(tx) => tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(file)
            .err()
            .map(|e| e.0),
        None => Some(file),
    };
    if let Some(f) = unsent
        && let Err(e) = f.sync_data()
    {
        warn!(error = %e, "fsync failed");
    }
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

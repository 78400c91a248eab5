//! Batches in and out of Fluvio partitions, for the runtime's sources and sinks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::fluvio::RecordKey;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::client::Cluster;
use super::{Contiguous, TransportError};
use crate::log::Batch;

/// How long a live source waits for a record before saying it has read all there is.
const LIVE_WAIT: Duration = Duration::from_millis(20);

/// Reads one input partition in offset order, every offset once.
pub struct FluvioReader {
    inner: Contiguous<Arc<Cluster>>,
    finite: bool,
}

impl FluvioReader {
    /// Reads `topic`/`partition` from `offset`; a `finite` reader (replay) reports the
    /// partition's end instead of waiting at it.
    pub fn new(
        cluster: Arc<Cluster>,
        topic: &str,
        partition: u32,
        offset: u64,
        finite: bool,
    ) -> Self {
        let inner = Contiguous::new(cluster, topic, partition, offset);
        FluvioReader {
            inner: if finite { inner.finite() } else { inner },
            finite,
        }
    }

    /// The offset of the next record.
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// Fills `batch` with the next records (up to `max_records` and about `max_bytes`):
    /// waits a moment for the first (a finite reader: until it or the end comes), then
    /// takes those already delivered. 0: nothing to read now.
    pub async fn poll(&mut self, batch: &mut Batch, max_records: usize, max_bytes: usize) -> usize {
        batch.reset(self.inner.position());
        let first = match self.finite {
            true => self.inner.next().await,
            false => self.inner.next_within(Some(LIVE_WAIT)).await,
        };
        let Some((_, bytes)) = first else { return 0 };
        let mut size = bytes.len();
        batch.push(&bytes);
        while batch.len() < max_records && size < max_bytes {
            match self.inner.next_within(Some(Duration::ZERO)).await {
                Some((_, bytes)) => {
                    size += bytes.len();
                    batch.push(&bytes);
                }
                None => break,
            }
        }
        batch.len()
    }
}

/// Reads `topic`/`partition` from `from` to its end, calling `each` with every record
/// until it returns false.
pub async fn read_to_end(
    cluster: &Arc<Cluster>,
    topic: &str,
    partition: u32,
    from: u64,
    mut each: impl FnMut(u64, &[u8]) -> bool,
) {
    let mut r = Contiguous::new(cluster.clone(), topic, partition, from).finite();
    while let Some((offset, bytes)) = r.next().await {
        if !each(offset, &bytes) {
            return;
        }
    }
}

enum Cmd {
    Record(Vec<u8>, Vec<u8>),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// Writes records to one output partition. Appending only queues a record (it cannot
/// wait); a background task hands it to the producer, which batches and lingers.
/// [`flush`](Self::flush) waits until the cluster has acknowledged every record
/// appended before it.
pub struct FluvioWriter {
    tx: mpsc::UnboundedSender<Cmd>,
    acked: Arc<AtomicU64>,
    /// Set when the producer lost a record: appending then fails, so the run stops
    /// (and restarts from its checkpoint) instead of going on without its output.
    failed: Arc<std::sync::Mutex<Option<String>>>,
    topic: String,
    partition: u32,
}

/// Records between waits for the producer's acknowledgements.
const ACK_EVERY: usize = 4096;

impl FluvioWriter {
    /// A writer of `topic`/`partition`, which ends at `end`.
    pub async fn open(
        cluster: &Arc<Cluster>,
        topic: &str,
        partition: u32,
        end: u64,
    ) -> Result<Self, TransportError> {
        let producer = cluster.producer(topic, partition).await?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let acked = Arc::new(AtomicU64::new(end));
        let seen = acked.clone();
        let failed_at = Arc::new(std::sync::Mutex::new(None));
        let shared = failed_at.clone();
        let name = format!("{topic}/{partition}");
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut failed: Option<String> = None;
            while let Some(cmd) = rx.recv().await {
                let flush = match cmd {
                    Cmd::Record(key, value) => {
                        if failed.is_none() {
                            let key = match key.is_empty() {
                                true => RecordKey::NULL,
                                false => RecordKey::from(key),
                            };
                            match producer.send(key, value).await {
                                Ok(out) => pending.push(out),
                                Err(e) => {
                                    let e = format!("producing to {name}: {e:#}");
                                    warn!(error = %e, "output record not sent");
                                    if let Ok(mut f) = shared.lock() {
                                        f.get_or_insert_with(|| e.clone());
                                    }
                                    failed = Some(e);
                                }
                            }
                        }
                        if pending.len() < ACK_EVERY {
                            continue;
                        }
                        None
                    }
                    Cmd::Flush(reply) => Some(reply),
                };
                if failed.is_none()
                    && let Err(e) = producer.flush().await
                {
                    failed = Some(format!("flushing {name}: {e:#}"));
                }
                for out in pending.drain(..) {
                    match out.wait().await {
                        Ok(md) => {
                            seen.fetch_max(md.offset() as u64 + 1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.get_or_insert_with(|| format!("producing to {name}: {e:#}"));
                        }
                    }
                }
                if let Some(reply) = flush {
                    let _ = reply.send(failed.clone().map_or(Ok(()), Err));
                }
                if let Some(e) = &failed {
                    warn!(error = %e, "output records not acknowledged");
                    if let Ok(mut f) = shared.lock() {
                        f.get_or_insert_with(|| e.clone());
                    }
                }
            }
        });
        Ok(FluvioWriter {
            tx,
            acked,
            failed: failed_at,
            topic: topic.to_owned(),
            partition,
        })
    }

    /// Queues `value` under `key` (empty: none).
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<(), TransportError> {
        if let Some(e) = self.failed.lock().ok().and_then(|f| f.clone()) {
            return Err(TransportError(e));
        }
        self.tx
            .send(Cmd::Record(key.to_vec(), value.to_vec()))
            .map_err(|_| self.gone())
    }

    /// The offset after the last record the cluster acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until every record appended before this call is acknowledged.
    pub fn flush(&self) -> impl Future<Output = Result<(), TransportError>> + Send + 'static {
        let (reply, done) = oneshot::channel();
        let sent = self.tx.send(Cmd::Flush(reply));
        let gone = self.gone();
        async move {
            sent.map_err(|_| gone.clone())?;
            match done.await {
                Ok(r) => r.map_err(TransportError),
                Err(_) => Err(gone),
            }
        }
    }

    fn gone(&self) -> TransportError {
        TransportError(format!(
            "the producer of {}/{} stopped",
            self.topic, self.partition
        ))
    }
}

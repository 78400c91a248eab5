//! Reading one partition without skipping or repeating an offset.
//!
//! The published Fluvio client can silently drop a batch that does not fit a fetch
//! response (`notes`: offsets 3761–3793 never delivered, though stored). So the offsets
//! a stream delivers are checked: the next record must carry exactly the offset
//! expected. One already seen (a redelivery) is skipped; one past it is a gap: the
//! stream is dropped and opened again at the first missing offset, and the gap counted
//! (`footfall_source_offset_gaps_total`). A stream that fails or ends (broker loss) is
//! opened again at the same place, with exponential backoff.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

/// Why the transport failed; the reader retries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// One partition's records from some offset on, as the client delivers them.
pub trait PartitionStream: Send {
    /// The next record as (offset, bytes); `None` when the stream ended.
    fn next(
        &mut self,
    ) -> impl Future<Output = Option<Result<(u64, Vec<u8>), TransportError>>> + Send;
    /// Records `next_offset` as where this consumer resumes (not yet durable).
    fn commit(
        &mut self,
        next_offset: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Makes the commits durable.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Opens partition streams.
pub trait Transport: Send + Sync {
    /// The stream type.
    type Stream: PartitionStream;
    /// A stream of `topic`/`partition` starting at `offset`.
    fn open(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> impl Future<Output = Result<Self::Stream, TransportError>> + Send;
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A partition read in offset order, every offset exactly once.
pub struct Contiguous<T: Transport> {
    transport: T,
    topic: String,
    partition: u32,
    expected: u64,
    stream: Option<T::Stream>,
    backoff: Duration,
    gaps: u64,
}

impl<T: Transport> Contiguous<T> {
    /// Reads `topic`/`partition` of `transport` from `offset`.
    pub fn new(transport: T, topic: &str, partition: u32, offset: u64) -> Self {
        Contiguous {
            transport,
            topic: topic.to_owned(),
            partition,
            expected: offset,
            stream: None,
            backoff: BACKOFF_FIRST,
            gaps: 0,
        }
    }

    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.expected
    }

    /// Gaps found (and read again) so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// The stream, if one is open (to commit through).
    pub fn stream(&mut self) -> Option<&mut T::Stream> {
        self.stream.as_mut()
    }

    /// The next record: the one at [`position`](Self::position). Waits, reconnecting as
    /// needed, until the transport delivers it.
    pub async fn next(&mut self) -> (u64, Vec<u8>) {
        loop {
            let stream = match &mut self.stream {
                Some(s) => s,
                None => match self
                    .transport
                    .open(&self.topic, self.partition, self.expected)
                    .await
                {
                    Ok(s) => self.stream.insert(s),
                    Err(e) => {
                        self.retry_later(&e.to_string()).await;
                        continue;
                    }
                },
            };
            match stream.next().await {
                Some(Ok((offset, bytes))) if offset == self.expected => {
                    self.expected += 1;
                    self.backoff = BACKOFF_FIRST;
                    return (offset, bytes);
                }
                // Redelivered: already returned once.
                Some(Ok((offset, _))) if offset < self.expected => {}
                Some(Ok((offset, _))) => {
                    self.gaps += 1;
                    crate::metrics::get()
                        .offset_gaps
                        .with_label_values(&[self.topic.as_str(), &self.partition.to_string()])
                        .inc();
                    warn!(topic = %self.topic, partition = self.partition, expected = self.expected,
                        got = offset, "offsets skipped by the transport; reading again from the first missing one");
                    self.stream = None;
                }
                Some(Err(e)) => {
                    self.stream = None;
                    self.retry_later(&e.to_string()).await;
                }
                None => {
                    self.stream = None;
                    self.retry_later("the stream ended").await;
                }
            }
        }
    }

    async fn retry_later(&mut self, why: &str) {
        warn!(topic = %self.topic, partition = self.partition, offset = self.expected,
            retry_in = ?self.backoff, error = why, "partition stream lost; reconnecting");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A partition of `len` records ("r<offset>") whose streams misbehave as scripted:
    /// the first stream opened skips `skip` (a range of offsets), and fails after
    /// `fail_after` records; later streams are faithful.
    #[derive(Clone)]
    pub(crate) struct Fake {
        pub len: u64,
        pub skip: std::ops::Range<u64>,
        pub fail_after: Option<usize>,
        pub opened: Arc<Mutex<Vec<u64>>>,
        pub log: Arc<Mutex<Vec<String>>>,
    }

    pub(crate) struct FakeStream {
        records: VecDeque<u64>,
        fail_after: Option<usize>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl PartitionStream for FakeStream {
        async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), TransportError>> {
            if self.fail_after == Some(0) {
                return Some(Err(TransportError("broker gone".into())));
            }
            self.fail_after = self.fail_after.map(|n| n - 1);
            let o = self.records.pop_front()?;
            Some(Ok((o, format!("r{o}").into_bytes())))
        }
        async fn commit(&mut self, next_offset: u64) -> Result<(), TransportError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("commit {next_offset}"));
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), TransportError> {
            self.log.lock().unwrap().push("flush".into());
            Ok(())
        }
    }

    impl Transport for Fake {
        type Stream = FakeStream;
        async fn open(&self, _: &str, _: u32, offset: u64) -> Result<FakeStream, TransportError> {
            let first = {
                let mut o = self.opened.lock().unwrap();
                o.push(offset);
                o.len() == 1
            };
            let records = (offset..self.len)
                .filter(|o| !(first && self.skip.contains(o)))
                .collect();
            Ok(FakeStream {
                records,
                fail_after: if first { self.fail_after } else { None },
                log: self.log.clone(),
            })
        }
    }

    pub(crate) fn fake(len: u64, skip: std::ops::Range<u64>, fail_after: Option<usize>) -> Fake {
        Fake {
            len,
            skip,
            fail_after,
            opened: Arc::default(),
            log: Arc::default(),
        }
    }

    async fn read_all<T: Transport>(r: &mut Contiguous<T>, n: u64) -> Vec<u64> {
        let mut got = Vec::new();
        for _ in 0..n {
            let (o, bytes) = r.next().await;
            assert_eq!(bytes, format!("r{o}").into_bytes());
            got.push(o);
        }
        got
    }

    #[tokio::test]
    async fn a_stream_that_skips_is_reopened_at_the_first_missing_offset() {
        // Like the published client: a batch in the middle never delivered.
        let t = fake(100, 40..73, None);
        let mut r = Contiguous::new(t.clone(), "clickstream", 2, 0);
        assert_eq!(read_all(&mut r, 100).await, (0..100).collect::<Vec<_>>());
        assert_eq!(r.gaps(), 1);
        assert_eq!(*t.opened.lock().unwrap(), [0, 40], "reopened at 40");
        assert_eq!(r.position(), 100);
    }

    #[tokio::test]
    async fn a_lost_broker_resumes_where_it_was_without_repeating() {
        let t = fake(50, 0..0, Some(20));
        let mut r = Contiguous::new(t.clone(), "transactions", 0, 10);
        assert_eq!(read_all(&mut r, 40).await, (10..50).collect::<Vec<_>>());
        assert_eq!(r.gaps(), 0);
        assert_eq!(*t.opened.lock().unwrap(), [10, 30]);
    }
}

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

use futures_util::FutureExt;

use tracing::{debug, warn};

/// Why the transport failed; the reader retries.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// One partition's records from some offset on, as the client delivers them.
pub trait PartitionStream: Send {
    /// The next record as (offset, bytes); `None` when the stream ended.
    fn next(
        &mut self,
    ) -> impl Future<Output = Option<Result<(u64, Vec<u8>), TransportError>>> + Send;
}

/// Opens partition streams and commits offsets.
pub trait Transport: Send + Sync {
    /// The stream type.
    type Stream: PartitionStream;
    /// A stream of `topic`/`partition` starting at `offset`. A `finite` one ends at the
    /// partition's end as of opening; the others wait for new records.
    fn open(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        finite: bool,
    ) -> impl Future<Output = Result<Self::Stream, TransportError>> + Send;
    /// Records (durably) that this pipeline's consumer resumes `topic`/`partition` at
    /// `next_offset`.
    fn commit(
        &self,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
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
    /// Where the last gap began, until a record past it arrives.
    gap_at: Option<u64>,
    finite: bool,
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
            gap_at: None,
            finite: false,
        }
    }

    /// Reads up to the partition's end as of each opening: [`next`](Self::next) returns
    /// `None` there (and opens a new stream on the following call).
    pub fn finite(mut self) -> Self {
        self.finite = true;
        self
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.expected
    }

    /// Gaps found (and read again) so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// The next record: the one at [`position`](Self::position). Waits, reconnecting as
    /// needed, until the transport delivers it; for a [`finite`](Self::finite) reader,
    /// `None` at the partition's end.
    pub async fn next(&mut self) -> Option<(u64, Vec<u8>)> {
        self.next_within(None).await
    }

    /// Like [`next`](Self::next), but `None` also when no record came within `wait`
    /// of an open stream (`Duration::ZERO`: only a record ready now). Opening or
    /// reopening a stream is never cut short.
    pub async fn next_within(&mut self, wait: Option<Duration>) -> Option<(u64, Vec<u8>)> {
        loop {
            let stream = match &mut self.stream {
                Some(s) => s,
                None => match self
                    .transport
                    .open(&self.topic, self.partition, self.expected, self.finite)
                    .await
                {
                    Ok(s) => self.stream.insert(s),
                    Err(e) => {
                        self.retry_later(&e.to_string()).await;
                        continue;
                    }
                },
            };
            // A stream's `next` loses nothing when dropped before it is ready.
            let got = match wait {
                None => stream.next().await,
                // Only what is ready now: no timer per record.
                Some(Duration::ZERO) => match stream.next().now_or_never() {
                    Some(got) => got,
                    None => return None,
                },
                Some(w) => match tokio::time::timeout(w, stream.next()).await {
                    Ok(got) => got,
                    Err(_) => return None,
                },
            };
            match got {
                Some(Ok((offset, bytes))) if offset == self.expected => {
                    self.expected += 1;
                    self.gap_at = None;
                    self.backoff = BACKOFF_FIRST;
                    return Some((offset, bytes));
                }
                // Redelivered: already returned once.
                Some(Ok((offset, _))) if offset < self.expected => {}
                Some(Ok((offset, _))) => {
                    if self.gap_at == Some(self.expected) {
                        // The same batch missed again: it does not fit one fetch.
                        self.stream = None;
                        let why = format!(
                            "the batch at offset {} is skipped on every read: is it larger \
                             than transport.fluvio_max_fetch_bytes?",
                            self.expected
                        );
                        self.retry_later(&why).await;
                        continue;
                    }
                    self.gap_at = Some(self.expected);
                    self.gaps += 1;
                    crate::metrics::get()
                        .offset_gaps
                        .with_label_values(&[self.topic.as_str(), &self.partition.to_string()])
                        .inc();
                    // Routine with the published client (it drops the batch that does not
                    // fit a fetch): counted, and at debug level.
                    debug!(topic = %self.topic, partition = self.partition, expected = self.expected,
                        got = offset, "offsets skipped by the transport; reading again from the first missing one");
                    self.stream = None;
                }
                Some(Err(e)) => {
                    self.stream = None;
                    self.retry_later(&e.to_string()).await;
                }
                None if self.finite => {
                    self.stream = None;
                    self.backoff = BACKOFF_FIRST;
                    return None;
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
        /// At the end, a stream waits (like a live one) instead of ending.
        pub endless: bool,
        /// Every stream skips `skip`, not only the first.
        pub skip_always: bool,
        pub opened: Arc<Mutex<Vec<u64>>>,
        pub log: Arc<Mutex<Vec<String>>>,
    }

    pub(crate) struct FakeStream {
        records: VecDeque<u64>,
        fail_after: Option<usize>,
        endless: bool,
    }

    impl PartitionStream for FakeStream {
        async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), TransportError>> {
            if self.fail_after == Some(0) {
                return Some(Err(TransportError("broker gone".into())));
            }
            self.fail_after = self.fail_after.map(|n| n - 1);
            if self.records.is_empty() && self.endless {
                std::future::pending::<()>().await;
            }
            let o = self.records.pop_front()?;
            Some(Ok((o, format!("r{o}").into_bytes())))
        }
    }

    impl Transport for Fake {
        type Stream = FakeStream;
        async fn open(
            &self,
            _: &str,
            _: u32,
            offset: u64,
            _finite: bool,
        ) -> Result<FakeStream, TransportError> {
            let first = {
                let mut o = self.opened.lock().unwrap();
                o.push(offset);
                o.len() == 1
            };
            let records = (offset..self.len)
                .filter(|o| !((first || self.skip_always) && self.skip.contains(o)))
                .collect();
            Ok(FakeStream {
                records,
                fail_after: if first { self.fail_after } else { None },
                endless: self.endless,
            })
        }

        async fn commit(&self, _: &str, _: u32, next_offset: u64) -> Result<(), TransportError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("commit {next_offset}"));
            Ok(())
        }
    }

    pub(crate) fn fake(len: u64, skip: std::ops::Range<u64>, fail_after: Option<usize>) -> Fake {
        Fake {
            len,
            skip,
            fail_after,
            endless: false,
            skip_always: false,
            opened: Arc::default(),
            log: Arc::default(),
        }
    }

    async fn read_all<T: Transport>(r: &mut Contiguous<T>, n: u64) -> Vec<u64> {
        let mut got = Vec::new();
        for _ in 0..n {
            let (o, bytes) = r.next().await.expect("an endless reader");
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
    async fn a_finite_reader_stops_at_the_end_and_takes_up_what_came_since() {
        let mut t = fake(10, 0..0, None);
        let mut r = Contiguous::new(t.clone(), "transactions", 0, 4).finite();
        let mut got = Vec::new();
        while let Some((o, _)) = r.next().await {
            got.push(o);
        }
        assert_eq!(got, (4..10).collect::<Vec<_>>());
        // Records appended since: the next call opens a new stream where it stopped.
        t.len = 12;
        r.transport = t.clone();
        assert_eq!(r.next().await.map(|(o, _)| o), Some(10));
        assert_eq!(*t.opened.lock().unwrap(), [4, 10]);
    }

    #[tokio::test]
    async fn waiting_for_a_record_gives_up_without_losing_the_stream() {
        let mut t = fake(3, 0..0, None);
        t.endless = true;
        let mut r = Contiguous::new(t.clone(), "clickstream", 0, 0);
        for o in 0..3 {
            assert_eq!(
                r.next_within(Some(Duration::ZERO)).await.map(|(o, _)| o),
                Some(o)
            );
        }
        // Nothing more: a bounded wait returns, and the stream stays open.
        let none = r.next_within(Some(Duration::from_millis(10))).await;
        assert!(none.is_none());
        assert_eq!(r.position(), 3);
        assert_eq!(*t.opened.lock().unwrap(), [0], "not reopened");
    }

    #[tokio::test]
    async fn a_batch_skipped_on_every_read_is_retried_with_backoff_not_in_a_hot_loop() {
        let mut t = fake(100, 40..60, None);
        t.skip_always = true;
        let mut r = Contiguous::new(t.clone(), "clickstream", 0, 0);
        assert_eq!(read_all(&mut r, 40).await.len(), 40);
        // Never skipped over: the reader waits at 40, reopening ever more slowly.
        let stuck = tokio::time::timeout(Duration::from_millis(800), r.next()).await;
        assert!(stuck.is_err());
        assert_eq!(r.position(), 40);
        let opened = t.opened.lock().unwrap().clone();
        assert!(
            (3..=6).contains(&opened.len()),
            "reopened {} times in 0.8 s: {opened:?}",
            opened.len()
        );
        assert!(opened[1..].iter().all(|o| *o == 40));
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

//! Source tasks: one per input partition. Read a batch, decode and validate it, drop
//! redelivered `message_id`s, send bad records to `deadletter`, hand the rest on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use footfall_operators::action::DeadLetter;
use footfall_operators::decode::decode;
use footfall_operators::event::{Event, Interest, Topic};
use footfall_operators::time::Timestamp;
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::clock::Mode;
use super::dedupe::message_hash;
use super::stats::Stats;
use super::topics::{End, Reader};
use crate::log::Batch;
use crate::metrics;

/// A decoded record, with where it came from.
pub struct Decoded {
    /// Its topic.
    pub topic: Topic,
    /// Its partition.
    pub partition: u32,
    /// Its offset.
    pub offset: u64,
    /// The event, boxed: it moves through several queues and is large.
    pub event: Box<Event>,
    /// Hash of its `message_id`, for dedupe.
    pub id: u128,
}

/// What a source hands the sequencer.
pub struct SourceMsg {
    /// Which source (index into the sequencer's partitions).
    pub src: usize,
    /// Valid, first-time events some operator consumes, in offset order.
    pub events: Vec<Decoded>,
    /// Valid events no operator consumes, as (event time, `message_id` hash): they move
    /// the clock, count as late and are deduplicated like any other, but go no further.
    pub skipped: Vec<(Timestamp, u128)>,
    /// Records that cannot be used, for `deadletter` (written by the sequencer, in order
    /// with checkpoints).
    pub dead: Vec<DeadLetter>,
    /// The offset after the last record of this message.
    pub next_offset: u64,
    /// The source has read everything there is for now.
    pub caught_up: bool,
    /// Replay: the source's input is exhausted; no more messages follow.
    pub eof: bool,
    /// When the batch was read.
    pub read_at: Instant,
}

/// Paces sources to a total rate (the bench's `--rate`).
pub struct Pacer {
    start: Instant,
    per_sec: f64,
    sent: AtomicU64,
}

impl Pacer {
    /// All sources together send `per_sec` records a second.
    pub fn new(per_sec: f64) -> Self {
        Pacer {
            start: Instant::now(),
            per_sec,
            sent: AtomicU64::new(0),
        }
    }

    async fn take(&self, n: usize) {
        let k = self.sent.fetch_add(n as u64, Ordering::Relaxed);
        let due = self.start + Duration::from_secs_f64(k as f64 / self.per_sec);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// One input partition's source.
pub struct Source {
    /// Index among the sequencer's partitions.
    pub src: usize,
    /// Topic.
    pub topic: Topic,
    /// Partition.
    pub partition: u32,
    /// Where it reads.
    pub reader: Reader,
    /// Where the partition ends, for the consumer lag.
    pub end: End,
    /// Records per batch.
    pub batch_records: usize,
    /// The event types to route on.
    pub interest: Interest,
}

impl Source {
    /// Reads until the input is exhausted (replay) or shutdown (live).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        mut self,
        mode: Mode,
        exit_at_end: bool,
        tx: mpsc::Sender<SourceMsg>,
        stats: Arc<Stats>,
        pacer: Option<Arc<Pacer>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), crate::log::LogError> {
        let m = metrics::get();
        let topic_name = self.topic.name();
        let read_counter = m.events_read.with_label_values(&[topic_name]);
        let part_label = self.partition.to_string();
        let offset_gauge = m.input_offset.with_label_values(&[topic_name, &part_label]);
        let lag_gauge = m.consumer_lag.with_label_values(&[topic_name, &part_label]);
        // The lag is measured at most once a second while records flow; 0 when caught up.
        let mut lag_at: Option<Instant> = None;
        let mut batch = Batch::default();
        let mut announced_caught_up = false;
        let batch_records = if pacer.is_some() {
            self.batch_records.min(64)
        } else {
            self.batch_records
        };
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let n = self.reader.poll(&mut batch, batch_records, 4 << 20).await?;
            if n == 0 {
                lag_gauge.set(0);
                match mode {
                    _ if exit_at_end => {
                        let msg = self.msg(Vec::new(), true, true);
                        let _ = tx.send(msg).await;
                        return Ok(());
                    }
                    Mode::Replay | Mode::Live => {
                        if !announced_caught_up {
                            announced_caught_up = true;
                            if tx.send(self.msg(Vec::new(), true, false)).await.is_err() {
                                return Ok(());
                            }
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
            announced_caught_up = false;
            if lag_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                lag_at = Some(Instant::now());
                // The lag is a gauge: a failure to read the end (a broker restarting) is
                // not the run's; the reader reconnects on its own.
                match self.end.end().await {
                    Ok(end) => lag_gauge.set(end.saturating_sub(self.reader.position()) as i64),
                    Err(e) => debug!(topic = topic_name, partition = self.partition, error = %e,
                        "partition end not read; lag not updated"),
                }
            }
            if let Some(p) = &pacer {
                p.take(n).await;
            }
            let now = Timestamp::now();
            let mut events = Vec::with_capacity(n);
            let mut skipped = Vec::new();
            let mut dead = Vec::new();
            for (offset, bytes) in batch.iter() {
                match decode(self.topic, bytes, now) {
                    Ok(event) => {
                        let id = message_hash(&event.message_id);
                        if !self.interest.wants(&event.kind) {
                            skipped.push((event.timestamp, id));
                        } else {
                            events.push(Decoded {
                                topic: self.topic,
                                partition: self.partition,
                                offset,
                                event: Box::new(event),
                                id,
                            });
                        }
                    }
                    Err(e) => {
                        debug!(topic = topic_name, partition = self.partition, offset,
                            reason = e.reason.as_str(), error = %e, "record sent to deadletter");
                        m.deadletter
                            .with_label_values(&[topic_name, e.reason.as_str()])
                            .inc();
                        stats.dead_reason(e.reason.as_str());
                        dead.push(DeadLetter::new(
                            topic_name,
                            self.partition,
                            offset,
                            e.reason.as_str(),
                            e.message,
                            bytes,
                            now,
                        ));
                    }
                }
            }
            read_counter.inc_by(n as u64);
            offset_gauge.set(self.reader.position() as i64);
            stats.read(self.topic, n as u64, dead.len() as u64, 0);
            let mut msg = self.msg(events, false, false);
            msg.skipped = skipped;
            msg.dead = dead;
            if tx.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }

    fn msg(&self, events: Vec<Decoded>, caught_up: bool, eof: bool) -> SourceMsg {
        SourceMsg {
            src: self.src,
            events,
            skipped: Vec::new(),
            dead: Vec::new(),
            next_offset: self.reader.position(),
            caught_up,
            eof,
            read_at: Instant::now(),
        }
    }
}

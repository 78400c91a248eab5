//! The sequencer: puts every input partition's events into one event-time order, holds
//! each event until the pipeline clock reaches it, resolves its customer key and routes
//! it to the partition worker that owns the key.
//!
//! Holding events to the watermark makes results independent of how records of different
//! topics and partitions interleave on arrival (within the allowed lateness): ties are
//! broken by topic name, partition and offset. An `identify` whose anonymous and customer
//! keys live on different workers becomes an export on one and an import on the other.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use footfall_operators::event::{Event, EventKind, Str, Topic};
use footfall_operators::identity::{ANON_PREFIX, Identity};
use footfall_operators::key::partition_for;
use footfall_operators::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

use footfall_operators::worker::Snapshot;

use super::assign::Assignment;
use super::clock::Clock;
use super::dedupe::Dedupe;
use super::shard::Work;
use super::sink::Sinks;
use super::source::{Decoded, SourceMsg};
use super::stats::Stats;
use crate::checkpoint::{SequencerState, SourceState};
use crate::log::LogError;
use crate::metrics;

struct Pending {
    order: (Timestamp, Topic, u32, u64),
    event: Box<Event>,
}

/// One source's held events, kept sorted by `order`. Feeds arrive nearly sorted, so an
/// insertion walks back a few places at most, and each event is moved in and out once.
#[derive(Default)]
struct Held(VecDeque<Pending>);

impl Held {
    fn push(&mut self, p: Pending) {
        let mut at = self.0.len();
        while at > 0 && self.0[at - 1].order > p.order {
            at -= 1;
        }
        self.0.insert(at, p);
    }
}

/// What the sequencer knows of one input partition besides its held events.
pub struct Input {
    /// Topic.
    pub topic: Topic,
    /// Partition.
    pub partition: u32,
    /// The offset after the last record taken in.
    pub next_offset: u64,
    /// `message_id`s seen within the dedupe window.
    pub dedupe: Dedupe,
}

/// The sequencer's state.
pub struct Sequencer {
    clock: Clock,
    inputs: Vec<Input>,
    sinks: Arc<Sinks>,
    held: Vec<Held>,
    identity: Identity,
    /// Keys events by their own ids, without the graph (measuring only).
    unlinked: bool,
    workers: Vec<mpsc::Sender<Vec<Work>>>,
    pending: Vec<Vec<Work>>,
    sent_clock: Timestamp,
    stats: Arc<Stats>,
    sales: bool,
    /// This process's share of the key partitions.
    share: Assignment,
}

/// Per worker, where its state and its partition's policies' state arrive at a barrier.
pub type Replies = Vec<(
    oneshot::Receiver<Snapshot>,
    oneshot::Receiver<Box<dyn footfall_operators::state::StateImage>>,
)>;

/// Why the sequencer stopped.
#[derive(Debug)]
pub enum WorkerGone {
    /// The workers hung up: one of them failed.
    Hungup,
    /// Writing dead letters failed.
    Log(LogError),
}

impl Sequencer {
    /// A sequencer feeding `workers` under `clock`.
    pub fn new(
        clock: Clock,
        inputs: Vec<Input>,
        sinks: Arc<Sinks>,
        workers: Vec<mpsc::Sender<Vec<Work>>>,
        stats: Arc<Stats>,
    ) -> Self {
        let n = workers.len();
        Sequencer {
            clock,
            held: (0..inputs.len()).map(|_| Held::default()).collect(),
            inputs,
            sinks,
            identity: Identity::default(),
            unlinked: false,
            workers,
            pending: (0..n).map(|_| Vec::new()).collect(),
            sent_clock: Timestamp::MIN,
            stats,
            sales: false,
            share: Assignment::ALL,
        }
    }

    /// Worker `share` of several processes: events of customers another process owns
    /// are dropped once their key is resolved (see [`super::assign`]).
    pub fn with_share(mut self, share: Assignment) -> Self {
        self.share = share;
        self
    }

    /// Also routes each purchase at a store, re-keyed to the store, to the store's
    /// worker (for triggers that keep state per store: see [`Event::sale`]).
    pub fn with_sales(mut self, sales: bool) -> Self {
        self.sales = sales;
        self
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Takes in one source message and releases what the clock now allows.
    pub async fn on_msg(&mut self, msg: SourceMsg) -> Result<(), WorkerGone> {
        let now = self.clock.now();
        let mut late = 0u64;
        let input = &mut self.inputs[msg.src];
        input.next_offset = msg.next_offset;
        if !msg.dead.is_empty() {
            self.sinks
                .write_deadletters(input.partition, &msg.dead)
                .map_err(WorkerGone::Log)?;
        }
        let topic = input.topic;
        let mut dups = 0u64;
        for d in msg.events {
            let ts = d.event.timestamp;
            if !self.inputs[msg.src].dedupe.first_time_hash(d.id, ts) {
                dups += 1;
                continue;
            }
            self.clock.observe(msg.src, ts, msg.read_at);
            if ts < now {
                // Late: applied at once; timers that already fired stay fired.
                late += 1;
                metrics::get()
                    .late_events
                    .with_label_values(&[d.topic.name()])
                    .inc();
                self.dispatch(d.topic, d.event, msg.read_at).await?;
            } else {
                self.held[msg.src].push(Pending {
                    order: (ts, d.topic, d.partition, d.offset),
                    event: d.event,
                });
            }
        }
        for &(ts, id) in &msg.skipped {
            if !self.inputs[msg.src].dedupe.first_time_hash(id, ts) {
                dups += 1;
                continue;
            }
            self.clock.observe(msg.src, ts, msg.read_at);
            if ts < now {
                late += 1;
                metrics::get()
                    .late_events
                    .with_label_values(&[topic.name()])
                    .inc();
            }
        }
        if late > 0 {
            self.stats.late(late);
        }
        for (t, junk, conflicts) in self.identity.take_counts() {
            let m = metrics::get();
            m.identity_junk
                .with_label_values(&[t.as_str()])
                .inc_by(junk);
            m.identity_conflicts
                .with_label_values(&[t.as_str()])
                .inc_by(conflicts);
        }
        if dups > 0 {
            self.stats.duplicates_seen(dups);
            metrics::get()
                .duplicates
                .with_label_values(&[topic.name()])
                .inc_by(dups);
        }
        self.clock.caught_up(msg.src, msg.caught_up);
        if msg.eof {
            self.clock.finish(msg.src);
        }
        self.release(msg.read_at).await
    }

    /// The identity graph, leaving an empty one (at the end of a run).
    pub fn take_identity(&mut self) -> Identity {
        std::mem::take(&mut self.identity)
    }

    /// Keys every event by its own ids, without the identity graph: the baseline that
    /// `footfall bench --policy-cost` measures the graph against.
    pub fn without_identity(mut self) -> Self {
        self.unlinked = true;
        self
    }

    /// Links on every event carrying two ids, not only on `identify`.
    pub fn with_link_any_event(mut self, on: bool) -> Self {
        self.identity = std::mem::take(&mut self.identity).with_link_any_event(on);
        self
    }

    /// Recomputes the clock and sends everything it has passed.
    pub async fn release(&mut self, read_at: Instant) -> Result<(), WorkerGone> {
        let c = self.clock.update(Instant::now(), Timestamp::now());
        self.release_to(c, read_at).await
    }

    async fn release_to(&mut self, c: Timestamp, read_at: Instant) -> Result<(), WorkerGone> {
        // A k-way merge of the sources' heads, in (time, topic, partition, offset) order.
        loop {
            let mut best: Option<usize> = None;
            for (i, h) in self.held.iter().enumerate() {
                let Some(head) = h.0.front() else { continue };
                if head.order.0 > c {
                    continue;
                }
                if best.is_none_or(|b| head.order < self.held[b].0[0].order) {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            let Some(p) = self.held[b].0.pop_front() else {
                break;
            };
            // What made this event (and the timers before it) due is the record whose
            // arrival moved the clock: latency is measured from when it was read.
            self.dispatch(p.order.1, p.event, read_at).await?;
        }
        if c > self.sent_clock {
            self.sent_clock = c;
            for q in &mut self.pending {
                q.push(Work::Advance { clock: c, read_at });
            }
            let m = metrics::get();
            m.clock.set(c.as_secs_f64());
            m.watermark_lag
                .set(Timestamp::now().since(c).as_secs_f64().max(0.0));
        }
        self.flush().await
    }

    async fn dispatch(
        &mut self,
        topic: Topic,
        event: Box<Event>,
        read_at: Instant,
    ) -> Result<(), WorkerGone> {
        let n = self.workers.len() as u32;
        if let (Topic::Customers, EventKind::Erase, Some(user)) =
            (topic, &event.kind, &event.user_id)
        {
            metrics::get().erasures.inc();
            // Every worker: the owner drops the state, any may hold mentions of the key.
            for key in self.identity.erase(user) {
                for q in &mut self.pending {
                    q.push(Work::Erase {
                        key: key.clone(),
                        at: event.timestamp,
                    });
                }
            }
            return Ok(());
        }
        if matches!(topic, Topic::Stores | Topic::Weather) {
            // Reference data: every worker keeps all of it.
            let key = event.store_id.clone().unwrap_or_default();
            for q in &mut self.pending {
                q.push(Work::Event {
                    key: key.clone(),
                    event: event.clone(),
                    read_at,
                });
            }
            return Ok(());
        }
        let resolved = match self.unlinked {
            false => self.identity.resolve(topic, &event),
            true => Identity::unlinked(topic, &event),
        };
        if resolved.erased {
            metrics::get().erased_dropped.inc();
            return Ok(());
        }
        if let Some(m) = resolved.merge {
            let (wf, wi) = (
                partition_for(&m.from, n) as usize,
                partition_for(&m.into, n) as usize,
            );
            if !self.share.owns(wi as u32) {
                // Another process owns the customer and merges its own copy of the
                // device's state: this one drops its copy.
                let (reply, _) = oneshot::channel();
                self.pending[wf].push(Work::Export {
                    key: m.from,
                    reply: Some(reply),
                    at: event.timestamp,
                });
            } else if wf == wi {
                self.pending[wf].push(Work::Merge {
                    from: m.from,
                    into: m.into,
                    at: event.timestamp,
                });
            } else {
                let (reply, states) = oneshot::channel();
                self.pending[wf].push(Work::Export {
                    key: m.from,
                    reply: Some(reply),
                    at: event.timestamp,
                });
                // The export must be on its way before the importer can wait for it.
                self.send(wf).await?;
                self.pending[wi].push(Work::Import {
                    key: m.into,
                    states,
                    at: event.timestamp,
                });
            }
        }
        let sale = match self.sales {
            true => event.sale(&resolved.key),
            false => None,
        };
        let w = partition_for(&resolved.key, n) as usize;
        // Another process's customer is dropped. Stores and devices not linked to a
        // customer yet are every process's: see `assign`.
        let mine = self.share.owns(w as u32)
            || topic.keyed_by_store()
            || resolved.key.starts_with(ANON_PREFIX);
        if mine {
            self.pending[w].push(Work::Event {
                key: resolved.key,
                event,
                read_at,
            });
            if self.pending[w].len() >= 4096 {
                self.send(w).await?;
            }
        }
        if let Some(sale) = sale {
            let store = sale.store_id.clone().unwrap_or_default();
            let w = partition_for(&store, n) as usize;
            self.pending[w].push(Work::Event {
                key: store,
                event: Box::new(sale),
                read_at,
            });
        }
        Ok(())
    }

    async fn send(&mut self, w: usize) -> Result<(), WorkerGone> {
        if self.pending[w].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending[w], Vec::with_capacity(1024));
        self.workers[w]
            .send(batch)
            .await
            .map_err(|_| WorkerGone::Hungup)
    }

    async fn flush(&mut self) -> Result<(), WorkerGone> {
        for w in 0..self.workers.len() {
            self.send(w).await?;
        }
        Ok(())
    }

    /// Takes a checkpoint barrier: returns the sequencer's state, and a receiver per
    /// worker for its state, which each worker sends once it has applied (and written
    /// the actions of) everything before the barrier.
    pub async fn barrier(&mut self) -> Result<(SequencerState, Replies), WorkerGone> {
        let (clock, max_ts) = self.clock.export();
        let state = SequencerState {
            clock,
            sources: self
                .inputs
                .iter_mut()
                .zip(&self.held)
                .zip(max_ts)
                .map(|((input, held), max_ts)| SourceState {
                    topic: input.topic.name().to_owned(),
                    partition: input.partition,
                    next_offset: input.next_offset,
                    max_ts,
                    held: held.0.iter().map(|p| p.order.3).collect(),
                    dedupe: input.dedupe.buckets(),
                })
                .collect(),
            links: self
                .identity
                .links()
                .map(|(a, u, t)| (a.clone(), u.clone(), t))
                .collect(),
            erased: self.identity.erased().collect(),
            hard: self
                .identity
                .hard_ids()
                .map(|(t, v, u)| (Str::from(t.as_str()), v, u.clone()))
                .collect(),
        };
        let mut replies = Vec::new();
        for q in &mut self.pending {
            let (reply, rx) = oneshot::channel();
            let (policy, policy_rx) = oneshot::channel();
            q.push(Work::Snapshot { reply, policy });
            replies.push((rx, policy_rx));
        }
        self.flush().await?;
        Ok((state, replies))
    }

    /// Restores the state of a checkpoint; `held` are the events it still held, re-read
    /// from the log, per input.
    pub fn restore(&mut self, state: &SequencerState, held: Vec<Vec<Decoded>>) {
        let max_ts: Vec<Option<Timestamp>> = self
            .inputs
            .iter()
            .map(|i| {
                state
                    .sources
                    .iter()
                    .find(|s| s.topic == i.topic.name() && s.partition == i.partition)
                    .and_then(|s| s.max_ts)
            })
            .collect();
        self.clock.restore(state.clock, &max_ts);
        self.sent_clock = state.clock;
        for (input, s) in self.inputs.iter_mut().zip(&state.sources) {
            debug_assert!(input.topic.name() == s.topic && input.partition == s.partition);
            input.dedupe.restore(s.dedupe.clone());
        }
        restore_identity(&mut self.identity, state);
        for (src, events) in held.into_iter().enumerate() {
            for d in events {
                self.held[src].push(Pending {
                    order: (d.event.timestamp, d.topic, d.partition, d.offset),
                    event: d.event,
                });
            }
        }
    }

    /// End of a replay: moves the clock to `until` (default: the largest event time read),
    /// releases everything up to it and returns how many events lay beyond it.
    pub async fn finish(&mut self, until: Option<Timestamp>) -> Result<u64, WorkerGone> {
        let end = until
            .or(self.clock.max_event_time())
            .unwrap_or(Timestamp::MIN);
        let c = self.clock.advance_to(end);
        self.release_to(c, Instant::now()).await?;
        Ok(self.held.iter().map(|h| h.0.len() as u64).sum())
    }
}

/// Rebuilds the identity graph of a checkpoint: links oldest first (the order devices
/// are dropped in), hard ids, erasures.
pub fn restore_identity(identity: &mut Identity, state: &SequencerState) {
    let mut links: Vec<&(
        footfall_operators::event::Str,
        footfall_operators::event::Str,
        Timestamp,
    )> = state.links.iter().collect();
    links.sort_by_key(|(anon, _, since)| (*since, anon.clone()));
    for (anon, user, since) in links {
        identity.restore_link(anon.clone(), user.clone(), *since);
    }
    for (t, value, user) in &state.hard {
        if let Some(t) = footfall_operators::identity::IdType::parse(t) {
            identity.restore_hard(t, value.clone(), user.clone());
        }
    }
    for h in &state.erased {
        identity.restore_erased(*h);
    }
}

//! Partition worker tasks: each owns the keys that hash to its partition and runs the
//! operators on them, in the order the sequencer sends.

use std::sync::Arc;
use std::time::Instant;

use footfall_operators::action::{Action, OutputTopic};
use footfall_operators::event::{Event, Str};
use footfall_operators::key::partition_for;
use footfall_operators::policy::{Fact, Input, Packed};
use footfall_operators::state::StateImage;
use footfall_operators::time::{Span, Timestamp};
use footfall_operators::worker::{KeyStates, Snapshot, Worker};
use tokio::sync::{mpsc, oneshot};

use super::backlog::Backlog;
use super::policy::{Barrier, Local, PolicyMsg};
use super::sink::Sinks;
use super::stats::Stats;
use crate::log::LogError;
use crate::metrics;

/// One unit of work for a partition worker.
pub enum Work {
    /// Apply an event to `key`.
    Event {
        /// The resolved key.
        key: Str,
        /// The event.
        event: Box<Event>,
        /// When its record was read.
        read_at: Instant,
    },
    /// The pipeline clock reached `clock`.
    Advance {
        /// The clock.
        clock: Timestamp,
        /// When the record that moved it was read.
        read_at: Instant,
    },
    /// Move `from`'s state into `into`; both are this worker's.
    Merge {
        /// The key whose state moves.
        from: Str,
        /// The surviving key.
        into: Str,
        /// The `identify`'s time.
        at: Timestamp,
    },
    /// Delete all of `key`'s state: its customer was erased.
    Erase {
        /// The key.
        key: Str,
        /// The `erase` record's time.
        at: Timestamp,
    },
    /// Hand `key`'s state to another worker.
    Export {
        /// The key whose state moves.
        key: Str,
        /// Where it goes; taken when the state went ahead of its turn (see `backlog`).
        reply: Option<oneshot::Sender<KeyStates>>,
        /// The `identify`'s time.
        at: Timestamp,
    },
    /// A checkpoint barrier: write out held actions, pass the barrier on to every
    /// partition's policies, then send the worker's state.
    Snapshot {
        /// Where the state goes.
        reply: oneshot::Sender<Snapshot>,
        /// Where the worker's own policies send their state, once every worker's barrier
        /// is in.
        policy: oneshot::Sender<Box<dyn StateImage>>,
    },
    /// Merge state exported by another worker into `key`.
    Import {
        /// The surviving key.
        key: Str,
        /// The state, once the exporting worker has sent it.
        states: oneshot::Receiver<KeyStates>,
        /// The `identify`'s time.
        at: Timestamp,
    },
}

/// Actions a worker holds before writing them.
const CHUNK: usize = 4096;

/// How long a busy worker (more batches queued) may hold output before writing it. An
/// idle worker writes at once; a busy one gathers the output of several batches into one
/// write per partition instead of a write (a system call) per batch.
const HOLD: std::time::Duration = std::time::Duration::from_millis(2);

/// Actions a worker has produced and not yet written, each with the read time of the
/// record that made it due.
struct Pending {
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
    actions: Vec<Action>,
    read_ats: Vec<Instant>,
    /// Per action, the worker's clock when the work that made it began.
    arrived: Vec<Timestamp>,
    /// Actions for their topic as they are (not customer-facing, or no policies), with
    /// the read time of their record, waiting for [`write`](Self::write).
    unwritten: Vec<Action>,
    unwritten_read_ats: Vec<Instant>,
    /// When output was last written.
    written_at: Instant,
    buf: Vec<u8>,
    latencies: Vec<u32>,
    /// Per partition's policies: actions and facts not yet sent.
    outbox: Vec<Vec<(Timestamp, Input)>>,
    /// No policies (measuring only): customer-facing actions are written here.
    direct: bool,
}

impl Pending {
    /// Inputs gathered for the policies and not yet sent.
    fn queued(&self) -> usize {
        self.outbox.iter().map(Vec::len).sum()
    }

    /// Attributes the actions not yet attributed to `read_at`, and to the worker's clock
    /// `arrived` when the work that made them began.
    fn mark(&mut self, read_at: Instant, arrived: Timestamp) {
        self.read_ats.resize(self.actions.len(), read_at);
        self.arrived.resize(self.actions.len(), arrived);
    }

    /// Routes the actions made so far and writes those for their topic as they are.
    fn emit(&mut self) -> Result<(), LogError> {
        self.route();
        self.write()
    }

    /// Customer-facing actions go on to their customer's policies (packed, into the
    /// outbox); the time they took to get there is their latency (what the policies hold
    /// back is by design). The rest wait for [`write`](Self::write).
    fn route(&mut self) {
        if self.actions.is_empty() {
            return;
        }
        let m = metrics::get();
        let n = self.outbox.len() as u32;
        let made = self
            .actions
            .drain(..)
            .zip(self.read_ats.drain(..))
            .zip(self.arrived.drain(..));
        for ((a, read_at), arrived) in made {
            if a.topic == OutputTopic::Notifications && !self.direct {
                m.latency.observe(read_at.elapsed().as_secs_f64());
                let p = partition_for(a.customer_id.as_deref().unwrap_or(""), n) as usize;
                self.outbox[p].push((arrived, Input::Action(Packed::new(&a))));
            } else {
                self.unwritten.push(a);
                self.unwritten_read_ats.push(read_at);
            }
        }
    }

    /// Whether output held back should be written now: the worker is about to wait
    /// (`idle`), or holds a chunk of it, or has held it for [`HOLD`].
    fn write_due(&self, idle: bool, held_elsewhere: usize) -> bool {
        idle || self.unwritten.len() + held_elsewhere >= CHUNK || self.written_at.elapsed() >= HOLD
    }

    /// Writes the routed actions for their topic as they are, and records their latency
    /// and counts.
    fn write(&mut self) -> Result<(), LogError> {
        self.written_at = Instant::now();
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let m = metrics::get();
        self.sinks
            .write_actions(&mut self.unwritten, &mut self.buf)?;
        self.latencies.clear();
        // Actions already in the output (a replay over the same log) are not new.
        for (a, t) in self.unwritten.iter().zip(&self.unwritten_read_ats) {
            if a.emitted_at.is_none() {
                continue;
            }
            let secs = t.elapsed().as_secs_f64();
            m.latency.observe(secs);
            m.actions
                .with_label_values(&[a.trigger.as_str(), a.group.as_str()])
                .inc();
            self.latencies
                .push((secs * 1e6).min(f64::from(u32::MAX)) as u32);
        }
        self.unwritten.retain(|a| a.emitted_at.is_some());
        self.stats.actions(&self.unwritten, &self.latencies);
        self.unwritten.clear();
        self.unwritten_read_ats.clear();
        Ok(())
    }
}

/// Tells the policies of keys whose state just expired on `worker` (untouched for the
/// state TTL) to drop theirs too, at `at`.
fn expire(worker: &mut Worker, p: &mut Pending, at: Timestamp, arrived: Timestamp) {
    let n = p.outbox.len() as u32;
    let expired = worker.take_expired_keys();
    if p.direct {
        return;
    }
    for key in expired {
        let task = partition_for(&key, n) as usize;
        p.outbox[task].push((arrived, Input::Fact(at, Fact::Expire { key })));
    }
}

/// Inputs for the policies that a worker gathers, at most, before it sends them with
/// its progress, in the middle of a batch if need be.
///
/// A worker's own facts and actions wait in its policies' agenda until every worker has
/// passed their time, and each worker's progress moves only when it sends. Sent every
/// 256 inputs, where 2,048 gathered over whole batches were sent before, the agenda of a
/// partition holds about 350 entries on average on `footfall bench` (470 before; peaks
/// of 2,000 to 2,800, against 2,500 to 3,500), more of them still in cache when they
/// are applied: the cache simulation counts 0.6 to 1.1 M fewer last-level misses of 27 M,
/// for 0.3 % more instructions.
const SEND_AT: usize = 256;

/// A worker's links to every partition's policies.
pub struct Policies {
    /// This worker's index (the partition of its own customers).
    pub me: u32,
    /// The policies of this worker's own customers, applied here (`None`: another
    /// process applies them, or none does).
    pub local: Option<Local>,
    /// The other partitions' policies, by partition (`None`: this worker's own, or
    /// another process runs them).
    pub tasks: Vec<Option<mpsc::UnboundedSender<PolicyMsg>>>,
    /// The progress last sent to each partition.
    pub sent: Vec<Timestamp>,
    /// No policies at all (measuring only): customer-facing actions go straight to
    /// `notifications`, and no facts are gathered for them.
    pub direct: bool,
}

/// Another partition with nothing new from this worker hears of its progress at most
/// this often (event time): progress only lets it decide sooner, and a message per
/// batch per partition costs more than the policies themselves.
const PROGRESS_EVERY: Span = Span::from_secs(1);

impl Policies {
    /// Sends every partition's policies their outbox and this worker's progress, and
    /// the barrier when there is one; this worker's own apply them at once.
    fn send(
        &mut self,
        p: &mut Pending,
        progress: Timestamp,
        mut barrier: Option<oneshot::Sender<Box<dyn StateImage>>>,
        last: bool,
    ) -> Result<(), LogError> {
        let at_barrier = barrier.is_some();
        for (j, tx) in self.tasks.iter().enumerate() {
            if j as u32 == self.me
                && let Some(local) = &mut self.local
            {
                if !at_barrier && p.outbox[j].is_empty() && progress <= self.sent[j] {
                    continue;
                }
                self.sent[j] = progress;
                let items = std::mem::replace(&mut p.outbox[j], local.spare());
                local.take(PolicyMsg {
                    from: self.me,
                    items,
                    progress,
                    barrier: barrier.take().map(|reply| Barrier { reply: Some(reply) }),
                })?;
                continue;
            }
            let Some(tx) = tx else {
                // Another worker process's customers: it makes their actions itself, and
                // checkpoints their policies.
                p.outbox[j].clear();
                if j as u32 == self.me
                    && let Some(reply) = barrier.take()
                {
                    let none = footfall_operators::state::EncodedState(Vec::new());
                    let _ = reply.send(Box::new(none));
                }
                continue;
            };
            if !at_barrier
                && !last
                && p.outbox[j].is_empty()
                && progress < self.sent[j].plus(PROGRESS_EVERY)
            {
                continue;
            }
            self.sent[j] = progress;
            // The next batch's items for it take about as much room as these.
            let room = p.outbox[j].len();
            let msg = PolicyMsg {
                from: self.me,
                items: std::mem::replace(&mut p.outbox[j], Vec::with_capacity(room)),
                progress,
                barrier: at_barrier.then(|| Barrier {
                    reply: if j as u32 == self.me {
                        barrier.take()
                    } else {
                        None
                    },
                }),
            };
            tx.send(msg).map_err(|_| LogError::Io {
                op: "send to a partition's policies",
                path: std::path::PathBuf::new(),
                source: std::io::Error::other("the partition's worker stopped"),
            })?;
        }
        Ok(())
    }
}

/// A worker's retained input, published for the service's SQL.
pub struct Retain {
    tables: footfall_sql::Tables,
    hub: Arc<footfall_sql::hub::Hub>,
    me: u32,
    published: Option<Instant>,
    /// Rows or erasures since the last publication.
    dirty: bool,
    /// Requests for live state.
    requests: tokio::sync::watch::Receiver<u64>,
}

/// Wall time between a worker's publications of its tables.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Retain {
    /// Worker `me`'s tables, published to `hub`.
    pub fn new(tables: footfall_sql::Tables, hub: Arc<footfall_sql::hub::Hub>, me: u32) -> Self {
        Retain {
            tables,
            requests: hub.live_requests(),
            hub,
            me,
            published: None,
            dirty: true,
        }
    }

    /// Whether a query asked for live state since the last answer.
    fn live_asked(&self) -> bool {
        self.requests.has_changed().unwrap_or(false)
    }

    /// Answers the latest request for live state with `worker`'s rows, and its own
    /// customers' policies' when it applies them.
    fn publish_live(&mut self, worker: &Worker, policies: Option<&Local>) {
        use footfall_sql::hub::LiveSource;
        let generation = *self.requests.borrow_and_update();
        let source = LiveSource::Worker(self.me);
        self.hub.publish_live(source, generation, worker.live());
        if let Some(p) = policies {
            let source = LiveSource::Policy(self.me);
            self.hub.publish_live(source, generation, p.live());
        }
    }

    /// How long until unpublished rows are due to be published, if there are any.
    fn due(&self) -> Option<std::time::Duration> {
        self.dirty.then(|| {
            self.published.map_or(std::time::Duration::ZERO, |t| {
                PUBLISH_EVERY.saturating_sub(t.elapsed())
            })
        })
    }

    fn publish(&mut self, clock: Timestamp, now: bool) {
        if !now && self.published.is_some_and(|t| t.elapsed() < PUBLISH_EVERY) {
            return;
        }
        self.tables.seal();
        self.hub.publish(self.me, self.tables.snapshot(), clock);
        self.published = Some(Instant::now());
        self.dirty = false;
    }
}

/// What a worker does next.
enum Wake {
    Batch(Option<Vec<Work>>),
    /// A batch taken in earlier is next.
    Held,
    Policy(Option<PolicyMsg>),
    Due,
    Live,
}

/// Resolves when a query asks `retain` for live state (never without one).
async fn live_asked(retain: &mut Option<Retain>) {
    let asked = match retain.as_mut() {
        Some(r) => r.requests.changed().await.is_ok(),
        None => false,
    };
    if !asked {
        std::future::pending::<()>().await;
    }
}

/// Writes the output the worker holds back, and its own partition's policies', once it is due.
fn write_held(p: &mut Pending, policies: &mut Policies, idle: bool) -> Result<(), LogError> {
    let held = policies.local.as_ref().map_or(0, Local::unwritten);
    if !p.write_due(idle, held) {
        return Ok(());
    }
    p.write()?;
    if let Some(local) = &mut policies.local {
        local.write()?;
    }
    Ok(())
}

/// Runs one partition worker until the sequencer hangs up.
pub async fn run(
    mut worker: Worker,
    mut rx: mpsc::Receiver<Vec<Work>>,
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
    mut policies: Policies,
    mut retain: Option<Retain>,
) -> Result<Worker, LogError> {
    let m = metrics::get();
    let n = policies.tasks.len() as u32;
    let mut p = Pending {
        sinks,
        stats,
        actions: Vec::new(),
        read_ats: Vec::new(),
        arrived: Vec::new(),
        unwritten: Vec::new(),
        unwritten_read_ats: Vec::new(),
        written_at: Instant::now(),
        buf: Vec::with_capacity(4096),
        latencies: Vec::new(),
        outbox: (0..policies.tasks.len()).map(|_| Vec::new()).collect(),
        direct: policies.direct,
    };
    let mut last_timers = 0i64;
    let mut backlog = Backlog::new(rx.max_capacity());
    loop {
        // Batches already waiting are taken in at once: states they ask for may go
        // ahead of their turn (see `backlog`). The first of them is ready work.
        backlog.take_waiting(&mut rx, &mut worker);
        let held = !backlog.is_empty();
        // Rows not yet published go out within a second even if nothing else arrives,
        // and a request for live state is answered at once.
        let due = retain.as_ref().and_then(Retain::due);
        let wake = tokio::select! {
            b = rx.recv(), if !held => Wake::Batch(b),
            _ = std::future::ready(()), if held => Wake::Held,
            _ = async {
                match due {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            } => Wake::Due,
            m = async {
                match policies.local.as_mut() {
                    Some(l) if l.open() => l.recv().await,
                    _ => std::future::pending().await,
                }
            } => Wake::Policy(m),
            _ = live_asked(&mut retain) => Wake::Live,
        };
        let batch = match wake {
            Wake::Batch(Some(b)) => {
                backlog.admit(b, &mut worker);
                backlog.take_waiting(&mut rx, &mut worker);
                backlog.pop()
            }
            Wake::Batch(None) => break,
            Wake::Held => backlog.pop(),
            Wake::Policy(msg) => {
                if let (Some(msg), Some(local)) = (msg, &mut policies.local) {
                    local.take(msg)?;
                }
                write_held(&mut p, &mut policies, rx.is_empty() && !held)?;
                continue;
            }
            Wake::Due => {
                if let Some(r) = &mut retain {
                    r.publish(worker.clock(), true);
                }
                continue;
            }
            Wake::Live => {
                if let Some(r) = &mut retain {
                    r.publish_live(&worker, policies.local.as_ref());
                }
                continue;
            }
        };
        let Some(batch) = batch else { continue };
        for work in batch {
            // A late event's input takes its place where this clock stands (see
            // `Policy::push_arrived`).
            let arrived = worker.clock();
            let read_at = match work {
                Work::Event {
                    key,
                    event,
                    read_at,
                } => {
                    worker.on_event(&key, &event, &mut p.actions);
                    expire(&mut worker, &mut p, event.timestamp, arrived);
                    if let Some(r) = &mut retain {
                        r.tables.append_event(&key, &event);
                        r.dirty = true;
                    }
                    if !p.direct
                        && let Some(fact) = Fact::of(&key, &event)
                    {
                        let fact = Input::Fact(event.timestamp, fact);
                        p.outbox[policies.me as usize].push((arrived, fact));
                    }
                    read_at
                }
                Work::Advance { clock, read_at } => {
                    // A big clock jump fires many timers: write them in bounded chunks.
                    while !worker.advance_some(clock, &mut p.actions, CHUNK) {
                        p.mark(read_at, arrived);
                        p.emit()?;
                    }
                    expire(&mut worker, &mut p, clock, arrived);
                    read_at
                }
                Work::Merge { from, into, at } => {
                    // Timers due before the `identify` fire first, as before any event.
                    worker.fire_before(at, &mut p.actions);
                    worker.merge(&from, &into, &mut p.actions);
                    let clock = worker.clock();
                    expire(&mut worker, &mut p, clock, arrived);
                    Instant::now()
                }
                Work::Snapshot { reply, policy } => {
                    // Actions of events before the barrier are in the log (or with
                    // their policies, ahead of the barrier) before the state that
                    // says they fired is in a checkpoint.
                    p.emit()?;
                    policies.send(&mut p, worker.clock(), Some(policy), false)?;
                    let paused = Instant::now();
                    let snap = worker.snapshot();
                    p.stats.worker_paused(paused.elapsed());
                    let _ = reply.send(snap);
                    continue;
                }
                Work::Erase { key, at } => {
                    worker.fire_before(at, &mut p.actions);
                    worker.erase(&key);
                    if let Some(r) = &mut retain {
                        r.tables.erase(&key);
                        r.publish(worker.clock(), true);
                    }
                    if partition_for(&key, n) == policies.me {
                        if let Some(r) = &retain {
                            r.hub.erase_actions(&key);
                        }
                        let fact = Fact::Erase { key };
                        p.outbox[policies.me as usize].push((arrived, Input::Fact(at, fact)));
                    }
                    Instant::now()
                }
                Work::Export { key, reply, at } => {
                    worker.fire_before(at, &mut p.actions);
                    if let Some(reply) = reply {
                        let _ = reply.send(worker.export(&key));
                    }
                    Instant::now()
                }
                Work::Import { key, states, at } => {
                    worker.fire_before(at, &mut p.actions);
                    if let Ok(states) = states.await {
                        worker.import(&key, states, &mut p.actions);
                    }
                    let clock = worker.clock();
                    expire(&mut worker, &mut p, clock, arrived);
                    Instant::now()
                }
            };
            p.mark(read_at, arrived);
            if !p.direct {
                p.route();
                if p.queued() >= SEND_AT {
                    policies.send(&mut p, worker.clock(), None, false)?;
                }
            }
        }
        p.route();
        // Input short of `SEND_AT` waits for the next batch's while more batches wait:
        // fewer, fuller messages (and wake-ups) for other partitions; nothing is held
        // once the worker is idle.
        let idle = rx.is_empty() && backlog.is_empty();
        if idle {
            policies.send(&mut p, worker.clock(), None, false)?;
        }
        write_held(&mut p, &mut policies, idle)?;
        if let Some(r) = &mut retain {
            r.publish(worker.clock(), false);
            if r.live_asked() {
                r.publish_live(&worker, policies.local.as_ref());
            }
        }
        for (op, n) in worker.take_evicted() {
            m.state_evicted.with_label_values(&[op]).inc_by(n);
        }
        let timers = worker.timers_pending() as i64;
        m.timers_pending.add(timers - last_timers);
        last_timers = timers;
    }
    m.timers_pending.sub(last_timers);
    tracing::debug!(
        worker = policies.me,
        exports = backlog.exports,
        early = backlog.early,
        "devices' states exported, and of them sent ahead of their turn"
    );
    p.emit()?;
    if let Some(local) = &mut policies.local {
        local.write()?;
    }
    if let Some(r) = &mut retain {
        r.publish(worker.clock(), true);
    }
    // The input ended: the policies apply everything up to this worker's clock. Other
    // partitions' hear no more from it; its own take the other workers' input until
    // they have all sent their last.
    policies.send(&mut p, worker.clock(), None, true)?;
    policies.tasks.iter_mut().for_each(|t| *t = None);
    if let Some(local) = &mut policies.local {
        loop {
            let msg = tokio::select! {
                m = local.recv() => Some(m),
                _ = live_asked(&mut retain) => None,
            };
            match msg {
                Some(Some(msg)) => {
                    local.take(msg)?;
                    local.write()?;
                }
                Some(None) => break,
                None => {
                    if let Some(r) = &mut retain {
                        r.publish_live(&worker, Some(local));
                    }
                }
            }
        }
        local.finish()?;
    }
    if let Some(local) = policies.local.take() {
        local.release();
    }
    Ok(worker)
}

//! The delivery policies of each output partition (of the partitions this process
//! owns, when several share the pipeline), between the partition workers and the
//! `notifications`, `suppressions` and `conversions` topics.
//!
//! A partition's customers are its worker's, so the worker applies their policies
//! itself ([`Local`]): its own actions and facts go in by call, with no message, no
//! other thread and no cold cache between them. Every other worker sends it batches:
//! the customer-facing actions it made for these customers (a store's offers) and its
//! progress (the pipeline clock it has reached). Input applies only once every worker
//! has passed it, in (time, kind, worker, sequence) order, so the outcome does not
//! depend on which worker's message came first. A checkpoint barrier is aligned: after
//! a worker's barrier its later input waits until every worker's barrier is in, then
//! the output is written and the state sent.

use std::collections::VecDeque;
use std::sync::Arc;

use footfall_operators::action::OutputTopic;
use footfall_operators::policy::{Input, Output, Policy};
use footfall_operators::state::StateImage;
use footfall_operators::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::sink::{Sinks, encode};
use super::stats::Stats;
use crate::log::LogError;
use crate::metrics::{self, ByTrigger};
use prometheus::core::{AtomicF64, AtomicU64};

/// What a worker sends a partition's policies.
pub struct PolicyMsg {
    /// The sending worker.
    pub from: u32,
    /// Actions and facts, in the worker's order, each with the worker's clock when it
    /// was made (a late event's input takes its place there: see
    /// [`Policy::push_arrived`]).
    pub items: Vec<(Timestamp, Input)>,
    /// The worker's clock: everything it sends later is at or after it (late events
    /// aside).
    pub progress: Timestamp,
    /// A checkpoint barrier follows these items.
    pub barrier: Option<Barrier>,
}

/// A worker passed a checkpoint barrier.
pub struct Barrier {
    /// Where the policies' state goes (from the partition's own worker only).
    pub reply: Option<oneshot::Sender<Box<dyn StateImage>>>,
}

/// Restores `policy` from its checkpoint image.
pub fn restore(policy: &mut Policy, image: &dyn StateImage) -> Result<(), String> {
    let mut failed = None;
    image.encode(&mut |key, bytes| {
        if failed.is_none()
            && let Err(e) = policy.restore(key, bytes)
        {
            failed = Some(e);
        }
    });
    failed.map_or(Ok(()), Err)
}

/// The policies of a worker's own customers (one output partition's), applied on the
/// worker's task: its own actions and facts go in by call, other workers' (and the SQL
/// rules') by message.
pub struct Local {
    policy: Policy,
    /// Other workers' and the SQL rules' input; `None` once every sender is gone.
    rx: Option<mpsc::UnboundedReceiver<PolicyMsg>>,
    /// Per worker: its clock, the inputs taken from it, whether its barrier is in.
    progress: Vec<Timestamp>,
    seq: Vec<u64>,
    aligned: Vec<bool>,
    reply: Option<oneshot::Sender<Box<dyn StateImage>>>,
    /// Messages from workers past a barrier that is not yet aligned.
    stash: VecDeque<PolicyMsg>,
    out: Output,
    /// The buffer of items last taken in, emptied, for the worker's next batch: an
    /// outbox that starts empty grows (and copies itself) a dozen times per batch.
    spare: Vec<(Timestamp, Input)>,
    /// Actions held, as last added to `footfall_actions_held`.
    held: i64,
    counters: Counters,
    buf: Vec<u8>,
    sinks: Arc<Sinks>,
    stats: Arc<Stats>,
}

impl Local {
    /// `policy`, for a pipeline of `workers` workers, taking others' input from `rx`.
    pub fn new(
        policy: Policy,
        rx: mpsc::UnboundedReceiver<PolicyMsg>,
        workers: usize,
        sinks: Arc<Sinks>,
        stats: Arc<Stats>,
    ) -> Self {
        Local {
            policy,
            rx: Some(rx),
            progress: vec![Timestamp::MIN; workers],
            seq: vec![0; workers],
            aligned: vec![false; workers],
            reply: None,
            stash: VecDeque::new(),
            out: Output::default(),
            spare: Vec::new(),
            held: 0,
            counters: Counters::new(),
            buf: Vec::with_capacity(4096),
            sinks,
            stats,
        }
    }

    /// The next message from another worker or the rules; `None` once they have all
    /// hung up (and ever after).
    pub async fn recv(&mut self) -> Option<PolicyMsg> {
        let msg = self.rx.as_mut()?.recv().await;
        if msg.is_none() {
            self.rx = None;
        }
        msg
    }

    /// Whether input may still come by message.
    pub fn open(&self) -> bool {
        self.rx.is_some()
    }

    /// Takes in `msg`, and what else is already queued. What they decide waits for
    /// [`write`](Self::write): one write (and one flush per partition) for the lot.
    pub fn take(&mut self, msg: PolicyMsg) -> Result<(), LogError> {
        self.on_msg(msg)?;
        for _ in 1..DRAIN {
            let Some(Ok(msg)) = self.rx.as_mut().map(|rx| rx.try_recv()) else {
                break;
            };
            self.on_msg(msg)?;
        }
        Ok(())
    }

    /// Output decided and not yet written (see [`write`](Self::write)).
    pub fn unwritten(&self) -> usize {
        self.out.written.len() + self.out.suppressed.len() + self.out.conversions.len()
    }

    /// No more input will come: applies everything up to the last clock (the end of a
    /// replay) and writes it.
    pub fn finish(&mut self) -> Result<(), LogError> {
        for msg in std::mem::take(&mut self.stash) {
            self.push(msg);
        }
        self.policy.finish(self.frontier(), &mut self.out);
        self.write()
    }

    /// Ends these policies: their state goes to [`super::release`], the rest is dropped.
    pub fn release(self) {
        super::release(self.policy);
    }

    /// Each customer's consent, zone and home store (SQL's `customers` table).
    pub fn live(&self) -> footfall_operators::live::Live {
        self.policy.live()
    }
}

/// Messages a worker takes in for its policies, at most, before it writes what they
/// decided.
const DRAIN: usize = 64;

/// The counters the policies add to, per trigger.
struct Counters {
    actions: ByTrigger<AtomicU64>,
    suppressed: ByTrigger<AtomicU64>,
    conversions: ByTrigger<AtomicU64>,
    value: ByTrigger<AtomicF64>,
}

impl Counters {
    fn new() -> Self {
        let m = metrics::get();
        Counters {
            actions: ByTrigger::new(&m.actions),
            suppressed: ByTrigger::new(&m.suppressed),
            conversions: ByTrigger::new(&m.conversions),
            value: ByTrigger::new(&m.conversion_value),
        }
    }
}

impl Local {
    /// Every worker has passed this clock.
    fn frontier(&self) -> Timestamp {
        self.progress
            .iter()
            .copied()
            .min()
            .unwrap_or(Timestamp::MIN)
    }

    /// Takes in `msg`, and the messages stashed behind a barrier once it is aligned.
    /// Output waits for [`write`](Self::write) but at a barrier.
    fn on_msg(&mut self, msg: PolicyMsg) -> Result<(), LogError> {
        self.on_one(msg)?;
        while self.aligned.iter().all(|a| !a) {
            let Some(next) = self.stash.pop_front() else {
                break;
            };
            self.on_one(next)?;
        }
        Ok(())
    }

    fn on_one(&mut self, mut msg: PolicyMsg) -> Result<(), LogError> {
        let from = msg.from as usize;
        if self.aligned[from] {
            self.stash.push_back(msg);
            return Ok(());
        }
        let barrier = msg.barrier.take();
        self.push(msg);
        self.policy.advance(self.frontier(), &mut self.out);
        if let Some(b) = barrier {
            self.aligned[from] = true;
            if b.reply.is_some() {
                self.reply = b.reply;
            }
            if self.aligned.iter().all(|a| *a) {
                // Output before state: what the checkpoint says was decided is written.
                self.write()?;
                if let Some(r) = self.reply.take() {
                    // The worker that applies these policies pauses for their copy too.
                    let paused = std::time::Instant::now();
                    let image = self.policy.snapshot();
                    self.stats.worker_paused(paused.elapsed());
                    let _ = r.send(image);
                }
                self.aligned.iter_mut().for_each(|a| *a = false);
            }
        }
        Ok(())
    }

    /// Hands `msg`'s items to the policies and records the sender's progress.
    fn push(&mut self, msg: PolicyMsg) {
        let from = msg.from as usize;
        let mut items = msg.items;
        for (arrived, input) in items.drain(..) {
            self.policy
                .push_arrived(msg.from, self.seq[from], arrived, input, &mut self.out);
            self.seq[from] += 1;
        }
        if items.capacity() > self.spare.capacity() {
            self.spare = items;
        }
        self.progress[from] = self.progress[from].max(msg.progress);
    }

    /// An empty buffer for a worker's next items, with the room the last ones took.
    pub fn spare(&mut self) -> Vec<(Timestamp, Input)> {
        std::mem::take(&mut self.spare)
    }

    /// Writes the output decided so far: actions, suppressions and conversions, and
    /// counts them. Its worker calls it when it is about to wait, or holds enough.
    pub fn write(&mut self) -> Result<(), LogError> {
        let m = metrics::get();
        let held = self.policy.held() as i64;
        m.actions_held.add(held - self.held);
        self.held = held;
        if self.out.is_empty() {
            return Ok(());
        }
        let out = &mut self.out;
        let now = Timestamp::now();
        if !out.written.is_empty() {
            self.sinks.write_actions(&mut out.written, &mut self.buf)?;
            out.written.retain(|a| a.emitted_at.is_some());
            for a in &out.written {
                self.counters
                    .actions
                    .get(a.trigger(), a.group.as_str())
                    .inc();
            }
            self.stats.actions(&out.written, &[]);
        }
        for s in &mut out.suppressed {
            s.action.emitted_at = Some(now);
            self.counters
                .suppressed
                .get(s.action.trigger(), s.reason.as_str())
                .inc();
        }
        self.stats.suppressed(&out.suppressed);
        let records = out.suppressed.iter().map(|s| {
            let key = s.action.customer_id().unwrap_or("");
            (key, s.action.action_id(), s)
        });
        self.sinks.write_records(
            OutputTopic::Suppressions,
            records,
            &mut self.buf,
            |buf, s| s.encode(buf),
        )?;
        self.sinks.record_suppressions(&out.suppressed);
        for c in &out.conversions {
            let group = c.group.as_str();
            self.counters.conversions.get(&c.trigger, group).inc();
            let value = c.value.try_into().unwrap_or(0.0f64);
            self.counters.value.get(&c.trigger, group).inc_by(value);
        }
        let records = out
            .conversions
            .iter()
            .map(|c| (c.customer_id.as_str(), c.conversion_id.as_str(), c));
        self.sinks
            .write_records(OutputTopic::Conversions, records, &mut self.buf, encode)?;
        m.actions_erased.inc_by(out.erased);
        m.actions_deduplicated.inc_by(out.duplicates);
        out.written.clear();
        out.suppressed.clear();
        out.conversions.clear();
        out.erased = 0;
        out.duplicates = 0;
        Ok(())
    }
}

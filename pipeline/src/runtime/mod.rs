//! The streaming runtime: sources → sequencer → partition workers → sinks, on tokio.
//!
//! ```text
//!  source (topic, partition) ──┐  bounded   ┌── worker 0 ── notifications/0, ...
//!  source (topic, partition) ──┼─► sequencer ┼── worker 1 ── notifications/1, ...
//!  ...                      ───┘  channels  └── ...
//! ```
//! Sources read and decode in parallel; the sequencer orders events by event time and
//! keeps the pipeline clock; worker `i` owns the keys that hash to partition `i`. Every
//! channel is bounded, so a slow sink slows the sources.
//!
//! Several processes may share one pipeline ([`assign`]): each runs all of this, owns
//! a share of the partitions, and applies delivery policies and runs output writers for
//! those only.

pub mod assign;
mod backlog;
pub mod checkpointer;
pub mod clock;
pub mod dedupe;
mod exit;
pub mod policy;
pub mod sequencer;
pub mod shard;
pub mod sink;
pub mod source;
pub mod stats;
pub mod topics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use footfall_operators::event::Topic;
use footfall_operators::policy::{Policy, Settings};
use footfall_operators::time::{Span, Timestamp};
use footfall_operators::triggers;
use footfall_operators::worker::Worker;
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::checkpoint::Store;
use crate::config::{Config, TransportKind};
use crate::log::{Log, LogError};
use checkpointer::Checkpointer;
use clock::{Clock, Mode};
use dedupe::Dedupe;
pub(crate) use exit::release;
use sink::Sinks;
use source::{Pacer, Source, SourceMsg};
use stats::Stats;
use topics::Topics;

/// The tokio runtime footfall runs on: one thread per core, every task stealable.
///
/// tokio runs a task woken by a running one next on the same thread (its LIFO slot,
/// which other threads cannot steal). When a worker that merges a customer waits for the
/// device's state, the worker exporting it wakes it: the importer then waits behind the
/// exporter's whole batch on the exporter's thread, while its own thread idles, and runs
/// there with its state in the other core's cache. With the slot off it goes to a queue
/// the idle thread steals from. On `footfall bench` (35,000 such imports, 15,000 of them
/// waiting) this took what the identity graph and policies add from +32.8 to +21.7 % of
/// wall time in one set of interleaved rounds and from +31.7 to +16.9 % in another (a
/// third, on a busier machine, saw no change); the run without them did not change.
pub fn builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
}

/// How a run is driven.
pub struct RunOptions {
    /// Replay or live.
    pub mode: Mode,
    /// Replay: where the clock ends (default: the largest event time read).
    pub until: Option<Timestamp>,
    /// Pace all sources together to this many records a second (benchmarks).
    pub rate: Option<f64>,
    /// Flips to true to stop a live run gracefully.
    pub shutdown: watch::Receiver<bool>,
    /// Live: stop once every source has read all there is (paced benchmarks over a
    /// finite input), instead of waiting for more.
    pub exit_at_end: bool,
    /// Where workers publish their retained tables for SQL (the service); `None`
    /// retains nothing.
    pub sql: Option<Arc<footfall_sql::hub::Hub>>,
    /// Actions of SQL rules, to send through the delivery policies (customer-facing)
    /// or write (alerts, markdowns).
    pub rule_actions: Option<mpsc::Receiver<Vec<footfall_operators::action::Action>>>,
    /// SQL rules' priorities as they change, for arbitration (with `rule_actions`).
    pub rule_priorities: Option<watch::Receiver<std::collections::BTreeMap<String, i32>>>,
    /// Measuring only, never for customers: no delivery policies. Customer-facing
    /// actions go straight to `notifications`. With `without_identity`, the baseline
    /// `footfall bench --policy-cost` measures the two against.
    pub without_policies: bool,
    /// Measuring only, never for customers: no identity graph. Events are keyed by
    /// their own ids (a device is never its customer).
    pub without_identity: bool,
    /// The process exits once the run returns: at the clean stop, the state is not
    /// freed (see [`release`]).
    pub exiting: bool,
}

/// What a run did.
pub struct Summary {
    /// Counters.
    pub stats: Arc<Stats>,
    /// Wall time from start to the last output flushed.
    pub elapsed: Duration,
    /// The pipeline clock at the end.
    pub clock: Timestamp,
    /// Replay: events after `--until`, not applied.
    pub beyond_until: u64,
    /// Keys holding state per operator at the end.
    pub state_keys: Vec<(&'static str, usize)>,
    /// Timers still pending at the end.
    pub timers_pending: usize,
    /// Resident memory with all state still held, bytes (Linux).
    pub rss_bytes: Option<u64>,
    /// The checkpoint the run resumed from, and the time from start to resuming.
    pub resumed: Option<(u64, Duration)>,
    /// From start until the last event was processed and its actions handed to the
    /// sinks: `elapsed` without the checkpoint at the clean stop and the shutdown.
    pub processing: Duration,
}

/// A run that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Reading or writing the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A task of the runtime failed.
    #[error("runtime task failed: {0}")]
    Task(String),
    /// The checkpoint store cannot be used, or a checkpoint does not fit this config.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// Runs the pipeline over the topics in `log` until the input is exhausted (replay) or
/// `opts.shutdown` flips (live).
pub async fn run(cfg: &Config, log: &Log, opts: RunOptions) -> Result<Summary, RuntimeError> {
    // The sequencer runs in this future: on a runtime worker, not the caller's thread, so
    // the pipeline uses exactly the runtime's threads (one per core).
    let (cfg, log) = (cfg.clone(), log.clone());
    tokio::spawn(async move { run_here(&cfg, &log, opts).await })
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))?
}

/// Replays `log` in event time to the end of its input, then to `until` (default: the
/// largest event time read): `footfall replay` and the demo. With `rate`, reads at most
/// that many records a second, all topics together.
pub async fn replay(
    cfg: &Config,
    log: &Log,
    until: Option<Timestamp>,
    rate: Option<f64>,
) -> Result<Summary, RuntimeError> {
    let (_stop, shutdown) = watch::channel(false);
    let opts = RunOptions {
        mode: Mode::Replay,
        until,
        rate,
        shutdown,
        exit_at_end: false,
        sql: None,
        rule_actions: None,
        rule_priorities: None,
        without_policies: false,
        without_identity: false,
        exiting: false,
    };
    run(cfg, log, opts).await
}

async fn run_here(cfg: &Config, log: &Log, opts: RunOptions) -> Result<Summary, RuntimeError> {
    let started = Instant::now();
    let mut processing: Option<Duration> = None;
    let n = cfg.transport.partitions.max(1);
    let cap = cfg.runtime.channel_batches.max(1);
    let share = assign::Assignment::new(cfg.transport.worker_index, cfg.transport.worker_count)
        .map_err(|e| RuntimeError::Task(format!("config: {e}")))?;
    let topics = match cfg.transport.kind {
        TransportKind::Embedded => Topics::Log(log.clone()),
        TransportKind::Fluvio => Topics::Fluvio(
            crate::fluvio::Cluster::connect(&cfg.transport)
                .await
                .map_err(LogError::from)?,
        ),
    };
    let replication = cfg.transport.replication.max(1);
    if opts.mode == Mode::Live {
        let names: Vec<&str> = Topic::ALL.iter().map(|t| t.name()).collect();
        topics.create(&names, n, replication).await?;
    }
    for w in cfg.warnings() {
        info!(note = %w, "config");
    }
    let store = match cfg.checkpoint.enabled {
        true => Some(
            Store::open(
                &cfg.checkpoint_location(log.dir()),
                cfg.checkpoint.keep,
                &cfg.checkpoint.options,
            )
            .map_err(|e| RuntimeError::Checkpoint(e.to_string()))?
            .with_share(share.index(), share.count()),
        ),
        false => None,
    };
    let restored = match &store {
        Some(s) => s
            .load_newest()
            .await
            .map_err(|e| RuntimeError::Checkpoint(e.to_string()))?,
        None => None,
    };
    if let Some((m, _)) = &restored
        && m.workers != n
    {
        return Err(RuntimeError::Checkpoint(format!(
            "checkpoint {} has {} partition workers but transport.partitions is {n}; \
             start with the same partition count (or checkpoint.enabled = false)",
            m.id, m.workers
        )));
    }
    if let Some((m, _)) = &restored
        && (m.worker_count, m.worker_index) != (share.count(), share.index())
    {
        return Err(RuntimeError::Checkpoint(format!(
            "checkpoint {} was written by worker {} of {}, and this is worker {} of {}: each \
             worker's checkpoints hold its own partitions, so the worker count cannot change \
             under them (see the README: changing the worker count)",
            m.id,
            m.worker_index,
            m.worker_count,
            share.index(),
            share.count()
        )));
    }
    let (manifest, mut data) = match restored {
        Some((m, d)) => (Some(m), Some(d)),
        None => (None, None),
    };
    let since = manifest.as_ref().map(|m| m.outputs.as_slice());
    let mut sinks = Sinks::open_share(&topics, n, replication, since, share).await?;
    if let Some(hub) = &opts.sql {
        sinks.record_to(hub.actions(|| crate::sql::tables(&cfg.sql)));
    }
    let sinks = Arc::new(sinks);
    let stats = Arc::new(Stats::default());

    let wanted = Worker::new(triggers::build(&cfg.triggers)).interest();
    // SQL keeps every event, not only those the triggers read.
    let interest = if opts.sql.is_some() {
        footfall_operators::event::Interest::ALL
    } else {
        wanted
    };
    let settings = Settings::from_config(&cfg.policy, &cfg.triggers.birthday.default_timezone)
        .map_err(|e| RuntimeError::Task(format!("config: {e}")))?;
    let mut sources = Vec::new();
    let mut inputs = Vec::new();
    let mut held = Vec::new();
    for topic in Topic::ALL {
        let Some(parts) = topics.partitions(topic.name()).await? else {
            continue;
        };
        for p in 0..parts {
            let saved = data.as_ref().and_then(|d| {
                d.sequencer
                    .sources
                    .iter()
                    .find(|s| s.topic == topic.name() && s.partition == p)
            });
            let start = saved.map_or(0, |s| s.next_offset);
            held.push(match saved {
                Some(s) => checkpointer::read_held(&topics, s).await?,
                None => Vec::new(),
            });
            sources.push(Source {
                src: sources.len(),
                topic,
                partition: p,
                reader: topics.reader(topic.name(), p, start, opts.mode == Mode::Replay)?,
                end: topics.end(topic.name(), p),
                batch_records: cfg.runtime.batch_records,
                interest,
            });
            // A size hint for the dedupe set.
            let expected = topics.records_hint(topic.name(), p)? as usize;
            inputs.push(sequencer::Input {
                topic,
                partition: p,
                next_offset: start,
                dedupe: Dedupe::new(cfg.runtime.dedupe_window_secs, expected),
            });
        }
    }
    info!(sources = sources.len(), workers = n, mode = ?opts.mode, "pipeline starting");

    let mut worker_txs = Vec::new();
    let mut worker_tasks = Vec::new();
    // Each partition's policies run on its worker; the others reach them by channel.
    // Unbounded: two workers sending to each other must never wait on each other (the
    // sequencer's bounded batches are what hold a fast worker back).
    let mut policy_txs = Vec::new();
    let mut locals = Vec::new();
    for i in 0..n as usize {
        let saved = data.as_mut().and_then(|d| {
            let at = d.workers[i]
                .operators
                .iter()
                .position(|(name, _)| name == checkpointer::POLICY)?;
            Some(d.workers[i].operators.remove(at).1)
        });
        if !share.owns(i as u32) || opts.without_policies {
            // Another process runs this partition's policies (or none does).
            policy_txs.push(None);
            locals.push(None);
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut policy = Policy::new(settings.clone());
        if let Some(image) = saved {
            policy::restore(&mut policy, image.as_ref())
                .map_err(|e| RuntimeError::Checkpoint(format!("policy {i}: {e}")))?;
        }
        let local = policy::Local::new(policy, rx, n as usize, sinks.clone(), stats.clone());
        locals.push(Some(local));
        policy_txs.push(Some(tx));
    }
    for i in 0..n as usize {
        let (tx, rx) = mpsc::channel(cap);
        let mut worker = Worker::new(triggers::build(&cfg.triggers)).with_state_ttl(
            Span::from_secs(cfg.clock.state_ttl_days.saturating_mul(86_400) as i64),
        );
        if let Some(d) = &mut data {
            let snap = std::mem::take(&mut d.workers[i]);
            let notes = worker
                .restore(snap)
                .map_err(|e| RuntimeError::Checkpoint(format!("worker {i}: {e}")))?;
            for note in notes {
                info!(worker = i, note, "checkpoint restore");
            }
        }
        let mut tasks = policy_txs.clone();
        // Its own partition's policies it applies itself.
        tasks[i] = None;
        let policies = shard::Policies {
            me: i as u32,
            local: locals[i].take(),
            tasks,
            sent: vec![Timestamp::MIN; n as usize],
            direct: opts.without_policies,
        };
        let retain = opts
            .sql
            .as_ref()
            .map(|hub| shard::Retain::new(crate::sql::tables(&cfg.sql), hub.clone(), i as u32));
        worker_tasks.push(tokio::spawn(shard::run(
            worker,
            rx,
            sinks.clone(),
            stats.clone(),
            policies,
            retain,
        )));
        worker_txs.push(tx);
    }
    if let Some(hub) = &opts.sql {
        hub.expect(n as usize);
        // Each worker answers for its share of the live state, and again for its
        // partition's policies where this process applies them.
        let owned = (0..n).filter(|&p| share.owns(p)).count();
        hub.expect_live(n as usize + owned);
    }
    if let Some(rx) = opts.rule_actions {
        tokio::spawn(forward_rule_actions(
            rx,
            opts.rule_priorities,
            policy_txs.clone(),
            sinks.clone(),
        ));
    }
    // The workers (and the rules' forwarder) hold the only senders: a worker's policies
    // take input until every other one has hung up.
    drop(policy_txs);

    let clock = Clock::new(
        opts.mode,
        sources.len(),
        Span::from_secs(cfg.clock.allowed_lateness_secs as i64),
        Duration::from_secs(cfg.clock.idle_timeout_secs),
        Instant::now(),
    );
    let mut resumed = None;
    let sale = footfall_operators::event::Interest::types(&["sale"]);
    let mut seq =
        sequencer::Sequencer::new(clock, inputs, sinks.clone(), worker_txs, stats.clone())
            .with_sales(wanted.union(sale) == wanted)
            .with_link_any_event(cfg.identity.link_any_event)
            .with_share(share);
    if opts.without_identity {
        seq = seq.without_identity();
    }
    if let (Some(m), Some(d)) = (&manifest, &data) {
        seq.restore(&d.sequencer, held);
        let secs = started.elapsed().as_secs_f64();
        info!(checkpoint = m.id, clock = %m.clock, secs, "resuming from checkpoint");
        resumed = Some((m.id, started.elapsed()));
    }
    drop(data);
    crate::metrics::get().checkpoint_interval.set(match &store {
        Some(_) => cfg.checkpoint.interval_secs,
        None => 0.0,
    });
    let mut ckpt = match &store {
        Some(s) => Some(
            Checkpointer::new(
                s.clone(),
                Duration::from_secs_f64(cfg.checkpoint.interval_secs),
                s.next_id()
                    .await
                    .map_err(|e| RuntimeError::Checkpoint(e.to_string()))?,
                stats.clone(),
            )
            .with_commits(match &topics {
                Topics::Fluvio(c) => Some(c.clone()),
                Topics::Log(_) => None,
            }),
        ),
        None => None,
    };
    let pacer = opts.rate.map(|r| Arc::new(Pacer::new(r)));

    let mut source_tasks = Vec::new();
    let mut beyond_until = 0;
    let mut shutdown = opts.shutdown.clone();
    let result = match opts.mode {
        Mode::Replay => {
            let mut rxs = Vec::new();
            for s in sources {
                let (tx, rx) = mpsc::channel::<SourceMsg>(cap);
                rxs.push(rx);
                let task = s.run(
                    opts.mode,
                    true,
                    tx,
                    stats.clone(),
                    pacer.clone(),
                    opts.shutdown.clone(),
                );
                source_tasks.push(tokio::spawn(task));
            }
            // Read next from the source that holds the clock back most: the order in
            // which batches are taken in, and so the clock's path, is deterministic.
            let mut r = Ok(());
            while let Some(src) = seq.clock().laggard() {
                match rxs[src].recv().await {
                    Some(msg) => {
                        let mut step = seq.on_msg(msg).await;
                        if step.is_ok()
                            && let Some(c) = &mut ckpt
                        {
                            step = c.maybe(&mut seq, &sinks, false).await;
                        }
                        if let Err(e) = step {
                            r = Err(e);
                            break;
                        }
                    }
                    None => break,
                }
            }
            if r.is_ok() {
                match seq.finish(opts.until).await {
                    Ok(b) => beyond_until = b,
                    Err(e) => r = Err(e),
                }
            }
            processing = Some(started.elapsed());
            exit::set(opts.exiting);
            if r.is_ok()
                && let Some(c) = &mut ckpt
            {
                r = c.maybe(&mut seq, &sinks, true).await;
            }
            r
        }
        Mode::Live => {
            let (tx, mut rx) = mpsc::channel::<SourceMsg>(cap * sources.len().max(1));
            for s in sources {
                let task = s.run(
                    opts.mode,
                    opts.exit_at_end,
                    tx.clone(),
                    stats.clone(),
                    pacer.clone(),
                    opts.shutdown.clone(),
                );
                source_tasks.push(tokio::spawn(task));
            }
            drop(tx);
            crate::metrics::get().up.set(1);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut r = Ok(());
            loop {
                let step = tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(m) => seq.on_msg(m).await,
                        None => {
                            if opts.exit_at_end {
                                r = seq.finish(None).await.map(|_| ());
                            }
                            processing = Some(started.elapsed());
                            exit::set(opts.exiting);
                            break;
                        }
                    },
                    _ = tick.tick() => match seq.release(Instant::now()).await {
                        Ok(()) => match &mut ckpt {
                            Some(c) => c.maybe(&mut seq, &sinks, false).await,
                            None => Ok(()),
                        },
                        Err(e) => Err(e),
                    },
                    _ = shutdown.changed() => {
                        exit::set(opts.exiting);
                        if let Some(c) = &mut ckpt {
                            r = c.maybe(&mut seq, &sinks, true).await;
                        }
                        break;
                    }
                };
                if let Err(e) = step {
                    r = Err(e);
                    break;
                }
            }
            crate::metrics::get().up.set(0);
            r
        }
    };
    let clock_end = seq.clock().now();
    release(seq.take_identity());
    drop(seq);
    if let Some(c) = &mut ckpt {
        c.wait().await;
    }

    let mut state_keys: Vec<(&'static str, usize)> = Vec::new();
    let mut timers_pending = 0;
    let mut first_error = None;
    let mut workers = Vec::new();
    for t in worker_tasks {
        match t.await {
            Ok(Ok(w)) => {
                timers_pending += w.timers_pending();
                for (name, k) in w.key_counts() {
                    match state_keys.iter_mut().find(|(n, _)| *n == name) {
                        Some(e) => e.1 += k,
                        None => state_keys.push((name, k)),
                    }
                }
                workers.push(w);
            }
            Ok(Err(e)) => first_error = first_error.or(Some(RuntimeError::Log(e))),
            Err(e) => first_error = first_error.or(Some(RuntimeError::Task(e.to_string()))),
        }
    }
    for t in source_tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => first_error = first_error.or(Some(RuntimeError::Log(e))),
            Err(e) => first_error = first_error.or(Some(RuntimeError::Task(e.to_string()))),
        }
    }
    let rss_bytes = crate::bench::memory().0;
    release(workers);
    if let Some(e) = first_error {
        return Err(e);
    }
    match result {
        Err(sequencer::WorkerGone::Log(e)) => return Err(RuntimeError::Log(e)),
        Err(sequencer::WorkerGone::Hungup) => {
            return Err(RuntimeError::Task("a partition worker stopped".into()));
        }
        Ok(()) => {}
    }
    sinks.sync().await?;
    Ok(Summary {
        stats,
        elapsed: started.elapsed(),
        processing: processing.unwrap_or_else(|| started.elapsed()),
        clock: clock_end,
        beyond_until,
        state_keys,
        timers_pending,
        rss_bytes,
        resumed,
    })
}

/// Sends SQL rules' actions on: customer-facing ones to their customer's policies (as
/// worker 0's input: an action due before what they have applied applies at once), the
/// others straight to their topic. The rules' priorities go to every partition's
/// policies first, and again whenever a rule changes. Ends when the rules stop.
async fn forward_rule_actions(
    mut rx: mpsc::Receiver<Vec<footfall_operators::action::Action>>,
    mut priorities: Option<watch::Receiver<std::collections::BTreeMap<String, i32>>>,
    tasks: Vec<Option<mpsc::UnboundedSender<policy::PolicyMsg>>>,
    sinks: Arc<sink::Sinks>,
) {
    use footfall_operators::action::OutputTopic;
    use footfall_operators::key::partition_for;
    use footfall_operators::policy::{Input, Packed};
    let n = tasks.len() as u32;
    let mut buf = Vec::new();
    let broadcast = |p: std::collections::BTreeMap<String, i32>| {
        let tasks = tasks.clone();
        async move {
            for t in tasks.iter().flatten() {
                let msg = policy::PolicyMsg {
                    from: 0,
                    items: vec![(Timestamp::MIN, Input::Priorities(p.clone()))],
                    progress: Timestamp::MIN,
                    barrier: None,
                };
                if t.send(msg).is_err() {
                    return false;
                }
            }
            true
        }
    };
    if let Some(p) = priorities.as_mut() {
        let now = p.borrow_and_update().clone();
        if !now.is_empty() && !broadcast(now).await {
            return;
        }
    }
    loop {
        let changed = async {
            let ok = match priorities.as_mut() {
                Some(p) => p.changed().await.is_ok(),
                None => false,
            };
            if !ok {
                std::future::pending::<()>().await;
            }
        };
        let actions = tokio::select! {
            a = rx.recv() => a,
            _ = changed => {
                let now = priorities.as_mut().map(|p| p.borrow_and_update().clone()).unwrap_or_default();
                if !broadcast(now).await {
                    return;
                }
                continue;
            }
        };
        let Some(actions) = actions else { break };
        let mut direct = Vec::new();
        let mut routed: Vec<Vec<(Timestamp, Input)>> = (0..n).map(|_| Vec::new()).collect();
        for a in actions {
            if a.topic == OutputTopic::Notifications {
                let p = partition_for(a.customer_id.as_deref().unwrap_or(""), n) as usize;
                routed[p].push((Timestamp::MIN, Input::Action(Packed::new(&a))));
            } else {
                direct.push(a);
            }
        }
        if let Err(e) = sinks.write_actions(&mut direct, &mut buf) {
            tracing::error!(error = %e, "writing SQL rules' actions");
        }
        for (p, items) in routed.into_iter().enumerate() {
            let Some(task) = &tasks[p] else {
                // Another process's customers.
                continue;
            };
            if items.is_empty() {
                continue;
            }
            let msg = policy::PolicyMsg {
                from: 0,
                items,
                progress: Timestamp::MIN,
                barrier: None,
            };
            if task.send(msg).is_err() {
                return;
            }
        }
    }
}

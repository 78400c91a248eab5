//! Per-run counters for the summary a run prints (Prometheus has the process-wide ones).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::sink::Outgoing;
use footfall_operators::action::{Action, Group};
use footfall_operators::event::Topic;

/// What one run did.
#[derive(Default)]
pub struct Stats {
    read: [AtomicU64; Topic::ALL.len()],
    deadlettered: AtomicU64,
    dead_reasons: Mutex<BTreeMap<&'static str, u64>>,
    duplicates: AtomicU64,
    late: AtomicU64,
    actions: Mutex<BTreeMap<(String, Group), u64>>,
    suppressed: Mutex<BTreeMap<(String, &'static str), u64>>,
    samples: Mutex<Vec<Action>>,
    latencies_us: Mutex<Vec<u32>>,
    /// Whether a checkpoint is being taken (barrier to manifest).
    checkpointing: AtomicBool,
    /// The latencies of actions written while one was.
    checkpointing_latencies_us: Mutex<Vec<u32>>,
    checkpoints: AtomicU64,
    checkpoint_max_us: AtomicU64,
    checkpoint_bytes: AtomicU64,
    stall_max_us: AtomicU64,
}

/// The checkpoints of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints written.
    pub count: u64,
    /// The longest, barrier to manifest, microseconds.
    pub max_us: u64,
    /// Size of the last, bytes.
    pub last_bytes: u64,
    /// The longest pause of the sequencer or a worker to copy its state, microseconds.
    pub max_stall_us: u64,
}

/// How many sample actions a run keeps for its summary.
const SAMPLES: usize = 3;

impl Stats {
    pub(crate) fn duplicates_seen(&self, dups: u64) {
        self.duplicates.fetch_add(dups, Ordering::Relaxed);
    }

    pub(crate) fn read(&self, topic: Topic, n: u64, dead: u64, dups: u64) {
        let i = Topic::ALL.iter().position(|&t| t == topic).unwrap_or(0);
        self.read[i].fetch_add(n, Ordering::Relaxed);
        self.deadlettered.fetch_add(dead, Ordering::Relaxed);
        self.duplicates.fetch_add(dups, Ordering::Relaxed);
    }

    pub(crate) fn dead_reason(&self, reason: &'static str) {
        *self
            .dead_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Dead-lettered records per reason.
    pub fn deadletter_reasons(&self) -> BTreeMap<&'static str, u64> {
        self.dead_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn late(&self, n: u64) {
        self.late.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn suppressed(&self, s: &[footfall_operators::policy::Suppression]) {
        if s.is_empty() {
            return;
        }
        let mut map = self.suppressed.lock().unwrap_or_else(|e| e.into_inner());
        for x in s {
            bump(&mut map, x.action.trigger(), x.reason.as_str());
        }
    }

    /// Suppressions per (trigger, reason).
    pub fn suppressed_by_reason(&self) -> BTreeMap<(String, &'static str), u64> {
        self.suppressed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn actions<A: Outgoing>(&self, actions: &[A], latencies_us: &[u32]) {
        let mut map = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        for a in actions {
            bump(&mut map, a.trigger(), a.group());
        }
        drop(map);
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        // The first few, and the first of every trigger.
        for a in actions.iter().filter(|a| a.group() == Group::Treatment) {
            if s.len() < SAMPLES || !s.iter().any(|x| x.trigger == a.trigger()) {
                s.push(a.to_action());
            }
        }
        drop(s);
        self.latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(latencies_us);
        if self.checkpointing.load(Ordering::Relaxed) {
            self.checkpointing_latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(latencies_us);
        }
    }

    /// Marks a checkpoint as being taken, or done.
    pub(crate) fn checkpointing(&self, on: bool) {
        self.checkpointing.store(on, Ordering::Relaxed);
    }

    pub(crate) fn checkpoint(&self, us: u64, bytes: u64) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_max_us.fetch_max(us, Ordering::Relaxed);
        self.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn stall(&self, us: u64) {
        self.stall_max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// A partition worker paused `d` to copy state for a checkpoint (its operators', or
    /// apart its policies'): `footfall_checkpoint_stall_seconds` and the longest pause.
    pub(crate) fn worker_paused(&self, d: std::time::Duration) {
        crate::metrics::get()
            .checkpoint_stall
            .observe(d.as_secs_f64());
        self.stall(d.as_micros() as u64);
    }

    /// The checkpoints written so far.
    pub fn checkpoints(&self) -> CheckpointStats {
        CheckpointStats {
            count: self.checkpoints.load(Ordering::Relaxed),
            max_us: self.checkpoint_max_us.load(Ordering::Relaxed),
            last_bytes: self.checkpoint_bytes.load(Ordering::Relaxed),
            max_stall_us: self.stall_max_us.load(Ordering::Relaxed),
        }
    }

    /// Records read per topic (topics with none left out).
    pub fn read_by_topic(&self) -> Vec<(Topic, u64)> {
        Topic::ALL
            .iter()
            .zip(&self.read)
            .map(|(&t, n)| (t, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Records read in all.
    pub fn total_read(&self) -> u64 {
        self.read.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Records sent to `deadletter`.
    pub fn deadlettered(&self) -> u64 {
        self.deadlettered.load(Ordering::Relaxed)
    }

    /// Redelivered records skipped.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Late records.
    pub fn late_events(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Actions written per (trigger, group).
    pub fn actions_by_trigger(&self) -> BTreeMap<(String, Group), u64> {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first few treatment actions.
    pub fn samples(&self) -> Vec<Action> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Event-to-action latency percentile `q` (0..=1), microseconds.
    pub fn latency_us(&self, q: f64) -> Option<u32> {
        percentile(&self.latencies_us, q)
    }

    /// The same, over the actions written while a checkpoint was being taken, and how
    /// many there were.
    pub fn checkpointing_latency_us(&self, q: f64) -> (Option<u32>, usize) {
        let n = self
            .checkpointing_latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        (percentile(&self.checkpointing_latencies_us, q), n)
    }
}

fn percentile(values: &Mutex<Vec<u32>>, q: f64) -> Option<u32> {
    let mut l = values.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if l.is_empty() {
        return None;
    }
    l.sort_unstable();
    let i = ((l.len() - 1) as f64 * q).round() as usize;
    Some(l[i])
}

/// Adds one to `(trigger, k)`. The few triggers are compared in place, so counting does
/// not allocate a key per action.
fn bump<K: Ord + Copy>(map: &mut BTreeMap<(String, K), u64>, trigger: &str, k: K) {
    match map.iter_mut().find(|((t, x), _)| *x == k && t == trigger) {
        Some((_, n)) => *n += 1,
        None => {
            map.insert((trigger.to_owned(), k), 1);
        }
    }
}

//! The end-to-end benchmark behind `footfall bench`: generate, write to the embedded log,
//! replay through decode → operators → action encode → log, and measure.

use std::path::Path;
use std::time::Instant;

use tokio::sync::watch;

use crate::config::Config;
use crate::generate::{self, Params};
use crate::log::{Log, LogError};
use crate::runtime::clock::Mode;
use crate::runtime::stats::CheckpointStats;
use crate::runtime::{self, RunOptions, RuntimeError};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchParams {
    /// About this many events.
    pub events: u64,
    /// Customers (default: one per 20 events).
    pub customers: Option<u64>,
    /// Pace the sources to this many events a second (latency runs).
    pub rate: Option<f64>,
    /// Generator seed.
    pub seed: u64,
    /// The memory workload: one open cart per customer instead of browsing sessions.
    pub open_carts: bool,
    /// No delivery policies (see [`crate::runtime::RunOptions::without_policies`]).
    pub without_policies: bool,
    /// No identity graph (see [`crate::runtime::RunOptions::without_identity`]); with
    /// `without_policies`, the baseline their cost is measured against.
    pub without_identity: bool,
    /// The process exits after the replay (see [`crate::runtime::RunOptions::exiting`]).
    pub exiting: bool,
}

/// The figures.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Records generated (and written).
    pub records: u64,
    /// Seconds to write them into the log.
    pub write_secs: f64,
    /// Events the replay read.
    pub events: u64,
    /// Seconds to replay them.
    pub replay_secs: f64,
    /// The replay's CPU seconds (user and system, every thread), page faults and waits.
    pub usage: Usage,
    /// Events read per second of replay.
    pub events_per_sec: f64,
    /// Events read per second of processing: the replay without the checkpoint at its
    /// end (the steady-state rate a long run sustains).
    pub processing_events_per_sec: f64,
    /// Seconds from the last event processed to the end (final checkpoint, shutdown).
    pub stop_secs: f64,
    /// Actions written.
    pub actions: u64,
    /// Event-to-action latency p50, microseconds.
    pub p50_us: Option<u32>,
    /// p99, microseconds.
    pub p99_us: Option<u32>,
    /// p99 of the actions written while a checkpoint was being taken, microseconds, and
    /// how many there were.
    pub checkpointing_p99_us: (Option<u32>, usize),
    /// Keys with state at the end.
    pub state_keys: usize,
    /// Resident memory after the replay, bytes (Linux).
    pub rss_bytes: Option<u64>,
    /// Peak resident memory of the process, bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Checkpoints taken during the run (and the one at its end).
    pub checkpoints: CheckpointStats,
}

/// One replay's figures, as a `--policy-cost` round's child process reports them.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// Events read.
    pub events: u64,
    /// Wall seconds.
    pub replay_secs: f64,
    /// CPU seconds.
    pub cpu_secs: f64,
    /// Of the wall seconds, those after the last event was processed: the final
    /// checkpoint and the shutdown.
    #[serde(default)]
    pub stop_secs: f64,
    /// Actions written.
    pub actions: u64,
    /// The replay's CPU seconds split, page faults and waits.
    #[serde(default)]
    pub usage: Usage,
    /// Peak resident memory of the process, bytes (0: not known).
    #[serde(default)]
    pub peak_rss_bytes: u64,
}

impl BenchReport {
    /// The figures a `--policy-cost` round compares.
    pub fn figures(&self) -> Figures {
        Figures {
            events: self.events,
            replay_secs: self.replay_secs,
            cpu_secs: self.usage.cpu_secs(),
            stop_secs: self.stop_secs,
            actions: self.actions,
            usage: self.usage,
            peak_rss_bytes: self.peak_rss_bytes.unwrap_or(0),
        }
    }
}

/// What this process has used so far, all threads (Linux and other Unix), from
/// `getrusage`; [`Usage::since`] gives what a stretch of work used.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// User CPU seconds.
    pub user_secs: f64,
    /// System CPU seconds: page faults, system calls, waking threads.
    pub sys_secs: f64,
    /// Page faults served without I/O: mostly memory touched for the first time.
    pub faults: u64,
    /// Voluntary context switches: a thread gave up its core to wait.
    pub waits: u64,
}

impl Usage {
    /// Now.
    pub fn now() -> Usage {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `getrusage` fills the struct it is given; RUSAGE_SELF is always valid.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return Usage::default();
            }
            usage.assume_init()
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            user_secs: secs(usage.ru_utime),
            sys_secs: secs(usage.ru_stime),
            faults: usage.ru_minflt as u64,
            waits: usage.ru_nvcsw as u64,
        }
    }

    /// What was used from `before` until `self`.
    pub fn since(self, before: Usage) -> Usage {
        Usage {
            user_secs: self.user_secs - before.user_secs,
            sys_secs: self.sys_secs - before.sys_secs,
            faults: self.faults.saturating_sub(before.faults),
            waits: self.waits.saturating_sub(before.waits),
        }
    }

    /// User and system CPU seconds.
    pub fn cpu_secs(&self) -> f64 {
        self.user_secs + self.sys_secs
    }
}

/// Resident and peak resident memory of this process, from `/proc/self/status`.
pub fn memory() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The benchmark's input, written.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// Records written.
    pub records: u64,
    /// Seconds the write took.
    pub write_secs: f64,
}

/// Generates the workload and writes it into the log in `dir` (which should be empty).
pub fn prepare(cfg: &Config, dir: &Path, p: &BenchParams) -> Result<Prepared, LogError> {
    let customers = p.customers.unwrap_or((p.events / 20).max(1));
    // About 20 events per customer over the simulated span.
    let mut params = Params {
        customers,
        hours: 4.0,
        seed: p.seed,
        start: Params::default_start(),
        bad_ratio: 0.0005,
        duplicate_ratio: 0.0005,
    };
    let records = if p.open_carts {
        let n = p.customers.unwrap_or(p.events);
        generate::open_carts(n, 1.0, p.seed, params.start)
    } else {
        let mut records = generate::generate(&params);
        if p.customers.is_none() && (records.len() as u64) < p.events && !records.is_empty() {
            params.customers = customers * p.events / records.len() as u64 + 1;
            records = generate::generate(&params);
        }
        records.truncate(p.events.max(1) as usize);
        records
    };
    let log = Log::open(dir, cfg.log.clone())?;
    let t = Instant::now();
    let records = generate::write(&log, cfg.transport.partitions, &records)?;
    Ok(Prepared {
        records,
        write_secs: t.elapsed().as_secs_f64(),
    })
}

/// Runs the benchmark in `dir` (which should be empty): [`prepare`], then [`measure`].
pub async fn run(cfg: &Config, dir: &Path, p: &BenchParams) -> Result<BenchReport, RuntimeError> {
    let prepared = prepare(cfg, dir, p)?;
    measure(cfg, dir, p, prepared).await
}

/// Replays the prepared log in `dir` and measures it.
pub async fn measure(
    cfg: &Config,
    dir: &Path,
    p: &BenchParams,
    prepared: Prepared,
) -> Result<BenchReport, RuntimeError> {
    let log = Log::open(dir, cfg.log.clone())?;
    let (_stop, shutdown) = watch::channel(false);
    let before = Usage::now();
    let summary = runtime::run(
        cfg,
        &log,
        RunOptions {
            // Paced runs are a live feed over a finite input: the clock follows what
            // arrives, as in production; unpaced runs replay in event time.
            mode: if p.rate.is_some() {
                Mode::Live
            } else {
                Mode::Replay
            },
            until: None,
            rate: p.rate,
            shutdown,
            exit_at_end: true,
            sql: None,
            rule_actions: None,
            rule_priorities: None,
            without_policies: p.without_policies,
            without_identity: p.without_identity,
            exiting: p.exiting,
        },
    )
    .await?;
    let usage = Usage::now().since(before);
    let (rss, peak) = (summary.rss_bytes, memory().1);
    let replay_secs = summary.elapsed.as_secs_f64();
    let events = summary.stats.total_read();
    Ok(BenchReport {
        records: prepared.records,
        write_secs: prepared.write_secs,
        replay_secs,
        usage,
        events,
        events_per_sec: events as f64 / replay_secs.max(1e-9),
        processing_events_per_sec: events as f64 / summary.processing.as_secs_f64().max(1e-9),
        stop_secs: (summary.elapsed - summary.processing).as_secs_f64(),
        actions: summary.stats.actions_by_trigger().values().sum(),
        p50_us: summary.stats.latency_us(0.5),
        p99_us: summary.stats.latency_us(0.99),
        checkpointing_p99_us: summary.stats.checkpointing_latency_us(0.99),
        state_keys: summary.state_keys.iter().map(|(_, k)| k).sum(),
        rss_bytes: rss,
        peak_rss_bytes: peak,
        checkpoints: summary.stats.checkpoints(),
    })
}

/// The median of `values` (NaN when there are none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A confidence interval for the median of the distribution `values` were drawn from,
/// at `confidence` or more (say 0.95), without assuming its shape: the `k`-th smallest
/// and `k`-th largest value, for the largest `k` whose interval still covers the median
/// with that probability (each value falls below the median with probability ½, so
/// how many do is binomial). Returns the interval and its exact coverage; `None` when
/// there are too few values for any interval that sure (fewer than 6 for 0.95).
pub fn median_interval(
    values: impl IntoIterator<Item = f64>,
    confidence: f64,
) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // P(Binomial(n, ½) = i), for i = 0, 1, ...: the interval [k-th, (n+1-k)-th] misses
    // the median when fewer than k values fall on one side of it.
    let mut pmf = 0.5f64.powi(i32::try_from(n).ok()?);
    let (mut tail, mut k) = (0.0, 0);
    let mut coverage = None;
    while k < n / 2 {
        tail += pmf;
        let c = 1.0 - 2.0 * tail;
        if c < confidence {
            break;
        }
        coverage = Some(c);
        pmf *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    let coverage = coverage?;
    Some((v[k - 1], v[n - k], coverage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_takes_the_order_statistics_the_binomial_gives() {
        let ranks = |n: usize| {
            let values = (1..=n).map(|i| i as f64);
            median_interval(values, 0.95).map(|(lo, hi, c)| (lo as usize, hi as usize, c))
        };
        // Five values: even [min, max] misses the median with probability 2/32.
        assert_eq!(ranks(5), None);
        assert_eq!(ranks(0), None);
        // Six and seven: only [min, max] (1 - 2/64, 1 - 2/128).
        assert_eq!(ranks(6), Some((1, 6, 1.0 - 2.0 / 64.0)));
        assert_eq!(ranks(7), Some((1, 7, 1.0 - 2.0 / 128.0)));
        // Fifteen: the 4th and 12th, covering 1 - 2 * (1 + 15 + 105 + 455) / 2^15; the
        // 5th and 11th would cover only 88 %.
        let (lo, hi, c) = ranks(15).unwrap();
        assert_eq!((lo, hi), (4, 12));
        assert!((c - (1.0 - 2.0 * 576.0 / 32768.0)).abs() < 1e-12, "{c}");
        // Order, not position: shuffled values give the same interval.
        let shuffled = [
            9.0, 1.0, 14.0, 3.0, 12.0, 5.0, 7.0, 2.0, 15.0, 4.0, 6.0, 11.0, 8.0, 13.0, 10.0,
        ];
        assert_eq!(
            median_interval(shuffled, 0.95).map(|i| (i.0, i.1)),
            Some((4.0, 12.0))
        );
        assert_eq!(median([3.0, 1.0, 2.0, 10.0]), 2.5);
        assert!(median([]).is_nan());
    }
}

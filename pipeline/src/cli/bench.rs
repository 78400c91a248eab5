//! `footfall bench`: the end-to-end benchmark, and what the delivery policies and the
//! identity graph cost (`--policy-cost`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use footfall_operators::event::Topic;
use footfall_pipeline::bench::{
    self, BenchParams, BenchReport, Figures, Prepared, median, median_interval,
};
use footfall_pipeline::log::segment;

use super::report::thousands;
use crate::load_config;

/// `footfall bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Events to generate.
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Customers (default: one per 20 events).
    #[arg(long)]
    customers: Option<u64>,
    /// Pace the sources to this many events a second (for latency).
    #[arg(long, value_parser = super::rate)]
    rate: Option<f64>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory for the log (default: a temporary one, removed afterwards).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Memory workload: one open cart per customer (`--customers`, default `--events`).
    #[arg(long)]
    open_carts: bool,
    /// Replay without the delivery policies: customer-facing actions are written as
    /// their triggers make them. With `--without-identity`, the baseline of
    /// `--policy-cost`; never how footfall runs for customers.
    #[arg(long, conflicts_with_all = ["sql", "open_carts"])]
    without_policies: bool,
    /// Replay without the identity graph: events are keyed by their own ids, so a
    /// device is never its customer. Never how footfall runs for customers.
    #[arg(long, conflicts_with_all = ["sql", "open_carts"])]
    without_identity: bool,
    /// What the delivery policies and the identity graph cost: replays one input with
    /// and without them, `--rounds` times each in alternation, each replay in a process
    /// of its own, and prints both figures and their ratio.
    #[arg(long, conflicts_with_all = ["sql", "open_carts", "rate", "without_policies", "without_identity"])]
    policy_cost: bool,
    /// With `--policy-cost`: also replay with each of the two alone in every round, and
    /// print what each adds by itself.
    #[arg(long, requires = "policy_cost")]
    split: bool,
    /// Rounds for `--policy-cost` (the machine's noise moves single replays by several
    /// per cent: the median of each round's ratio is the figure, with a 95 % confidence
    /// interval from 6 rounds on).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// SQL workload: the retained tables' bytes a row, a tumbling aggregate over
    /// `--sql-rows` clickstream rows, and the cost of the rules in `--rules`.
    #[arg(long)]
    sql: bool,
    /// Clickstream rows for `--sql`.
    #[arg(long, default_value_t = 5_000_000)]
    sql_rows: u64,
    /// Rules directory for `--sql`.
    #[arg(long, default_value = "deploy/rules")]
    rules: PathBuf,
    /// Only generate and write the input into --data-dir, then print what was written
    /// (the measuring process runs this in a child).
    #[arg(long, hide = true)]
    prepare_only: bool,
    /// Only replay the input already in --data-dir, then print the figures (the rounds
    /// of `--policy-cost` run this in a child each).
    #[arg(long, hide = true)]
    measure_only: bool,
}

impl BenchArgs {
    /// Runs the benchmark.
    pub async fn run(self) -> anyhow::Result<()> {
        let cfg = load_config(self.config.as_deref(), None)?;
        if self.sql {
            let cache = usize::try_from(cfg.sql.rule_cache_bytes).unwrap_or(usize::MAX);
            return footfall_pipeline::sqlbench::run(self.sql_rows, &self.rules, cache).await;
        }
        let tmp;
        let dir = match &self.data_dir {
            Some(d) if !self.measure_only && !self.prepare_only => {
                // A log already there would be appended to and measured with the new one.
                if std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()) {
                    bail!(
                        "--data-dir {} is not empty: bench writes a new log there (give a new or empty directory)",
                        d.display()
                    );
                }
                d.clone()
            }
            Some(d) => d.clone(),
            None => {
                tmp = TempDir::new()?;
                tmp.0.clone()
            }
        };
        let p = BenchParams {
            events: self.events,
            customers: self.customers,
            rate: self.rate,
            seed: self.seed,
            open_carts: self.open_carts,
            without_policies: self.without_policies,
            without_identity: self.without_identity,
            exiting: true,
        };
        if self.prepare_only {
            let prepared = bench::prepare(&cfg, &dir, &p)?;
            println!("{}", serde_json::to_string(&prepared)?);
            return Ok(());
        }
        if self.measure_only {
            let r = bench::measure(&cfg, &dir, &p, Prepared::default()).await?;
            println!("{}", serde_json::to_string(&r.figures())?);
            return Ok(());
        }
        if self.policy_cost {
            return self.policy_cost(&dir);
        }
        eprintln!("bench: generating about {} events ...", self.events);
        let prepared = if self.open_carts {
            bench::prepare(&cfg, &dir, &p)?
        } else {
            // In a child process: generating gigabytes of input in this one and freeing
            // it would leave the measured replay in a state no production process is in.
            self.prepare_in_child(&dir)?
        };
        let r = bench::measure(&cfg, &dir, &p, prepared).await?;
        print_report(&r, self.rate, Variant::of(&p));
        Ok(())
    }

    /// This command for a child process: the same input and config.
    fn child(&self, dir: &Path) -> anyhow::Result<Command> {
        let mut child = Command::new(std::env::current_exe()?);
        child.arg("bench").arg("--data-dir").arg(dir);
        child.args(["--events", &self.events.to_string()]);
        child.args(["--seed", &self.seed.to_string()]);
        if let Some(c) = self.customers {
            child.args(["--customers", &c.to_string()]);
        }
        if let Some(c) = &self.config {
            child.arg("--config").arg(c);
        }
        child.stderr(Stdio::inherit());
        Ok(child)
    }

    fn prepare_in_child(&self, dir: &Path) -> anyhow::Result<Prepared> {
        let out = self.child(dir)?.arg("--prepare-only").output()?;
        if !out.status.success() {
            bail!("generating the bench input failed ({})", out.status);
        }
        serde_json::from_slice(&out.stdout).context("reading the bench input summary")
    }

    /// `--policy-cost`: rounds of a replay with and one without (and, with `--split`,
    /// one with each alone), rotating which goes first, each over a fresh copy of one
    /// input.
    fn policy_cost(&self, dir: &Path) -> anyhow::Result<()> {
        let input = dir.join("input");
        let run = dir.join("replay");
        eprintln!("bench: generating about {} events ...", self.events);
        let prepared = self.prepare_in_child(&input)?;
        println!(
            "footfall bench --policy-cost: {} records, {} rounds, each replay a process of its own ({} cores)",
            thousands(prepared.records),
            self.rounds,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  {:<7} {:^36}   {:^36}",
            "round", "with policies and identity", "without"
        );
        let variants: &[Variant] = if self.split {
            &[
                Variant::BOTH,
                Variant::NEITHER,
                Variant::POLICIES,
                Variant::IDENTITY,
            ]
        } else {
            &[Variant::BOTH, Variant::NEITHER]
        };
        // Per round, each variant's figures, in the order of `variants`.
        let mut rounds: Vec<Vec<Figures>> = Vec::new();
        for r in 0..self.rounds as usize {
            let mut figures: Vec<Option<Figures>> = vec![None; variants.len()];
            // Each round starts with another: drift in the machine's load favours none.
            for k in 0..variants.len() {
                let i = (r + k) % variants.len();
                let v = variants[i];
                copy_input(&input, &run)?;
                let mut child = self.child(&run)?;
                child.arg("--measure-only");
                if !v.policies {
                    child.arg("--without-policies");
                }
                if !v.identity {
                    child.arg("--without-identity");
                }
                let out = child.output()?;
                if !out.status.success() {
                    bail!("round {} ({}) failed ({})", r + 1, v.name(), out.status);
                }
                let f: Figures =
                    serde_json::from_slice(&out.stdout).context("reading a round's figures")?;
                figures[i] = Some(f);
            }
            let figures: Vec<Figures> = figures.into_iter().flatten().collect();
            println!(
                "  {:<7} {}   {}",
                r + 1,
                cells(&figures[0]),
                cells(&figures[1])
            );
            rounds.push(figures);
        }
        std::fs::remove_dir_all(&run).ok();
        let med = |f: &dyn Fn(&[Figures]) -> f64| median(rounds.iter().map(|r| f(r)));
        // A variant's median wall and CPU time (events and actions are the same every round).
        let medians = |i: usize| Figures {
            replay_secs: med(&|r| r[i].replay_secs),
            cpu_secs: med(&|r| r[i].cpu_secs),
            ..rounds[0][i]
        };
        println!(
            "  {:<7} {}   {}",
            "median",
            cells(&medians(0)),
            cells(&medians(1))
        );
        let pct = |ratio: f64| (ratio - 1.0) * 100.0;
        // Variant `i` against the baseline of its round: wall time, then CPU time.
        let wall = |i: usize| move |r: &[Figures]| r[i].replay_secs / r[1].replay_secs.max(1e-9);
        let cpu = |i: usize| move |r: &[Figures]| r[i].cpu_secs / r[1].cpu_secs.max(1e-9);
        println!(
            "  policies and identity add {:+.1} % wall time and {:+.1} % CPU time to the replay \
             (median of the rounds' ratios)",
            pct(med(&wall(0))),
            pct(med(&cpu(0)))
        );
        // How far single rounds stray: how much one figure alone could be trusted.
        let range = |f: &dyn Fn(&[Figures]) -> f64| {
            let v = rounds.iter().map(|r| f(r));
            let (lo, hi) = v.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
            format!("{:+.1} to {:+.1} %", pct(lo), pct(hi))
        };
        println!(
            "  single rounds: {} wall time, {} CPU time",
            range(&wall(0)),
            range(&cpu(0))
        );
        // Where the median itself lies: the machine's noise, in the same units.
        let interval = |f: &dyn Fn(&[Figures]) -> f64| match median_interval(
            rounds.iter().map(|r| f(r)),
            CONFIDENCE,
        ) {
            Some((lo, hi, c)) => format!(
                "{:+.1} to {:+.1} % ({:.1} % sure)",
                pct(lo),
                pct(hi),
                c * 100.0
            ),
            None => "needs 6 rounds or more".to_owned(),
        };
        println!(
            "  the median's confidence interval: {} wall time, {} CPU time",
            interval(&wall(0)),
            interval(&cpu(0))
        );
        for (i, v) in variants.iter().enumerate().skip(2) {
            let m = medians(i);
            println!(
                "  {} alone: {:+.1} % wall time, {:+.1} % CPU time (interval {} wall); \
                 median {:.2} s, {:.2} s CPU; {} actions written",
                v.name(),
                pct(med(&wall(i))),
                pct(med(&cpu(i))),
                interval(&wall(i)),
                m.replay_secs,
                m.cpu_secs,
                thousands(m.actions),
            );
        }
        println!(
            "  of the wall time, the stop (final checkpoint, shutdown): median {:.2} s with, {:.2} s without",
            med(&|r| r[0].stop_secs),
            med(&|r| r[1].stop_secs),
        );
        // Where the difference goes beyond the work itself: memory touched for the first
        // time (page faults, system time), memory held, threads waiting on each other.
        let both_neither = |f: &dyn Fn(&Figures) -> f64| (med(&|r| f(&r[0])), med(&|r| f(&r[1])));
        let (user, sys) = (
            both_neither(&|f| f.usage.user_secs),
            both_neither(&|f| f.usage.sys_secs),
        );
        println!(
            "  CPU time, median: user {:.2} s with, {:.2} s without; system {:.2} s with, {:.2} s without",
            user.0, user.1, sys.0, sys.1
        );
        let (faults, waits, peak) = (
            both_neither(&|f| f.usage.faults as f64),
            both_neither(&|f| f.usage.waits as f64),
            both_neither(&|f| f.peak_rss_bytes as f64 / (1 << 20) as f64),
        );
        println!(
            "  median page faults {} with, {} without; peak resident {:.0} MiB with, {:.0} MiB without; \
             waits (voluntary context switches) {} with, {} without",
            thousands(faults.0 as u64),
            thousands(faults.1 as u64),
            peak.0,
            peak.1,
            thousands(waits.0 as u64),
            thousands(waits.1 as u64),
        );
        println!(
            "  actions written: {} with (after the policies), {} without",
            thousands(rounds[0][0].actions),
            thousands(rounds[0][1].actions)
        );
        // Every replay of a variant reads the same input: the same actions, or the
        // figures compare different work.
        for (i, v) in variants.iter().enumerate() {
            let counts: Vec<u64> = rounds.iter().map(|r| r[i].actions).collect();
            if counts.iter().any(|&n| n != counts[0]) {
                println!(
                    "  warning: the rounds with {} wrote different numbers of actions: {}",
                    v.name(),
                    counts
                        .iter()
                        .map(|&n| thousands(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    }
}

/// What a replay runs with: the delivery policies, the identity graph.
#[derive(Clone, Copy)]
struct Variant {
    policies: bool,
    identity: bool,
}

impl Variant {
    const BOTH: Variant = Variant::new(true, true);
    const NEITHER: Variant = Variant::new(false, false);
    const POLICIES: Variant = Variant::new(true, false);
    const IDENTITY: Variant = Variant::new(false, true);

    const fn new(policies: bool, identity: bool) -> Variant {
        Variant { policies, identity }
    }

    fn of(p: &BenchParams) -> Variant {
        Variant::new(!p.without_policies, !p.without_identity)
    }

    fn name(self) -> &'static str {
        match (self.policies, self.identity) {
            (true, true) => "policies and identity",
            (true, false) => "the delivery policies",
            (false, true) => "the identity graph",
            (false, false) => "neither",
        }
    }
}

/// How sure the interval `--policy-cost` gives for its median is.
const CONFIDENCE: f64 = 0.95;

/// One replay's figures in a table cell.
fn cells(f: &Figures) -> String {
    format!(
        "{:>6.2} s {:>6.2} s CPU {:>9} ev/s",
        f.replay_secs,
        f.cpu_secs,
        thousands((f.events as f64 / f.replay_secs.max(1e-9)) as u64)
    )
}

/// Replaces `to` with a copy of the input topics of the log in `from`.
///
/// A replay only reads its input topics (it writes the output topics and checkpoints,
/// none of which are copied): their segments are linked, not copied. Copying half a
/// gigabyte before each replay took most of a second, and its write-back ran during the
/// replays that followed.
fn copy_input(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    for topic in Topic::ALL {
        let src = from.join(topic.name());
        if src.is_dir() {
            copy_dir(&src, &to.join(topic.name()))?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            let linked = segment::parse_file_name(&entry.file_name().to_string_lossy()).is_some()
                && std::fs::hard_link(entry.path(), &dest).is_ok();
            // Not a segment, or another file system (or one without links): a copy.
            if !linked {
                std::fs::copy(entry.path(), &dest)
                    .with_context(|| format!("copying {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

fn print_report(r: &BenchReport, rate: Option<f64>, v: Variant) {
    let mb =
        |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    let us =
        |v: Option<u32>| v.map_or("n/a".into(), |v| format!("{:.3} ms", f64::from(v) / 1000.0));
    println!(
        "footfall bench (release build recommended; {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match (v.policies, v.identity) {
        (true, true) => {}
        (false, false) => println!(
            "  policies          none: no delivery policies, no identity graph (a baseline)"
        ),
        (false, true) => println!("  policies          none: no delivery policies (a baseline)"),
        (true, false) => {
            println!("  identity          none: events keyed by their own ids (a baseline)")
        }
    }
    println!("  records           {}", r.records);
    println!(
        "  write to log      {:.2} s ({:.0} records/s)",
        r.write_secs,
        r.records as f64 / r.write_secs.max(1e-9)
    );
    println!("  replay            {:.2} s", r.replay_secs);
    println!(
        "  throughput        {:.0} events/s end to end (decode → operators → encode → log)",
        r.events_per_sec
    );
    println!(
        "  while processing  {:.0} events/s ({:.2} s of the replay is the final checkpoint and stop)",
        r.processing_events_per_sec, r.stop_secs
    );
    println!(
        "  CPU               {:.2} s ({:.1} cores busy on average)",
        r.usage.cpu_secs(),
        r.usage.cpu_secs() / r.replay_secs.max(1e-9)
    );
    println!(
        "                    user {:.2} s, system {:.2} s; {} page faults, {} waits (voluntary context switches)",
        r.usage.user_secs,
        r.usage.sys_secs,
        thousands(r.usage.faults),
        thousands(r.usage.waits)
    );
    if let Some(rate) = rate {
        println!("  paced at          {rate:.0} events/s");
    }
    println!("  actions           {}", r.actions);
    println!("  latency p50       {}", us(r.p50_us));
    println!("  latency p99       {}", us(r.p99_us));
    match r.checkpointing_p99_us {
        (_, 0) => {}
        (p99, n) => println!(
            "  latency p99       {} over the {n} actions written during checkpoints",
            us(p99)
        ),
    }
    println!("  keys with state   {}", r.state_keys);
    println!(
        "  memory            {} resident with state held, {} peak",
        mb(r.rss_bytes),
        mb(r.peak_rss_bytes)
    );
    let c = r.checkpoints;
    if c.count == 0 {
        println!("  checkpoints       none");
    } else {
        println!(
            "  checkpoints       {} written, longest {:.3} s, longest pause {:.1} ms, last {}",
            c.count,
            c.max_us as f64 / 1e6,
            c.max_stall_us as f64 / 1e3,
            mb(Some(c.last_bytes))
        );
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir().join(format!("footfall-bench-{}", std::process::id()));
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        Ok(TempDir(base))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

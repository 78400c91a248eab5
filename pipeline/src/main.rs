//! `footfall`: the command line.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use footfall_operators::event::Topic;
use footfall_operators::key::partition_for;
use footfall_operators::time::Timestamp;
use footfall_pipeline::config::Config;
use footfall_pipeline::generate::{self, Params};
use footfall_pipeline::log::{Batch, Log};
use footfall_pipeline::runtime::clock::Mode;
use footfall_pipeline::runtime::{self, RunOptions, Summary};
use footfall_pipeline::{bench, server};
use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_64;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// footfall: a real-time retail CRM stream processor.
///
/// Reads purchases, clickstream, profiles and stock from partitioned topics, keeps
/// windowed state per customer, and writes actions (abandoned-cart reminders, ...) to
/// notification topics within milliseconds.
#[derive(Parser)]
#[command(name = "footfall", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Zero-configuration demo: generate traffic, replay it, show what fired.
    Demo {
        /// A fresh data directory for the demo (replaced if it holds an earlier demo).
        #[arg(long, default_value = "footfall-demo")]
        data_dir: PathBuf,
        /// Synthetic customers.
        #[arg(long, default_value_t = 5000)]
        customers: u64,
        /// Simulated hours of traffic.
        #[arg(long, default_value_t = 4.0)]
        hours: f64,
        /// Generator seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Generate deterministic synthetic traffic into the embedded log.
    Generate {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Synthetic customers.
        #[arg(long, default_value_t = 1000)]
        customers: u64,
        /// Simulated hours of traffic.
        #[arg(long, default_value_t = 4.0)]
        hours: f64,
        /// Seed: same seed, same records.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Event time of the first session (RFC 3339).
        #[arg(long)]
        start: Option<String>,
        /// Partitions of topics created.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
        /// Share of records broken on purpose.
        #[arg(long, default_value_t = 0.001)]
        bad_ratio: f64,
        /// Share of records delivered twice.
        #[arg(long, default_value_t = 0.001)]
        duplicate_ratio: f64,
    },
    /// Append one record per line of standard input to a topic (created if missing).
    Produce {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Partitions, if the topic is created.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    /// Print a topic's records as JSON lines.
    Consume {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Start from the oldest record (else: only records appended from now on).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Keep waiting for new records after the existing ones (the default without
        /// --from-beginning).
        #[arg(long)]
        follow: bool,
    },
    /// Replay the log in event time; exit 0 when all input is processed and flushed.
    Replay {
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Advance the clock to this instant at the end of input (default: the largest
        /// event time read).
        #[arg(long)]
        until: Option<String>,
    },
    /// Run the long-lived service: live clock, /metrics, /healthz, /readyz.
    Run {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a config file; exit non-zero with a precise message on error.
    Validate {
        /// Config file.
        config: PathBuf,
    },
    /// End-to-end benchmark: generate, write to the log, replay, and report.
    Bench {
        /// Events to generate.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Customers (default: one per 20 events).
        #[arg(long)]
        customers: Option<u64>,
        /// Pace the sources to this many events a second (for latency).
        #[arg(long)]
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
        /// Only generate and write the input into --data-dir, then print what was written
        /// (the measuring process runs this in a child).
        #[arg(long, hide = true)]
        prepare_only: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOOTFALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Demo {
            data_dir,
            customers,
            hours,
            seed,
        } => demo(&data_dir, customers, hours, seed).await,
        Command::Generate {
            data_dir,
            customers,
            hours,
            seed,
            start,
            partitions,
            bad_ratio,
            duplicate_ratio,
        } => {
            let start = match start {
                Some(s) => parse_time("--start", &s)?,
                None => Params::default_start(),
            };
            let params = Params {
                customers,
                hours,
                seed,
                start,
                bad_ratio,
                duplicate_ratio,
            };
            let records = generate::generate(&params);
            let log = Log::open(&data_dir, Default::default())?;
            let n = generate::write(&log, partitions, &records)?;
            eprintln!(
                "generated {n} records for {customers} customers over {hours} h from {start} into {}",
                data_dir.display()
            );
            Ok(())
        }
        Command::Produce {
            data_dir,
            topic,
            partitions,
        } => produce(&data_dir, &topic, partitions),
        Command::Consume {
            data_dir,
            topic,
            from_beginning,
            max,
            follow,
        } => {
            consume(
                &data_dir,
                &topic,
                from_beginning,
                max,
                follow || !from_beginning,
            )
            .await
        }
        Command::Replay {
            data_dir,
            config,
            until,
        } => {
            let cfg = load_config(config.as_deref(), data_dir)?;
            let until = until.map(|u| parse_time("--until", &u)).transpose()?;
            let log = Log::open(&cfg.transport.data_dir, cfg.log.clone())?;
            let (_stop, shutdown) = watch::channel(false);
            let summary = runtime::run(
                &cfg,
                &log,
                RunOptions {
                    mode: Mode::Replay,
                    until,
                    rate: None,
                    shutdown,
                    exit_at_end: false,
                },
            )
            .await?;
            print_summary(&summary, &mut std::io::stderr())?;
            Ok(())
        }
        Command::Run { config, data_dir } => run_service(&config, data_dir).await,
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
            for w in cfg.warnings() {
                println!("note: {w}");
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Bench {
            events,
            customers,
            rate,
            seed,
            config,
            data_dir,
            open_carts,
            prepare_only,
        } => {
            let cfg = load_config(config.as_deref(), None)?;
            let tmp;
            let dir = match data_dir {
                Some(d) => d,
                None => {
                    tmp = tempfile_dir()?;
                    tmp.0.clone()
                }
            };
            let p = bench::BenchParams {
                events,
                customers,
                rate,
                seed,
                open_carts,
            };
            if prepare_only {
                let prepared = bench::prepare(&cfg, &dir, &p)?;
                println!("{}", serde_json::to_string(&prepared)?);
                return Ok(());
            }
            eprintln!("bench: generating about {events} events ...");
            let prepared = if open_carts {
                bench::prepare(&cfg, &dir, &p)?
            } else {
                // In a child process: generating gigabytes of input in this one and freeing
                // it would leave the measured replay in a state no production process is in.
                let mut child = std::process::Command::new(std::env::current_exe()?);
                child
                    .args(["bench", "--prepare-only", "--data-dir"])
                    .arg(&dir);
                child.args(["--events", &events.to_string(), "--seed", &seed.to_string()]);
                if let Some(c) = customers {
                    child.args(["--customers", &c.to_string()]);
                }
                if let Some(c) = &config {
                    child.arg("--config").arg(c);
                }
                let out = child.stderr(std::process::Stdio::inherit()).output()?;
                if !out.status.success() {
                    bail!("generating the bench input failed ({})", out.status);
                }
                serde_json::from_slice(&out.stdout).context("reading the bench input summary")?
            };
            let r = bench::measure(&cfg, &dir, &p, prepared).await?;
            let mb = |b: Option<u64>| {
                b.map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0))
            };
            let us = |v: Option<u32>| {
                v.map_or("n/a".into(), |v| format!("{:.3} ms", f64::from(v) / 1000.0))
            };
            println!(
                "footfall bench (release build recommended; {} cores)",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
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
            if let Some(rate) = rate {
                println!("  paced at          {rate:.0} events/s");
            }
            println!("  actions           {}", r.actions);
            println!("  latency p50       {}", us(r.p50_us));
            println!("  latency p99       {}", us(r.p99_us));
            println!("  keys with state   {}", r.state_keys);
            println!(
                "  memory            {} resident with state held, {} peak",
                mb(r.rss_bytes),
                mb(r.peak_rss_bytes)
            );
            Ok(())
        }
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let base = std::env::temp_dir().join(format!("footfall-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    Ok(TempDir(base))
}

fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(s)
        .map_err(|e| anyhow::anyhow!("{flag}: {s:?} is not an RFC 3339 time with an offset ({e})"))
}

fn load_config(path: Option<&Path>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut cfg = match path {
        Some(p) => Config::load(p)?,
        None => {
            let mut c = Config::default();
            c.apply_env();
            c
        }
    };
    if let Some(d) = data_dir {
        cfg.transport.data_dir = d;
    }
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(cfg)
}

fn produce(data_dir: &Path, topic: &str, partitions: u32) -> anyhow::Result<()> {
    let log = Log::open(data_dir, Default::default())?;
    let n = log.create_topic(topic, partitions)?;
    let input_topic: Option<Topic> = topic.parse().ok();
    let mut writers = (0..n)
        .map(|p| log.writer(topic, p))
        .collect::<Result<Vec<_>, _>>()?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    let mut count = 0u64;
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let p = match route_key(input_topic, &line) {
            Some(k) => partition_for(&k, n),
            None => (xxh3_64(&line) % u64::from(n)) as u32,
        };
        writers[p as usize].append(&line)?;
        count += 1;
    }
    for w in &mut writers {
        w.sync()?;
    }
    eprintln!(
        "produced {count} records to {topic} ({n} partitions) in {}",
        data_dir.display()
    );
    Ok(())
}

/// The partitioning key a producer would set: the customer key as far as the record
/// alone tells (`user_id`, else `anon:<anonymous_id>`), or the store for store topics.
fn route_key(topic: Option<Topic>, line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Ids {
        user_id: Option<String>,
        anonymous_id: Option<String>,
        store_id: Option<String>,
        region: Option<String>,
    }
    let ids: Ids = serde_json::from_slice(line).ok()?;
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match topic {
        Some(t) if t.keyed_by_store() => nonempty(ids.store_id).or(nonempty(ids.region)),
        _ => nonempty(ids.user_id).or(nonempty(ids.anonymous_id).map(|a| format!("anon:{a}"))),
    }
}

async fn consume(
    data_dir: &Path,
    topic: &str,
    from_beginning: bool,
    max: Option<u64>,
    follow: bool,
) -> anyhow::Result<()> {
    let log = Log::open(data_dir, Default::default())?;
    let Some(n) = log.partitions(topic)? else {
        let topics = log.topics()?;
        bail!(
            "no topic `{topic}` in {} (topics there: {})",
            data_dir.display(),
            if topics.is_empty() {
                "none".into()
            } else {
                topics.join(", ")
            }
        );
    };
    let mut readers = Vec::new();
    for p in 0..n {
        let start = if from_beginning {
            0
        } else {
            log.end_offset(topic, p)?
        };
        readers.push(log.reader(topic, p, start)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut batch = Batch::default();
    let mut printed = 0u64;
    let limit = max.unwrap_or(u64::MAX);
    loop {
        let mut any = false;
        for r in &mut readers {
            while printed < limit {
                if r.poll(&mut batch, 1024, 1 << 20)? == 0 {
                    break;
                }
                any = true;
                for (_, payload) in batch.iter() {
                    if printed >= limit {
                        break;
                    }
                    out.write_all(String::from_utf8_lossy(payload).as_bytes())?;
                    out.write_all(b"\n")?;
                    printed += 1;
                }
            }
        }
        out.flush()?;
        if printed >= limit || (!any && !follow) {
            return Ok(());
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn run_service(config: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = load_config(Some(config), data_dir)?;
    let log = Log::open(&cfg.transport.data_dir, cfg.log.clone())?;
    let (stop, shutdown) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot bind {}", cfg.server.listen))?;
    let ready = server::Readiness::default();
    let http = tokio::spawn(server::serve(listener, ready.clone(), shutdown.clone()));
    tracing::info!(listen = %cfg.server.listen, data_dir = %cfg.transport.data_dir.display(), "footfall running");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: flushing output");
        let _ = stop.send(true);
    });
    ready.set(true);
    let summary = runtime::run(
        &cfg,
        &log,
        RunOptions {
            mode: Mode::Live,
            until: None,
            rate: None,
            shutdown,
            exit_at_end: false,
        },
    )
    .await;
    ready.set(false);
    let _ = http.await;
    let summary = summary?;
    print_summary(&summary, &mut std::io::stderr())?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_summary(s: &Summary, w: &mut impl Write) -> std::io::Result<()> {
    let st = &s.stats;
    let secs = s.elapsed.as_secs_f64();
    let total = st.total_read();
    writeln!(
        w,
        "  read        {} events in {:.2} s ({} events/s)",
        thousands(total),
        secs,
        thousands((total as f64 / secs.max(1e-9)) as u64)
    )?;
    let per_topic: Vec<String> = st
        .read_by_topic()
        .iter()
        .map(|(t, n)| format!("{t} {}", thousands(*n)))
        .collect();
    if !per_topic.is_empty() {
        writeln!(w, "              {}", per_topic.join(" · "))?;
    }
    let reasons: Vec<String> = st
        .deadletter_reasons()
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    writeln!(
        w,
        "  deadletter  {} records{}",
        thousands(st.deadlettered()),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    )?;
    writeln!(
        w,
        "  duplicates  {} redelivered records applied once",
        thousands(st.duplicates())
    )?;
    writeln!(
        w,
        "  late        {} events older than the clock on arrival",
        thousands(st.late_events())
    )?;
    let actions = st.actions_by_trigger();
    if actions.is_empty() {
        writeln!(w, "  actions     none")?;
    }
    for ((trigger, group), n) in &actions {
        writeln!(
            w,
            "  actions     {trigger} ({}): {}",
            group.as_str(),
            thousands(*n)
        )?;
    }
    writeln!(w, "  clock       {} at the end", s.clock)?;
    if s.beyond_until > 0 {
        writeln!(
            w,
            "  not applied {} events after --until",
            thousands(s.beyond_until)
        )?;
    }
    Ok(())
}

async fn demo(data_dir: &Path, customers: u64, hours: f64, seed: u64) -> anyhow::Result<()> {
    fresh_demo_dir(data_dir)?;
    let params = Params {
        customers,
        hours,
        seed,
        start: Params::default_start(),
        bad_ratio: 0.001,
        duplicate_ratio: 0.001,
    };
    let mut out = std::io::stdout();
    writeln!(
        out,
        "footfall demo: synthetic retail traffic in, abandoned-cart actions out\n"
    )?;
    let records = generate::generate(&params);
    let cfg = Config {
        transport: footfall_pipeline::config::TransportConfig {
            data_dir: data_dir.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    let log = Log::open(data_dir, cfg.log.clone())?;
    let n = generate::write(&log, cfg.transport.partitions, &records)?;
    writeln!(
        out,
        "  generated   {} records: {customers} customers browsing, carting, buying and walking away\n              over {hours} h from {} (seed {seed}) into {}/ ({} partitions per topic)",
        thousands(n),
        params.start,
        data_dir.display(),
        cfg.transport.partitions
    )?;
    drop(records);
    let (_stop, shutdown) = watch::channel(false);
    let summary = runtime::run(
        &cfg,
        &log,
        RunOptions {
            mode: Mode::Replay,
            until: None,
            rate: None,
            shutdown,
            exit_at_end: false,
        },
    )
    .await?;
    writeln!(
        out,
        "  replayed in event time through the abandoned-cart trigger (30 min idle, 24 h cooldown):"
    )?;
    print_summary(&summary, &mut out)?;
    let samples = summary.stats.samples();
    if !samples.is_empty() {
        writeln!(
            out,
            "\n  three sample actions (from the notifications topic):"
        )?;
        for a in samples {
            let line = serde_json::to_string(&a).unwrap_or_default();
            writeln!(out, "    {line}")?;
        }
    }
    let d = data_dir.display();
    if let Ok(exe) = std::env::current_exe() {
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
            .unwrap_or(exe);
        writeln!(
            out,
            "\n  footfall is {} (or: cargo install --path pipeline)",
            shown.display()
        )?;
    }
    writeln!(out, "  look at the output:")?;
    writeln!(
        out,
        "    footfall consume --data-dir {d} --topic notifications --from-beginning --max 5"
    )?;
    writeln!(
        out,
        "    footfall consume --data-dir {d} --topic deadletter --from-beginning --max 5"
    )?;
    writeln!(out, "  replay it again (same input, same action ids):")?;
    writeln!(out, "    footfall replay --data-dir {d}")?;
    Ok(())
}

/// Empties `dir` for a new demo, refusing to touch anything that is not a footfall log.
fn fresh_demo_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if !entry.path().join("topic.json").exists() {
            bail!(
                "{} exists and holds {:?}, which is not a footfall topic; pass another --data-dir",
                dir.display(),
                entry.file_name()
            );
        }
    }
    std::fs::remove_dir_all(dir)
        .with_context(|| format!("removing the earlier demo in {}", dir.display()))
}

//! `footfall`: the command line.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::{Parser, Subcommand};
use footfall_operators::time::Timestamp;
use footfall_pipeline::config::Config;
use footfall_pipeline::generate::{self, Params};
use footfall_pipeline::log::Log;
use footfall_pipeline::runtime;

mod cli;

use cli::demo::demo;
use cli::report::print_summary;
use cli::topics::{consume, produce};

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

/// Where `produce`, `consume` and `generate` find the topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    /// The embedded log in `--data-dir`.
    Embedded,
    /// The Fluvio cluster at `FLUVIO_ENDPOINT` (default 127.0.0.1:9003).
    Fluvio,
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
    /// Generate deterministic synthetic traffic into the embedded log (or Fluvio).
    Generate {
        /// Data directory (the embedded log).
        #[arg(long, required_if_eq("transport", "embedded"))]
        data_dir: Option<PathBuf>,
        /// Where the topics are: `embedded` (`--data-dir`) or `fluvio`
        /// (`FLUVIO_ENDPOINT`, default 127.0.0.1:9003).
        #[arg(long, value_enum, default_value_t = TransportArg::Embedded)]
        transport: TransportArg,
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
        /// Data directory (the embedded log).
        #[arg(long, required_if_eq("transport", "embedded"))]
        data_dir: Option<PathBuf>,
        /// Where the topics are: `embedded` (`--data-dir`) or `fluvio`
        /// (`FLUVIO_ENDPOINT`, default 127.0.0.1:9003).
        #[arg(long, value_enum, default_value_t = TransportArg::Embedded)]
        transport: TransportArg,
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Partitions, if the topic is created.
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    /// Print a topic's records as JSON lines.
    Consume {
        /// Data directory (the embedded log).
        #[arg(long, required_if_eq("transport", "embedded"))]
        data_dir: Option<PathBuf>,
        /// Where the topics are: `embedded` (`--data-dir`) or `fluvio`
        /// (`FLUVIO_ENDPOINT`, default 127.0.0.1:9003).
        #[arg(long, value_enum, default_value_t = TransportArg::Embedded)]
        transport: TransportArg,
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
        /// Read at most this many records a second, all topics together (default: as
        /// fast as they come): a replay that shares a machine, or a test that must catch
        /// one mid-way.
        #[arg(long, value_parser = cli::rate)]
        rate: Option<f64>,
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
    /// The identity graph as of the newest checkpoint.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Run a read-only SQL query over a data directory's retained tables (input topics
    /// and the actions written), offline.
    Sql {
        /// The query (`SELECT ...`).
        query: String,
        /// Query this data directory offline instead of a running service.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The running service's admin API.
        #[arg(long, default_value = "http://127.0.0.1:9465")]
        url: String,
        /// Bearer token of the admin API.
        #[arg(long, env = "FOOTFALL_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// `table` for a terminal, `json` for one JSON object per row.
        #[arg(long, default_value = "table")]
        format: SqlFormat,
    },
    /// SQL rules: check them, or run their tests.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Lift per trigger: actions, conversions, conversion rate and revenue per customer
    /// in treatment and control, the lift and its p-value.
    Lift {
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Checkpoints: list them, inspect one's state per operator, or reshard them for
    /// another worker count.
    Checkpoint {
        #[command(subcommand)]
        command: cli::checkpoint::CheckpointCommand,
    },
    /// Fit churn_risk's BG/NBD parameters (r, alpha, a, b) to a purchase history by
    /// maximum likelihood, and print them as config.
    FitChurn {
        /// A `transactions` JSONL file: purchases summarised per customer in days.
        #[arg(long, conflicts_with = "summary")]
        transactions: Option<PathBuf>,
        /// Or a summary CSV with `frequency`, `recency` and `T` columns (as `lifetimes`
        /// writes them).
        #[arg(long)]
        summary: Option<PathBuf>,
        /// End of observation for `--transactions` (RFC 3339; default: the latest
        /// purchase).
        #[arg(long)]
        until: Option<String>,
    },
    /// Check a config file; exit non-zero with a precise message on error.
    Validate {
        /// Config file.
        config: PathBuf,
    },
    /// End-to-end benchmark: generate, write to the log, replay, and report.
    Bench(cli::bench::BenchArgs),
}

/// How `footfall sql` prints rows.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SqlFormat {
    Table,
    Json,
}

/// `footfall rules ...`.
#[derive(Subcommand)]
enum RulesCommand {
    /// Parse and plan every rule in DIR against the tables' schemas; exit 1 on any error,
    /// each printed as file:line:column.
    Validate {
        /// The rules directory.
        dir: PathBuf,
    },
    /// Run each rule's test (NAME.test.jsonl input, NAME.expected.jsonl actions).
    Test {
        /// The rules directory.
        dir: PathBuf,
    },
}

/// `footfall identity ...`.
#[derive(Subcommand)]
enum IdentityCommand {
    /// Print what a customer is known by: user id, e-mail and phone hashes, devices.
    Show {
        /// A customer key, an anonymous id, or an e-mail / phone hash.
        id: String,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Turns transparent huge pages off for this process (and the processes it starts).
///
/// The allocator asks for huge pages on its regions, and the kernel then zeroes 2 MiB
/// at the first touch of any byte of one: with the state's many small allocations
/// spread over them, a replay of 2 million events had the kernel zero gigabytes, a
/// fifth of its CPU. Without them it runs about 10 % faster and holds less memory.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> std::process::ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    // The Fluvio client's own progress notes are noise at `info`.
    let level = match cli.command {
        Command::Run { .. } => "info,fluvio=warn,fluvio_socket=warn,fluvio_future=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOOTFALL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match footfall_pipeline::runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, leaving out a cause whose words the message
/// already holds (many errors, `object_store`'s among them, print their source too).
fn explain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !msg.contains(&cause) {
            msg.push_str(": ");
            msg.push_str(&cause);
        }
    }
    msg
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
            transport,
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
            let (n, place) = match (transport, data_dir) {
                (TransportArg::Fluvio, _) => {
                    let n = cli::fluvio::write_generated(&records, partitions).await?;
                    (n, "Fluvio".to_owned())
                }
                (TransportArg::Embedded, Some(dir)) => {
                    let log = Log::open(&dir, Default::default())?;
                    let n = generate::write(&log, partitions, &records)?;
                    (n, dir.display().to_string())
                }
                (TransportArg::Embedded, None) => bail!("--data-dir is required"),
            };
            eprintln!(
                "generated {n} records for {customers} customers over {hours} h from {start} into {place}"
            );
            Ok(())
        }
        Command::Produce {
            data_dir,
            transport,
            topic,
            partitions,
        } => match (transport, data_dir) {
            (TransportArg::Fluvio, _) => cli::fluvio::produce(&topic, partitions).await,
            (TransportArg::Embedded, Some(dir)) => produce(&dir, &topic, partitions),
            (TransportArg::Embedded, None) => bail!("--data-dir is required"),
        },
        Command::Consume {
            data_dir,
            transport,
            topic,
            from_beginning,
            max,
            follow,
        } => {
            let follow = follow || !from_beginning;
            match (transport, data_dir) {
                (TransportArg::Fluvio, _) => {
                    cli::fluvio::consume(&topic, from_beginning, max, follow).await
                }
                (TransportArg::Embedded, Some(dir)) => {
                    consume(&dir, &topic, from_beginning, max, follow).await
                }
                (TransportArg::Embedded, None) => bail!("--data-dir is required"),
            }
        }
        Command::Replay {
            data_dir,
            config,
            until,
            rate,
        } => {
            let cfg = load_config(config.as_deref(), data_dir)?;
            let until = until.map(|u| parse_time("--until", &u)).transpose()?;
            let log = Log::open(&cfg.transport.data_dir, cfg.log.clone())?;
            let summary = runtime::replay(&cfg, &log, until, rate).await?;
            print_summary(&summary, &mut std::io::stderr())?;
            Ok(())
        }
        Command::Run { config, data_dir } => {
            cli::service::run_service(load_config(Some(&config), data_dir)?).await
        }
        Command::Identity {
            command:
                IdentityCommand::Show {
                    id,
                    config,
                    data_dir,
                },
        } => cli::checkpoint::identity_show(&load_config(config.as_deref(), data_dir)?, &id).await,
        Command::Sql {
            query,
            data_dir,
            url,
            token,
            config,
            format,
        } => {
            let json = matches!(format, SqlFormat::Json);
            if data_dir.is_some() || config.is_some() {
                cli::sql::query(&load_config(config.as_deref(), data_dir)?, &query, json).await
            } else {
                cli::sql::remote(&url, token.as_deref(), &query, json).await
            }
        }
        Command::Rules { command } => match command {
            RulesCommand::Validate { dir } => cli::sql::validate(&dir).await,
            RulesCommand::Test { dir } => cli::sql::test(&dir).await,
        },
        Command::Lift { data_dir, config } => {
            let cfg = load_config(config.as_deref(), data_dir)?;
            let log = Log::open(&cfg.transport.data_dir, cfg.log.clone())?;
            let lifts = footfall_pipeline::lift::report(&log)?;
            if lifts.is_empty() {
                anyhow::bail!(
                    "no actions in {}: run `footfall replay` or `footfall run` on it first",
                    cfg.transport.data_dir.display()
                );
            }
            print!("{}", footfall_pipeline::lift::render(&lifts));
            Ok(())
        }
        Command::Checkpoint { command } => command.run().await,
        Command::FitChurn {
            transactions,
            summary,
            until,
        } => cli::churn::fit_churn(
            summary.as_deref(),
            transactions.as_deref(),
            until.as_deref(),
        ),
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
            for w in cfg.warnings() {
                println!("note: {w}");
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Bench(b) => b.run().await,
    }
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

//! `footfall checkpoint list|inspect|reshard`: what the checkpoint store holds, and
//! recombining it for another worker count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use anyhow::{Context, bail};
use footfall_pipeline::checkpoint::{Manifest, Store, section_sizes};
use footfall_pipeline::config::Config;

use super::report::thousands;
use crate::load_config;

/// `footfall checkpoint ...`.
#[derive(Subcommand)]
pub enum CheckpointCommand {
    /// Every checkpoint, newest first, with whether a restart can use it.
    List {
        /// Config file (its `[checkpoint] url`, or the data directory's `checkpoints/`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Change how many processes share the pipeline, the state following its
    /// partitions: writes checkpoints for `--to` workers from the newest of the
    /// `--from` workers (stopped, at the same place in the input).
    Reshard {
        /// The worker count that wrote the checkpoints.
        #[arg(long)]
        from: u32,
        /// The new worker count.
        #[arg(long)]
        to: u32,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Keys and bytes per operator, timers, dedupe and identity state of one checkpoint.
    Inspect {
        /// The checkpoint's id, as `checkpoint list` shows it.
        id: u64,
        /// Config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (overrides the config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

impl CheckpointCommand {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            CheckpointCommand::List { config, data_dir } => {
                list(&load_config(config.as_deref(), data_dir)?).await
            }
            CheckpointCommand::Inspect {
                id,
                config,
                data_dir,
            } => inspect(&load_config(config.as_deref(), data_dir)?, id).await,
            CheckpointCommand::Reshard {
                from,
                to,
                config,
                data_dir,
            } => reshard(&load_config(config.as_deref(), data_dir)?, from, to).await,
        }
    }
}

/// Writes checkpoints for `to` workers from those of `from` workers, and says where.
async fn reshard(cfg: &Config, from: u32, to: u32) -> anyhow::Result<()> {
    let done = footfall_pipeline::checkpoint::reshard(cfg, &cfg.transport.data_dir, from, to)
        .await
        .map_err(anyhow::Error::msg)?;
    for (j, url, id) in done.written {
        println!("worker {j} of {to}: checkpoint {id} at {url}");
    }
    println!(
        "start {to} workers with transport.worker_count = {to}: each resumes from its checkpoint"
    );
    Ok(())
}

/// `1.5 MiB`, `830 B`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// An RFC 3339 instant to the second.
fn second(t: &str) -> String {
    match t.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => t.to_owned(),
    }
}

/// Opens the configured store, or says there is nothing when a local one does not exist.
fn open(cfg: &Config) -> anyhow::Result<Option<Store>> {
    let url = cfg.checkpoint_location(&cfg.transport.data_dir);
    let local = match url.split_once("://") {
        None => Some(url.as_str()),
        Some(("file", rest)) => Some(rest),
        Some(_) => None,
    };
    if local.is_some_and(|p| !Path::new(p).is_dir()) {
        println!("no checkpoints at {url}");
        return Ok(None);
    }
    Ok(Some(Store::open(
        &url,
        cfg.checkpoint.keep,
        &cfg.checkpoint.options,
    )?))
}

/// Prints every checkpoint, newest first, and whether a restart could use it.
pub async fn list(cfg: &Config) -> anyhow::Result<()> {
    let Some(store) = open(cfg)? else {
        return Ok(());
    };
    let found = store.survey().await?;
    if found.is_empty() {
        println!("no checkpoints at {}", store.location);
        return Ok(());
    }
    println!("checkpoints at {}", store.location);
    println!(
        "{:>6}  {:<20}  {:<20}  {:>7}  {:>10}  status",
        "id", "created", "clock", "workers", "size"
    );
    let mut newest_complete = true;
    for f in &found {
        match &f.manifest {
            Ok(m) => {
                let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
                let status = if newest_complete {
                    "complete, a restart resumes here"
                } else {
                    "complete"
                };
                newest_complete = false;
                println!(
                    "{:>6}  {:<20}  {:<20}  {:>7}  {:>10}  {status}",
                    m.id,
                    second(&m.created_at),
                    m.clock,
                    m.workers,
                    size(bytes)
                );
            }
            Err(why) => println!(
                "{:>6}  {:<20}  {:<20}  {:>7}  {:>10}  unusable: {why}",
                f.id, "-", "-", "-", "-"
            ),
        }
    }
    Ok(())
}

/// Prints per-operator key counts and sizes, and the sequencer's state, of checkpoint `id`.
pub async fn inspect(cfg: &Config, id: u64) -> anyhow::Result<()> {
    let Some(store) = open(cfg)? else {
        bail!("checkpoint {id} not found");
    };
    let m: Manifest = match store.manifest(id).await {
        Ok(m) => m,
        Err(why) => bail!("checkpoint {id} at {} is unusable: {why}", store.location),
    };
    let total: u64 = m.files.iter().map(|f| f.bytes).sum();
    println!(
        "checkpoint {} at {}: clock {}, written {}, {} workers, {}",
        m.id,
        store.location,
        m.clock,
        second(&m.created_at),
        m.workers,
        size(total)
    );
    // Per section, summed over the workers' files; the sequencer's file apart.
    let mut workers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut sequencer: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in &m.files {
        let bytes = store
            .read_file(&m, &f.name)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("checkpoint {id}"))?;
        let sections = section_sizes(&bytes)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("checkpoint {id}: {}", f.name))?;
        let into = if f.name == "sequencer.arrow" {
            &mut sequencer
        } else {
            &mut workers
        };
        for s in sections {
            let e = into.entry(s.section).or_default();
            e.0 += s.rows;
            e.1 += s.bytes;
        }
    }
    println!("\n{:<28}  {:>12}  {:>10}", "operator state", "keys", "size");
    let mut any = false;
    for (section, (rows, bytes)) in &workers {
        if let Some(op) = section.strip_prefix("state/") {
            any = true;
            println!("{op:<28}  {:>12}  {:>10}", thousands(*rows), size(*bytes));
        }
    }
    if !any {
        println!("(no operator holds state)");
    }
    let row = |map: &BTreeMap<String, (u64, u64)>, section: &str, label: &str| {
        let (rows, bytes) = map.get(section).copied().unwrap_or_default();
        println!("{label:<28}  {:>12}  {:>10}", thousands(rows), size(bytes));
    };
    println!("\n{:<28}  {:>12}  {:>10}", "bookkeeping", "entries", "size");
    row(&workers, "timer", "pending timers");
    row(&workers, "touched", "keys' last activity (TTL)");
    row(&sequencer, "source", "input partitions");
    row(&sequencer, "dedupe", "dedupe buckets (hourly)");
    row(&sequencer, "link", "identity links");
    row(&sequencer, "hard", "e-mail and phone ids");
    row(&sequencer, "erased", "erased keys (hashed)");
    // Sections added later are shown by name, so the sizes always add up.
    const SHOWN: [&str; 7] = [
        "timer", "touched", "source", "dedupe", "link", "hard", "erased",
    ];
    for (map, whose) in [(&workers, "workers"), (&sequencer, "sequencer")] {
        for section in map.keys() {
            if !section.starts_with("state/") && !SHOWN.contains(&section.as_str()) {
                row(map, section, &format!("{section} ({whose})"));
            }
        }
    }
    println!("\noutput positions (a restart reads back from here)");
    for (topic, ends) in &m.outputs {
        let ends: Vec<String> = ends.iter().map(|e| e.to_string()).collect();
        println!("  {topic:<16} {}", ends.join(" "));
    }
    Ok(())
}

/// `footfall identity show ID`: the identity graph of the newest checkpoint.
pub async fn identity_show(cfg: &Config, id: &str) -> anyhow::Result<()> {
    use footfall_operators::identity::{Identity, erased_hash};
    let Some(store) = open(cfg)? else {
        return Ok(());
    };
    let Some((manifest, data)) = store.load_newest().await? else {
        bail!("no usable checkpoint: run `footfall replay` or `footfall run` first");
    };
    if data.sequencer.erased.contains(&erased_hash(id)) {
        println!("{id}: erased (nothing about them is kept)");
        return Ok(());
    }
    let mut identity = Identity::default();
    footfall_pipeline::runtime::sequencer::restore_identity(&mut identity, &data.sequencer);
    let Some(ids) = identity.show(id) else {
        bail!(
            "{id} is not in the identity graph of checkpoint {} (customers appear once they \
             have a device linked or an e-mail / phone hash)",
            manifest.id
        );
    };
    println!("customer      {}", ids.user_id);
    println!("  user_id       {}", ids.user_id);
    println!(
        "  email_sha256  {}",
        ids.email_sha256.as_deref().unwrap_or("–")
    );
    println!(
        "  phone_sha256  {}",
        ids.phone_sha256.as_deref().unwrap_or("–")
    );
    if ids.anonymous_ids.is_empty() {
        println!("  anonymous_id  –");
    }
    for (anon, since) in &ids.anonymous_ids {
        println!("  anonymous_id  {anon} (linked since {since})");
    }
    println!(
        "as of checkpoint {} (clock {})",
        manifest.id, manifest.clock
    );
    Ok(())
}

//! `footfall demo`: generate, replay, and show a newcomer what happened.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use footfall_pipeline::config::{Config, TransportConfig};
use footfall_pipeline::generate::{self, Params};
use footfall_pipeline::log::Log;
use footfall_pipeline::runtime;

use super::report::{print_summary, thousands};

pub async fn demo(data_dir: &Path, customers: u64, hours: f64, seed: u64) -> anyhow::Result<()> {
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
        "footfall demo: synthetic retail traffic in, triggered actions out\n"
    )?;
    let records = generate::generate(&params);
    let cfg = Config {
        transport: TransportConfig {
            data_dir: data_dir.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    let log = Log::open(data_dir, cfg.log.clone())?;
    let n = generate::write(&log, cfg.transport.partitions, &records)?;
    writeln!(
        out,
        "  generated   {} records: {customers} customers browsing, carting, buying and walking away\n              over {hours} h from {} (seed {seed}) into {}/ ({} partitions per topic),\n              \
         with stores, hourly weather, stock lots, profiles, and purchase histories reaching\n              \
         {} days back (so churn risks and slow-mover markdowns fire before those {hours} h)",
        thousands(n),
        params.start,
        data_dir.display(),
        cfg.transport.partitions,
        generate::HISTORY_DAYS
    )?;
    drop(records);
    let summary = runtime::replay(&cfg, &log, None, None).await?;
    writeln!(
        out,
        "  replayed in event time through every trigger, with the default settings:\n              \
         abandoned_cart, birthday, weather_promo, stale_stock (and markdown_offer),\n              \
         churn_risk, return_abuse"
    )?;
    writeln!(
        out,
        "  then through the delivery policies: consent, a 5 % holdout (control), one action\n              \
         per customer a minute by priority, frequency caps (push: 1 a day, 3 a week), quiet\n              \
         hours 21:00–08:00 local"
    )?;
    print_summary(&summary, &mut out)?;
    let lifts = footfall_pipeline::lift::report(&log)?;
    if !lifts.is_empty() {
        writeln!(
            out,
            "\n  lift (footfall lift --data-dir {}): purchases within 7 days of an action",
            data_dir.display()
        )?;
        for line in footfall_pipeline::lift::render(&lifts).lines() {
            match line {
                "" => writeln!(out)?,
                _ => writeln!(out, "    {line}")?,
            }
        }
    }
    let samples = summary.stats.samples();
    if !samples.is_empty() {
        writeln!(
            out,
            "\n  sample actions (the first few, and the first of every trigger):"
        )?;
        for a in samples {
            let line = serde_json::to_string(&a).unwrap_or_default();
            writeln!(out, "    {} → {line}", a.topic.name())?;
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
        "    footfall consume --data-dir {d} --topic alerts --from-beginning --max 5"
    )?;
    writeln!(
        out,
        "    footfall consume --data-dir {d} --topic suppressions --from-beginning --max 5"
    )?;
    writeln!(
        out,
        "    footfall consume --data-dir {d} --topic deadletter --from-beginning --max 5"
    )?;
    writeln!(
        out,
        "  the state it kept (a checkpoint at the end: a rerun resumes there, writing nothing twice):"
    )?;
    writeln!(out, "    footfall checkpoint list --data-dir {d}")?;
    writeln!(out, "    footfall replay --data-dir {d}")?;
    writeln!(out, "  ask it in SQL:")?;
    writeln!(
        out,
        "    footfall sql --data-dir {d} \"SELECT trigger, topic, count(*) AS n FROM actions GROUP BY 1, 2 ORDER BY n DESC\""
    )?;
    writeln!(
        out,
        "    footfall sql --data-dir {d} \"SELECT customer_key, frequency, monetary, round(p_alive, 3) AS p_alive FROM customers WHERE frequency > 0 ORDER BY p_alive LIMIT 5\""
    )?;
    writeln!(
        out,
        "    footfall sql --data-dir {d} \"SELECT count(*) AS open_carts, sum(value) AS value FROM carts\""
    )?;
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

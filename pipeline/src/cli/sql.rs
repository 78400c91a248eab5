//! `footfall sql` and `footfall rules validate|test`.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use footfall_sql::rules::{Rule, files};
use footfall_sql::{Engine, Limits, Retention, Tables, format, ruletest};

use footfall_pipeline::config::Config;
use footfall_pipeline::log::Log;

/// Loads the data directory, runs `sql`, prints the rows.
pub async fn query(cfg: &Config, sql: &str, json: bool) -> anyhow::Result<()> {
    footfall_pipeline::sql::check(&cfg.sql).map_err(anyhow::Error::msg)?;
    let dir = &cfg.transport.data_dir;
    let log = Log::open(dir, cfg.log.clone())
        .with_context(|| format!("opening the log in {}", dir.display()))?;
    let mut tables = footfall_pipeline::sql::tables(&cfg.sql);
    let started = Instant::now();
    let loaded = footfall_pipeline::sql::load(&log, &mut tables, |n| {
        eprintln!("loading: {n} records read");
    })?;
    eprintln!(
        "loaded {} events and {} actions from {} in {:.2} s ({} records skipped as invalid)",
        loaded.events,
        loaded.actions,
        dir.display(),
        started.elapsed().as_secs_f64(),
        loaded.skipped
    );
    let mut engine = Engine::new(tables.snapshot(), footfall_pipeline::sql::limits(&cfg.sql));
    if footfall_sql::live::mentioned(sql) {
        // The live state tables, as the newest checkpoint holds the state.
        match footfall_pipeline::sql::live_state(cfg, dir)
            .await
            .map_err(anyhow::Error::msg)?
        {
            Some((id, live)) => {
                eprintln!(
                    "live state (customers, carts, lots) from checkpoint {id}: {} carts, {} lots, {} customers with purchases",
                    live.carts.len(),
                    live.lots.len(),
                    live.rfm.len()
                );
                engine = engine.with_live(footfall_sql::live::LiveTables::build(&live)?);
            }
            None => eprintln!(
                "no checkpoint in {}: the live state tables (customers, carts, lots) are empty",
                cfg.checkpoint_location(dir)
            ),
        }
    }
    let started = Instant::now();
    let answer = engine.query(sql).await?;
    let took = started.elapsed();
    let mut out = std::io::stdout().lock();
    if json {
        for row in format::json_rows(&answer)? {
            serde_json::to_writer(&mut out, &row)?;
            writeln!(out)?;
        }
    } else {
        writeln!(out, "{}", format::pretty(&answer)?)?;
    }
    out.flush()?;
    eprintln!(
        "{} rows in {:.1} ms",
        answer.rows(),
        took.as_secs_f64() * 1e3
    );
    Ok(())
}

fn rules(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let list =
        files(dir).with_context(|| format!("reading the rules directory {}", dir.display()))?;
    if list.is_empty() {
        bail!("no rules (*.sql) in {}", dir.display());
    }
    Ok(list)
}

/// Checks every rule; prints each error as file:line:column and fails if any.
pub async fn validate(dir: &Path) -> anyhow::Result<()> {
    let engine = Engine::new(
        Tables::new(Retention::default()).snapshot(),
        Limits::default(),
    );
    let mut bad = 0;
    let list = rules(dir)?;
    for path in &list {
        let checked = match Rule::load(path) {
            Ok(rule) => rule.validate(&engine).await.map(|()| rule),
            Err(e) => Err(e),
        };
        match checked {
            Ok(rule) => println!(
                "ok     {} (version {}, {})",
                rule.name,
                rule.version,
                path.display()
            ),
            Err(e) => {
                bad += 1;
                println!("error  {e}");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} rules have errors", list.len());
    }
    println!("{} rules valid", list.len());
    Ok(())
}

/// Runs every rule's test; fails if a rule is invalid or a test fails.
pub async fn test(dir: &Path) -> anyhow::Result<()> {
    let engine = Engine::new(
        Tables::new(Retention::default()).snapshot(),
        Limits::default(),
    );
    let (mut failed, mut untested) = (0, 0);
    let list = rules(dir)?;
    for path in &list {
        let rule = match Rule::load(path) {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                println!("FAIL  {e}");
                continue;
            }
        };
        if let Err(e) = rule.validate(&engine).await {
            failed += 1;
            println!("FAIL  {e}");
            continue;
        }
        let started = Instant::now();
        match ruletest::run(&rule).await {
            Ok(o) if o.input.is_none() => {
                untested += 1;
                println!("none  {}: no {}.test.jsonl", rule.name, rule.name);
            }
            Ok(o) if o.failures.is_empty() => println!(
                "pass  {}: {} actions over {} evaluations ({:.2} s)",
                rule.name,
                o.actions.len(),
                o.evaluations,
                started.elapsed().as_secs_f64()
            ),
            Ok(o) => {
                failed += 1;
                println!("FAIL  {}:", rule.name);
                for f in &o.failures {
                    println!("        {f}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {}: {e}", rule.name);
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} rules failed", list.len());
    }
    println!(
        "{} rules passed, {untested} without a test",
        list.len() - untested
    );
    Ok(())
}

/// Sends `sql` to a running service's admin API at `url` and prints the rows.
pub async fn remote(url: &str, token: Option<&str>, sql: &str, json: bool) -> anyhow::Result<()> {
    let endpoint = format!("{}/v1/query", url.trim_end_matches('/'));
    // TLS (an https:// admin API behind a proxy) is rustls on ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut req = client.post(&endpoint).body(sql.to_owned());
    if !json {
        req = req.header("accept", footfall_pipeline::admin::ARROW_STREAM);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.with_context(|| {
        format!(
            "cannot reach the footfall service at {endpoint} (is `footfall run` up? use --data-dir to query a data directory offline)"
        )
    })?;
    let status = resp.status();
    let body = resp.bytes().await?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{status}: {msg}");
    }
    let mut out = std::io::stdout().lock();
    if json {
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        for row in v["rows"].as_array().into_iter().flatten() {
            serde_json::to_writer(&mut out, row)?;
            writeln!(out)?;
        }
        eprintln!(
            "{} rows in {:.1} ms",
            v["row_count"],
            v["elapsed_ms"].as_f64().unwrap_or(0.0)
        );
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        let answer = footfall_sql::Answer { schema, batches };
        writeln!(out, "{}", format::pretty(&answer)?)?;
        out.flush()?;
        eprintln!("{} rows", answer.rows());
    }
    Ok(())
}

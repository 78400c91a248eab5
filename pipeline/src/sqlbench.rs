//! `footfall bench --sql`: what the retained tables cost and how fast SQL runs on them.
//!
//! 1. Builds the `clickstream` table from `rows` synthetic events spread over one hour
//!    (50 stores; views, cart changes with values, page views) and prints the
//!    append rate and the bytes retained per row.
//! 2. Runs a tumbling 1-minute aggregate (count and sum of value per store) over it,
//!    five times, and prints each time.
//! 3. Runs the rules of a rules directory at the size 20,000 events/s leaves in the
//!    table between evaluations, 20 evaluations (each rule in turn), as a service
//!    running 20 rules every 10 s does each cycle, and prints the CPU they take as a
//!    share of one core.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use footfall_operators::event::{CartChange, Event, EventKind, Item, Str, Topic};
use footfall_operators::time::{Span, Timestamp};
use footfall_sql::rules::{Rule, files};
use footfall_sql::{Engine, Limits, Retention, Table, Tables};
use rust_decimal::Decimal;

const STORES: u64 = 50;

/// Synthetic clickstream: `n` events over `span` ending at `end`.
fn fill(tables: &mut Tables, n: u64, span: Span, end: Timestamp) {
    let start = end.as_nanos() - span.as_nanos();
    let step = span.as_nanos() / n.max(1) as i64;
    let stores: Vec<Str> = (0..STORES).map(|s| format!("st-{s:02}").into()).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        // xorshift: cheap, deterministic.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let customer = x % 200_000;
        let item: Str = format!("sku-{}", (x >> 20) % 5_000).into();
        let items = vec![Item {
            item_id: item,
            item_name: None,
            item_category: Some(
                ["dairy", "bakery", "home", "garden"][(x >> 40) as usize % 4].into(),
            ),
            price: Some(Decimal::new(((x >> 8) % 10_000) as i64 + 100, 2)),
            quantity: 1 + ((x >> 50) % 3) as u32,
        }];
        let kind = match x % 10 {
            0..=3 => EventKind::ViewItem { items },
            4 | 5 => EventKind::AddToCart(CartChange {
                cart_id: Some(format!("cart-{customer}").into()),
                currency: Some("CNY".into()),
                items,
            }),
            _ => EventKind::PageView,
        };
        let e = Event {
            message_id: format!("c-{i}").into(),
            timestamp: Timestamp::from_nanos(start + i as i64 * step),
            user_id: Some(format!("m-{customer}").into()),
            anonymous_id: None,
            channel: Some("app".into()),
            store_id: Some(stores[(x >> 30) as usize % STORES as usize].clone()),
            kind,
        };
        let key = e.user_id.clone().unwrap_or_default();
        tables.append(Topic::Clickstream, &key, &e);
    }
    tables.seal();
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs the SQL benchmark and prints its figures.
pub async fn run(rows: u64, rules_dir: &Path) -> anyhow::Result<()> {
    let end = Timestamp::parse_rfc3339("2026-11-20T11:00:00Z").map_err(anyhow::Error::msg)?;
    let unlimited = Retention {
        age: Span::from_secs(86_400),
        bytes: usize::MAX,
    };
    let mut tables = Tables::new(unlimited);
    let started = Instant::now();
    fill(&mut tables, rows, Span::from_secs(3600), end);
    let took = started.elapsed().as_secs_f64();
    let (_, n, bytes) = tables
        .sizes()
        .into_iter()
        .find(|(t, ..)| *t == Table::Clickstream)
        .unwrap_or((Table::Clickstream, 0, 0));
    println!("footfall bench --sql");
    println!(
        "  retained          {n} clickstream rows over 1 h in {bytes} bytes: {:.1} bytes a row (target: under 120)",
        bytes as f64 / n.max(1) as f64
    );
    println!(
        "  append            {:.0} rows/s into Arrow builders",
        n as f64 / took
    );
    let engine = Engine::new(tables.snapshot(), Limits::default());
    let sql = "SELECT store_id, window_start, count(*) AS events, sum(value) AS value \
               FROM tumble(clickstream, \"timestamp\", INTERVAL '1 minute') \
               GROUP BY store_id, window_start";
    let mut times = Vec::new();
    let mut groups = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let a = engine.query(sql).await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        groups = a.rows();
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  tumble 1 min      count and sum(value) per store over {n} rows: {groups} groups; {} ms (median {:.0} ms, target: under 300)",
        times
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        sorted[sorted.len() / 2]
    );
    drop(engine);
    drop(tables);

    // Rules: 20,000 events/s; the table holds what the default 1 GiB retention keeps of
    // it (or an hour, whichever is less), and the rules run over that.
    let rules: Vec<Rule> = files(rules_dir)
        .with_context(|| format!("reading {}", rules_dir.display()))?
        .iter()
        .map(|p| Rule::load(p).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    if rules.is_empty() {
        anyhow::bail!("no rules in {}", rules_dir.display());
    }
    let per_row = bytes as f64 / n.max(1) as f64;
    let keep = ((1u64 << 30) as f64 / per_row.max(1.0)) as u64;
    let rate = 20_000u64;
    let held = keep.min(rate * 3600);
    let mut tables = Tables::new(Retention::default());
    fill(
        &mut tables,
        held,
        Span::from_secs((held / rate).max(1) as i64),
        end,
    );
    let snapshot = tables.snapshot();
    let cpu = cpu_time();
    let wall = Instant::now();
    let mut actions = 0;
    let mut per_rule = vec![0.0f64; rules.len()];
    for i in 0..20 {
        let rule = &rules[i % rules.len()];
        let started = cpu_time();
        let engine = Engine::new(snapshot.clone(), Limits::default())
            .with_clock(end)
            .with_partitions(1);
        let a = engine
            .query(&rule.sql)
            .await
            .with_context(|| format!("rule {}", rule.name))?;
        actions += a.rows();
        per_rule[i % rules.len()] += (cpu_time() - started).as_secs_f64();
    }
    let cpu = (cpu_time() - cpu).as_secs_f64();
    let runs = |i: usize| (20 - i).div_ceil(rules.len()).max(1) as f64;
    let each: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} {:.0} ms", r.name, per_rule[i] / runs(i) * 1e3))
        .collect();
    println!(
        "  rules             20 evaluations of {} rules over {held} rows (what 20,000 events/s leaves in 1 GiB or 1 h): {:.2} s wall, {:.2} s CPU, {actions} rows; every 10 s that is {:.1} % of one core (target: under 25 %)",
        rules.len(),
        wall.elapsed().as_secs_f64(),
        cpu,
        cpu / 10.0 * 100.0
    );
    println!(
        "                    CPU per evaluation: {}",
        each.join(", ")
    );
    Ok(())
}

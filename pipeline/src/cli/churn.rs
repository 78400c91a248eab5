//! `footfall fit-churn`: fits churn_risk's BG/NBD parameters to a purchase history.

use std::path::Path;

use anyhow::{Context, bail};
use footfall_operators::churn::{self, Rfm};
use footfall_operators::time::Timestamp;

/// Fits and prints the parameters, from a `lifetimes`-style summary CSV or from a
/// `transactions` JSONL file (observed until `until`, else its latest timestamp).
pub fn fit_churn(
    summary: Option<&Path>,
    transactions: Option<&Path>,
    until: Option<&str>,
) -> anyhow::Result<()> {
    let (data, unit) = match (summary, transactions) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let data = churn::read_summary_csv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            (data, "the file's unit of time")
        }
        (None, Some(path)) => (from_transactions(path, until)?, "days"),
        _ => bail!("give one of --summary FILE.csv or --transactions FILE.jsonl"),
    };
    let Some(fit) = churn::fit(&data) else {
        bail!("no customers with a purchase to fit");
    };
    let p = fit.params;
    let repeaters = data.iter().filter(|h| h.x > 0.0).count();
    println!(
        "BG/NBD fitted by maximum likelihood on {} customers ({repeaters} with repeat purchases), in {unit}",
        fit.customers
    );
    println!(
        "  log-likelihood {:.4} after {} iterations",
        fit.log_likelihood, fit.iterations
    );
    if repeaters < 30 {
        eprintln!(
            "note: only {repeaters} customers bought on more than one day: too few for a meaningful fit (use months of history)"
        );
    }
    println!("\n[triggers.churn_risk]");
    println!("r = {:.4}", p.r);
    println!("alpha = {:.4}", p.alpha);
    println!("a = {:.4}", p.a);
    println!("b = {:.4}", p.b);
    Ok(())
}

/// The purchases of a `transactions` JSONL file, summarised per customer in days.
fn from_transactions(path: &Path, until: Option<&str>) -> anyhow::Result<Vec<Rfm>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut purchases: Vec<(String, Timestamp)> = Vec::new();
    let mut skipped = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            skipped.push(i + 1);
            continue;
        };
        if v["type"] != "purchase" {
            continue;
        }
        let customer = match (v["user_id"].as_str(), v["anonymous_id"].as_str()) {
            (Some(u), _) => u.to_owned(),
            (None, Some(a)) => format!("anon:{a}"),
            (None, None) => continue,
        };
        let Some(at) = v["timestamp"]
            .as_str()
            .and_then(|t| Timestamp::parse_rfc3339(t).ok())
        else {
            skipped.push(i + 1);
            continue;
        };
        purchases.push((customer, at));
    }
    if let Some(first) = skipped.first() {
        eprintln!(
            "note: skipped {} lines that are not JSON records with a valid timestamp (the first: line {first})",
            skipped.len()
        );
    }
    let end = match until {
        Some(t) => Timestamp::parse_rfc3339(t).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
        None => match purchases.iter().map(|(_, t)| *t).max() {
            Some(t) => t,
            None => bail!("{}: no purchase records", path.display()),
        },
    };
    let summary = churn::summarize(purchases.iter().map(|(c, t)| (c.as_str(), *t)), end);
    Ok(summary.into_values().collect())
}

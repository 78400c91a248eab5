//! The lift report: does a trigger make customers buy? Treatment against control, per
//! trigger, from the `notifications` and `conversions` topics of a data directory.
//!
//! An action *converted* when at least one purchase was credited to it (see
//! `footfall_operators::policy::lift`). The conversion rate is converted actions over
//! actions; lift is the treatment rate minus the control rate; the p-value is the
//! two-sided two-proportion z-test's (pooled), so a small one says the difference is
//! unlikely to be chance.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::log::{Batch, Log, LogError};

/// One group's figures for one trigger.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupFigures {
    /// Actions written.
    pub actions: u64,
    /// Distinct customers who got them.
    pub customers: u64,
    /// Actions with at least one purchase credited.
    pub converted: u64,
    /// Purchases credited.
    pub conversions: u64,
    /// Their value, per currency.
    pub revenue: BTreeMap<String, Decimal>,
}

impl GroupFigures {
    /// Converted actions over actions.
    pub fn rate(&self) -> Option<f64> {
        (self.actions > 0).then(|| self.converted as f64 / self.actions as f64)
    }

    /// Revenue per customer, per currency.
    pub fn revenue_per_customer(&self) -> BTreeMap<String, Decimal> {
        self.revenue
            .iter()
            .map(|(c, v)| {
                let per = match self.customers {
                    0 => Decimal::ZERO,
                    n => (*v / Decimal::from(n)).round_dp(2),
                };
                (c.clone(), per)
            })
            .collect()
    }
}

/// One trigger's lift.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerLift {
    /// The trigger.
    pub trigger: String,
    /// Treatment.
    pub treatment: GroupFigures,
    /// Control.
    pub control: GroupFigures,
}

impl TriggerLift {
    /// Treatment rate minus control rate.
    pub fn absolute(&self) -> Option<f64> {
        Some(self.treatment.rate()? - self.control.rate()?)
    }

    /// The absolute lift over the control rate.
    pub fn relative(&self) -> Option<f64> {
        let c = self.control.rate()?;
        (c > 0.0).then(|| self.absolute().unwrap_or(0.0) / c)
    }

    /// The two-proportion z-test's two-sided p-value.
    pub fn p_value(&self) -> Option<f64> {
        two_proportion_p(
            self.treatment.converted,
            self.treatment.actions,
            self.control.converted,
            self.control.actions,
        )
    }
}

/// Two-sided p-value of the pooled two-proportion z-test of `x1/n1` against `x2/n2`.
pub fn two_proportion_p(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return Some(1.0);
    }
    let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
    Some(erfc(z.abs() / std::f64::consts::SQRT_2))
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error below
/// 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[derive(Deserialize)]
struct ActionRow {
    trigger: String,
    customer_id: Option<String>,
    group: String,
}

#[derive(Deserialize)]
struct ConversionRow {
    action_id: String,
    trigger: String,
    group: String,
    value: String,
    currency: Option<String>,
}

fn each_record(log: &Log, topic: &str, mut f: impl FnMut(&[u8])) -> Result<(), LogError> {
    let Some(parts) = log.partitions(topic)? else {
        return Ok(());
    };
    let mut batch = Batch::default();
    for p in 0..parts {
        let mut reader = log.reader(topic, p, 0)?;
        while reader.poll(&mut batch, 4096, 8 << 20)? > 0 {
            for (_, bytes) in batch.iter() {
                f(bytes);
            }
        }
    }
    Ok(())
}

/// Reads a data directory's `notifications` and `conversions` into per-trigger lift.
pub fn report(log: &Log) -> Result<Vec<TriggerLift>, LogError> {
    let mut by: BTreeMap<String, TriggerLift> = BTreeMap::new();
    let mut customers: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    each_record(log, "notifications", |bytes| {
        let Ok(a) = serde_json::from_slice::<ActionRow>(bytes) else {
            return;
        };
        if let Some(g) = group_of(&mut by, &a.trigger, &a.group) {
            g.actions += 1;
        }
        customers
            .entry((a.trigger, a.group))
            .or_default()
            .insert(a.customer_id.unwrap_or_default());
    })?;
    let mut converted: BTreeSet<String> = BTreeSet::new();
    each_record(log, "conversions", |bytes| {
        let Ok(c) = serde_json::from_slice::<ConversionRow>(bytes) else {
            return;
        };
        let Some(g) = group_of(&mut by, &c.trigger, &c.group) else {
            return;
        };
        g.conversions += 1;
        if converted.insert(c.action_id) {
            g.converted += 1;
        }
        let value = Decimal::from_str(&c.value).unwrap_or_default();
        *g.revenue.entry(c.currency.unwrap_or_default()).or_default() += value;
    })?;
    for ((trigger, group), set) in customers {
        if let Some(g) = group_of(&mut by, &trigger, &group) {
            g.customers = set.len() as u64;
        }
    }
    Ok(by.into_values().collect())
}

fn group_of<'a>(
    by: &'a mut BTreeMap<String, TriggerLift>,
    trigger: &str,
    group: &str,
) -> Option<&'a mut GroupFigures> {
    let t = by.entry(trigger.to_owned()).or_insert_with(|| TriggerLift {
        trigger: trigger.to_owned(),
        ..TriggerLift::default()
    });
    match group {
        "treatment" => Some(&mut t.treatment),
        "control" => Some(&mut t.control),
        _ => None,
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{:.2} %", v * 100.0))
}

fn money(m: &BTreeMap<String, Decimal>) -> String {
    if m.is_empty() {
        return "0".to_owned();
    }
    m.iter()
        .map(|(c, v)| format!("{v} {c}").trim().to_owned())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The report as a table a marketer reads.
pub fn render(lifts: &[TriggerLift]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<9} {:>8} {:>9} {:>9} {:>11} {:>16}",
        "trigger", "group", "actions", "customers", "converted", "conv. rate", "revenue/customer"
    );
    for l in lifts {
        for (name, g) in [("treatment", &l.treatment), ("control", &l.control)] {
            let _ = writeln!(
                s,
                "{:<16} {:<9} {:>8} {:>9} {:>9} {:>11} {:>16}",
                l.trigger,
                name,
                g.actions,
                g.customers,
                g.converted,
                pct(g.rate()),
                money(&g.revenue_per_customer())
            );
        }
        let verdict = match l.p_value() {
            None => "no control group to compare with".to_owned(),
            Some(p) if p < 0.05 => format!("p = {p:.4}: significant at 5 %"),
            Some(p) => format!("p = {p:.4}: not significant at 5 %"),
        };
        let _ = writeln!(
            s,
            "{:<16} lift {} absolute, {} relative; {verdict}\n",
            "",
            l.absolute()
                .map_or_else(|| "–".to_owned(), |v| format!("{:+.2} pp", v * 100.0)),
            l.relative()
                .map_or_else(|| "–".to_owned(), |v| format!("{:+.1} %", v * 100.0)),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_test_matches_a_reference_computation() {
        // Reference values from Python: pooled z = 1.63299, p = erfc(|z|/√2).
        let p = two_proportion_p(30, 100, 20, 100).unwrap();
        assert!((p - 0.102_470_434_86).abs() < 1e-6, "{p}");
        let p = two_proportion_p(990, 3300, 34, 170).unwrap();
        assert!((p - 0.005_306_061_84).abs() < 1e-6, "{p}");
        assert_eq!(two_proportion_p(1, 10, 0, 0), None);
        assert_eq!(two_proportion_p(0, 10, 0, 10), Some(1.0));
    }

    #[test]
    fn rates_and_lift() {
        let l = TriggerLift {
            trigger: "abandoned_cart".into(),
            treatment: GroupFigures {
                actions: 200,
                customers: 180,
                converted: 60,
                conversions: 70,
                revenue: [("CNY".to_owned(), Decimal::new(90_000, 2))].into(),
            },
            control: GroupFigures {
                actions: 100,
                customers: 100,
                converted: 20,
                conversions: 20,
                revenue: BTreeMap::new(),
            },
        };
        assert_eq!(l.treatment.rate(), Some(0.3));
        assert!((l.absolute().unwrap() - 0.1).abs() < 1e-12);
        assert!((l.relative().unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(
            l.treatment.revenue_per_customer()["CNY"].to_string(),
            "5.00"
        );
        let text = render(&[l]);
        assert!(
            text.contains("+10.00 pp") && text.contains("+50.0 %"),
            "{text}"
        );
    }
}

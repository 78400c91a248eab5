//! The BG/NBD model of repeat purchasing (Fader, Hardie and Lee, 2005), as the
//! `lifetimes` package computes it: P(alive) for churn_risk, and the maximum-likelihood
//! fit of its parameters behind `footfall fit-churn`.
//!
//! A customer is summarised as `x` (repeat purchase days after the first), `t_x` (days
//! from the first to the last purchase day) and `T` (days from the start of the first
//! purchase day to the end of observation), all in days with `freq="D"` semantics.

use std::collections::BTreeMap;

use crate::time::Timestamp;

/// The model's four parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BgNbd {
    /// Shape of the gamma distribution of purchase rates.
    pub r: f64,
    /// Scale of the gamma distribution of purchase rates.
    pub alpha: f64,
    /// Beta distribution of the dropout probability: `a`.
    pub a: f64,
    /// Beta distribution of the dropout probability: `b`.
    pub b: f64,
}

/// One customer's purchase history, summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rfm {
    /// Repeat purchase days: distinct purchase days after the first.
    pub x: f64,
    /// Days from the first to the last purchase day.
    pub t_x: f64,
    /// Days from the start of the first purchase day to the end of observation.
    pub t: f64,
}

impl BgNbd {
    /// P(alive) of a customer with history `h`: 1 when there was no repeat purchase.
    pub fn p_alive(&self, h: Rfm) -> f64 {
        if h.x == 0.0 {
            return 1.0;
        }
        let ratio = ((self.alpha + h.t) / (self.alpha + h.t_x)).powf(self.r + h.x);
        1.0 / (1.0 + self.a / (self.b + h.x - 1.0) * ratio)
    }

    /// The log-likelihood of one customer's history.
    pub fn log_likelihood(&self, h: Rfm) -> f64 {
        let BgNbd { r, alpha, a, b } = *self;
        let Rfm { x, t_x, t } = h;
        let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
        let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
        let a3 = -(r + x) * (alpha + t).ln();
        if x > 0.0 {
            let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
            a1 + a2 + log_add_exp(a3, a4)
        } else {
            a1 + a2 + a3
        }
    }
}

fn log_add_exp(p: f64, q: f64) -> f64 {
    let m = p.max(q);
    m + ((p - m).exp() + (q - m).exp()).ln()
}

/// ln Γ(z) for z > 0: the Lanczos approximation (g = 7, 9 terms), accurate to about
/// 1e-15 relative.
pub fn ln_gamma(z: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if z < 0.5 {
        // Reflection: Γ(z) Γ(1 − z) = π / sin(πz).
        return (std::f64::consts::PI / (std::f64::consts::PI * z).sin()).ln() - ln_gamma(1.0 - z);
    }
    let z = z - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (z + i as f64);
    }
    let t = z + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (z + 0.5) * t.ln() - t + sum.ln()
}

/// The result of [`fit`].
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    /// The parameters of highest likelihood.
    pub params: BgNbd,
    /// Their total log-likelihood over the customers.
    pub log_likelihood: f64,
    /// Customers fitted.
    pub customers: usize,
    /// Nelder–Mead iterations taken.
    pub iterations: usize,
}

/// Fits the parameters by maximum likelihood (no penalty, as `lifetimes` does by
/// default): Nelder–Mead over the logarithms of the parameters, so they stay positive.
/// `None` when there are no customers.
pub fn fit(customers: &[Rfm]) -> Option<Fit> {
    if customers.is_empty() {
        return None;
    }
    // Identical histories share one likelihood term.
    let mut groups: BTreeMap<[u64; 3], f64> = BTreeMap::new();
    for h in customers {
        *groups
            .entry([h.x.to_bits(), h.t_x.to_bits(), h.t.to_bits()])
            .or_default() += 1.0;
    }
    let groups: Vec<(Rfm, f64)> = groups
        .into_iter()
        .map(|([x, t_x, t], n)| {
            let h = Rfm {
                x: f64::from_bits(x),
                t_x: f64::from_bits(t_x),
                t: f64::from_bits(t),
            };
            (h, n)
        })
        .collect();
    let params = |v: &[f64; 4]| BgNbd {
        r: v[0].exp(),
        alpha: v[1].exp(),
        a: v[2].exp(),
        b: v[3].exp(),
    };
    let cost = |v: &[f64; 4]| {
        let p = params(v);
        let ll: f64 = groups.iter().map(|(h, n)| n * p.log_likelihood(*h)).sum();
        if ll.is_finite() { -ll } else { f64::INFINITY }
    };
    let (best, value, iterations) = nelder_mead(cost, [0.0; 4]);
    Some(Fit {
        params: params(&best),
        log_likelihood: -value,
        customers: customers.len(),
        iterations,
    })
}

/// Minimises `f` from `start` with the Nelder–Mead simplex method (standard
/// coefficients), until the simplex's values agree to 1e-12 relative or 20,000
/// iterations. Returns the best point, its value and the iterations taken.
fn nelder_mead(f: impl Fn(&[f64; 4]) -> f64, start: [f64; 4]) -> ([f64; 4], f64, usize) {
    const N: usize = 4;
    let mut simplex: Vec<([f64; N], f64)> = vec![(start, f(&start))];
    for i in 0..N {
        let mut p = start;
        p[i] += 0.5;
        simplex.push((p, f(&p)));
    }
    let mut iterations = 0;
    while iterations < 20_000 {
        iterations += 1;
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[N].1);
        if (worst - best).abs() <= 1e-12 * (best.abs() + 1e-12) {
            break;
        }
        let mut centroid = [0.0; N];
        for (p, _) in &simplex[..N] {
            for i in 0..N {
                centroid[i] += p[i] / N as f64;
            }
        }
        let towards = |t: f64| {
            let mut p = [0.0; N];
            for i in 0..N {
                p[i] = centroid[i] + t * (simplex[N].0[i] - centroid[i]);
            }
            p
        };
        let reflected = towards(-1.0);
        let fr = f(&reflected);
        if fr < simplex[0].1 {
            let expanded = towards(-2.0);
            let fe = f(&expanded);
            simplex[N] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[N - 1].1 {
            simplex[N] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[N].1 {
                towards(-0.5)
            } else {
                towards(0.5)
            };
            let fc = f(&contracted);
            if fc < fr.min(simplex[N].1) {
                simplex[N] = (contracted, fc);
            } else {
                // Shrink towards the best point.
                let b = simplex[0].0;
                for (p, v) in simplex.iter_mut().skip(1) {
                    for i in 0..N {
                        p[i] = b[i] + 0.5 * (p[i] - b[i]);
                    }
                    *v = f(p);
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    (simplex[0].0, simplex[0].1, iterations)
}

/// Summarises purchases `(customer, timestamp)` as `lifetimes` does with `freq="D"`:
/// days are UTC calendar dates; `x` counts the distinct purchase days after the first,
/// `t_x` is the whole days from the first purchase day to the last, and `T` the
/// fractional days from 00:00 UTC of the first purchase day to `end`. Customers whose
/// first purchase is after `end` are left out.
pub fn summarize<'a>(
    purchases: impl IntoIterator<Item = (&'a str, Timestamp)>,
    end: Timestamp,
) -> BTreeMap<String, Rfm> {
    const DAY: i64 = 86_400;
    let mut days: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (customer, at) in purchases {
        if at <= end {
            days.entry(customer)
                .or_default()
                .push(at.as_secs().div_euclid(DAY));
        }
    }
    days.into_iter()
        .map(|(customer, mut d)| {
            d.sort_unstable();
            d.dedup();
            let (first, last) = (d[0], d[d.len() - 1]);
            let start = Timestamp::from_secs(first * DAY);
            let rfm = Rfm {
                x: (d.len() - 1) as f64,
                t_x: (last - first) as f64,
                t: end.since(start).as_secs_f64() / DAY as f64,
            };
            (customer.to_owned(), rfm)
        })
        .collect()
}

/// Reads a `lifetimes`-style summary CSV with a header naming `frequency`, `recency`
/// and `T` (other columns are ignored).
pub fn read_summary_csv(text: &str) -> Result<Vec<Rfm>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err("empty file".into());
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("line 1: no column {name:?} (found {})", cols.join(",")))
    };
    let (fx, fr, ft) = (col("frequency")?, col("recency")?, col("T")?);
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |j: usize, name: &str| -> Result<f64, String> {
            cells
                .get(j)
                .and_then(|c| c.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("line {}: {name} is not a non-negative number", i + 1))
        };
        out.push(Rfm {
            x: num(fx, "frequency")?,
            t_x: num(fr, "recency")?,
            t: num(ft, "T")?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    /// Reference values from Python's `math.lgamma`.
    fn ln_gamma_matches_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
        assert!((ln_gamma(0.1) - 2.252_712_651_734_206).abs() < 1e-13);
        assert!((ln_gamma(100.5) - 361.435_540_467_777_6).abs() < 1e-10);
    }

    #[test]
    fn p_alive_is_one_without_repeats_and_follows_the_formula() {
        let p = BgNbd {
            r: 0.2426,
            alpha: 4.4135,
            a: 0.7929,
            b: 2.4259,
        };
        let none = Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 38.86,
        };
        assert_eq!(p.p_alive(none), 1.0);
        // x = 2, t_x = 30.43, T = 38.86: 1 / (1 + a/(b+1) · ((α+T)/(α+t_x))^(r+2)).
        let h = Rfm {
            x: 2.0,
            t_x: 30.43,
            t: 38.86,
        };
        let by_hand = 1.0 / (1.0 + 0.7929 / 3.4259 * (43.2735f64 / 34.8435).powf(2.2426));
        assert!((p.p_alive(h) - by_hand).abs() < 1e-15);
        assert!((by_hand - 0.7266).abs() < 1e-3, "{by_hand}");
    }

    /// The CDNOW sample shipped with `lifetimes` (2,357 customers, weeks): its
    /// documented BG/NBD fit is r = 0.243, alpha = 4.414, a = 0.793, b = 2.426.
    #[test]
    fn fits_the_published_cdnow_parameters() {
        let data =
            read_summary_csv(include_str!("../../tests/data/cdnow_customers_summary.csv")).unwrap();
        assert_eq!(data.len(), 2357);
        let fit = fit(&data).unwrap();
        let p = fit.params;
        assert!((p.r - 0.2426).abs() < 0.002, "{p:?}");
        assert!((p.alpha - 4.4135).abs() < 0.02, "{p:?}");
        assert!((p.a - 0.7929).abs() < 0.005, "{p:?}");
        assert!((p.b - 2.4259).abs() < 0.02, "{p:?}");
        // The published parameters fit no better than ours.
        let published = BgNbd {
            r: 0.2426,
            alpha: 4.4135,
            a: 0.7929,
            b: 2.4259,
        };
        let ll: f64 = data.iter().map(|h| published.log_likelihood(*h)).sum();
        assert!(
            fit.log_likelihood >= ll - 1e-6,
            "{} < {ll}",
            fit.log_likelihood
        );
    }

    #[test]
    fn summaries_count_distinct_utc_days_as_lifetimes_does() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        let purchases = [
            ("m-1", t("2026-01-01T23:00:00Z")),
            ("m-1", t("2026-01-01T23:30:00Z")),
            ("m-1", t("2026-01-04T01:00:00Z")),
            ("m-1", t("2026-01-11T12:00:00Z")),
            ("m-2", t("2026-01-10T08:00:00Z")),
            ("m-3", t("2026-02-01T00:00:00Z")),
        ];
        let s = summarize(purchases, t("2026-01-21T12:00:00Z"));
        assert_eq!(
            s["m-1"],
            Rfm {
                x: 2.0,
                t_x: 10.0,
                t: 20.5
            }
        );
        assert_eq!(
            s["m-2"],
            Rfm {
                x: 0.0,
                t_x: 0.0,
                t: 11.5
            }
        );
        assert!(!s.contains_key("m-3"), "first purchase after the end");
    }

    #[test]
    fn a_bad_summary_names_its_line() {
        let e = read_summary_csv("ID,frequency,recency,T\n1,2,30.43,38.86\n2,x,1,2\n").unwrap_err();
        assert!(e.starts_with("line 3: frequency"), "{e}");
        assert!(read_summary_csv("a,b\n").unwrap_err().contains("frequency"));
    }
}

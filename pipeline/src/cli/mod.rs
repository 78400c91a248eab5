//! The `footfall` subcommands that are more than a call into the library.

pub mod bench;
pub mod checkpoint;
pub mod churn;
pub mod demo;
pub mod fluvio;
pub mod report;
pub mod service;
pub mod sql;
pub mod topics;

/// A `--rate` in records a second: a positive, finite number (the sources' pacer
/// divides by it).
pub fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "must be a positive number of records a second, not {s:?}"
        )),
    }
}

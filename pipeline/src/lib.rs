//! footfall's runtime: the embedded log, the streaming runtime that drives the operators,
//! the synthetic generator, the HTTP endpoint and the `footfall` command line.
//!
//! - [`log`]: durable partitioned topics in a data directory (the default transport).
//! - [`runtime`]: sources → sequencer (event-time order, pipeline clock, identity) →
//!   partition workers (operators, timers) → sinks.
//! - [`config`]: the config file; [`metrics`]: every Prometheus metric.
//! - [`generate`]: deterministic synthetic retail traffic; [`bench`]: the end-to-end
//!   benchmark; [`server`]: `/metrics`, `/healthz`, `/readyz`.
//!
//! Replaying a data directory, as `footfall replay` does:
//!
//! ```no_run
//! use footfall_pipeline::config::Config;
//! use footfall_pipeline::log::Log;
//! use footfall_pipeline::runtime;
//!
//! # async fn replay() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = Config::default();
//! let log = Log::open("footfall-data", cfg.log.clone())?;
//! let summary = runtime::replay(&cfg, &log, None, None).await?;
//! println!("{} events, clock at {}", summary.stats.total_read(), summary.clock);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod admin;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod fluvio;
pub mod generate;
pub mod lift;
pub mod log;
pub mod metrics;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod sql;
pub mod sqlbench;

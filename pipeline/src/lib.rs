//! footfall's runtime: the embedded log, the streaming runtime that drives the operators,
//! the synthetic generator, the HTTP endpoint and the `footfall` command line.
//!
//! - [`log`]: durable partitioned topics in a data directory (the default transport).
//! - [`runtime`]: sources → sequencer (event-time order, pipeline clock, identity) →
//!   partition workers (operators, timers) → sinks.
//! - [`config`]: the config file; [`metrics`]: every Prometheus metric.
//! - [`generate`]: deterministic synthetic retail traffic; [`bench`]: the end-to-end
//!   benchmark.

pub mod bench;
pub mod config;
pub mod generate;
pub mod log;
pub mod metrics;
pub mod runtime;
pub mod server;

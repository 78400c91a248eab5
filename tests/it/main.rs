//! footfall's integration tests: the real `footfall` binary on real data directories.
//!
//! One binary, a module per area, so the workspace links once.

mod checkpoint;
mod cli;
mod crash;
mod deploy;
mod determinism;
mod fluvio;
mod golden;
mod remote;
mod scaleout;
mod service;
mod sql;
mod support;

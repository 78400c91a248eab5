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

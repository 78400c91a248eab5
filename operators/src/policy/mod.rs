//! Delivery policies between triggers and the output topics.
//!
//! Today: the holdout group. The full chain of `docs/triggers.md` (consent,
//! arbitration, frequency caps, quiet hours, dedupe) builds on this module.

mod holdout;

pub use holdout::{Holdout, holdout_bucket};

//! SQL over footfall's retained input and output: Arrow tables per topic, window table
//! functions (`tumble`, `hop`, `session`), scalar functions (`haversine_m`,
//! `local_time`, `clock`), read-only queries with memory and time limits, and rules
//! written in SQL.

pub mod cache;
pub mod duration;
pub mod engine;
pub mod format;
pub mod hub;
pub mod live;
pub mod load;
pub mod retained;
pub mod rows;
pub mod rules;
pub mod ruletest;
pub mod schema;
pub mod udf;
pub mod window;

pub use engine::{Answer, Engine, Limits, QueryError};
pub use retained::{Retention, Snapshot, Tables};
pub use schema::Table;

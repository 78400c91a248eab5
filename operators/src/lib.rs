//! footfall's domain core: the event model, keyed state and triggers. Deterministic and
//! free of I/O, so everything here is tested without a runtime.
//!
//! How the parts fit:
//! - [`decode`] turns a record's bytes into a typed [`Event`](event::Event) or a precise
//!   dead-letter reason.
//! - [`identity`] resolves each event's customer key and the merges `identify` causes.
//! - A [`Worker`](worker::Worker) owns one partition's keys: its [`Operator`](operator::Operator)s
//!   (the [`triggers`]) and their event-time [`timer`]s. It is fed events and clock advances
//!   in event-time order and returns [`Action`](action::Action)s.
//!
//! ```
//! use footfall_operators::{decode::decode, event::Topic, time::Timestamp};
//! use footfall_operators::{config::TriggersConfig, identity::Identity};
//! use footfall_operators::{triggers, worker::Worker};
//!
//! let now = Timestamp::parse_rfc3339("2026-11-20T12:00:00Z").unwrap();
//! let record = br#"{"message_id":"c-1","type":"add_to_cart","timestamp":"2026-11-20T10:15:00Z",
//!   "user_id":"m-1001","cart_id":"cart-88","currency":"CNY",
//!   "items":[{"item_id":"sku-123","price":"12.90","quantity":2}]}"#;
//! let event = decode(Topic::Clickstream, record, now).unwrap();
//! let key = Identity::default().resolve(Topic::Clickstream, &event).key;
//!
//! let mut worker = Worker::new(triggers::build(&TriggersConfig::default()));
//! let mut actions = Vec::new();
//! worker.on_event(&key, &event, &mut actions);
//! worker.advance(now, &mut actions);
//! assert_eq!(actions[0].trigger, "abandoned_cart");
//! assert_eq!(actions[0].payload["value"], "25.80");
//! assert_eq!(actions[0].fired_at.to_string(), "2026-11-20T10:45:00Z");
//! ```

#![warn(missing_docs)]

pub mod action;
pub mod churn;
pub mod config;
pub mod decode;
pub mod event;
pub mod identity;
pub mod key;
pub mod live;
pub mod local;
pub mod money;
pub mod operator;
pub mod policy;
pub mod reference;
pub mod state;
pub mod time;
pub mod timer;
pub mod triggers;
pub mod worker;

#[cfg(test)]
mod testing;

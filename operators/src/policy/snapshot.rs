//! The policies' state in a checkpoint: one row per customer, store, erased key, agenda
//! entry, open window and day of written ids.
//!
//! Customers and written ids, the bulk, are shared with the image and encoded (with
//! postcard) on the checkpointer's thread, as operator state is; the rest, small, is
//! encoded (as JSON) when the snapshot is taken. Restore also reads the JSON customer
//! and day rows (`c:`, `d:`) of earlier checkpoints.

use serde::Serialize;

use super::{Entry, Policy};
use crate::event::Str;
use crate::state::StateImage;
use crate::time::Timestamp;

impl Policy {
    /// Everything the policies hold, for a checkpoint.
    pub fn snapshot(&self) -> Box<dyn StateImage> {
        let mut rows: Vec<(String, Vec<u8>)> = Vec::new();
        rows.push(("m".into(), json(&(self.frontier.as_nanos(), self.next))));
        for (s, tz) in &self.stores {
            let name = tz.name().unwrap_or_default();
            rows.push((format!("s:{s}"), name.as_bytes().to_vec()));
        }
        for h in self.erased.hashes() {
            rows.push((format!("e:{h:032x}"), Vec::new()));
        }
        for (i, (order, entry)) in self.agenda.iter().enumerate() {
            let o = (order.0.as_nanos(), order.1, order.2, order.3);
            rows.push((format!("a:{i}"), json(&(o, entry))));
        }
        for (i, ((k, w), actions)) in self.windows.iter().enumerate() {
            rows.push((format!("w:{i}"), json(&(k, w, actions))));
        }
        Box::new(Image {
            rows,
            customers: self.customers.image(),
            days: self.seen.days().map(|(d, ids)| (d, ids.to_vec())).collect(),
        })
    }

    /// Restores one row written by [`snapshot`](Self::snapshot).
    pub fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        let bad = |e: serde_json::Error| format!("policy row {key:?}: {e}");
        let (kind, rest) = key.split_once(':').unwrap_or((key, ""));
        match kind {
            "m" => {
                let (frontier, next): (i64, u64) = serde_json::from_slice(bytes).map_err(bad)?;
                self.frontier = Timestamp::from_nanos(frontier);
                self.next = next;
            }
            "C" => {
                let c =
                    postcard::from_bytes(bytes).map_err(|e| format!("policy row {key:?}: {e}"))?;
                self.customers.insert(rest, c);
            }
            "c" => {
                self.customers
                    .insert(rest, serde_json::from_slice(bytes).map_err(bad)?);
            }
            "s" => {
                let tz = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
                self.stores
                    .insert(Str::from(rest), super::Zone::new(Str::from(tz)));
            }
            "e" => {
                let h = u128::from_str_radix(rest, 16).map_err(|e| e.to_string())?;
                self.erased.restore(h);
            }
            "a" => {
                let ((t, rank, from, seq), entry): ((i64, u8, u32, u64), Entry) =
                    serde_json::from_slice(bytes).map_err(bad)?;
                if matches!(entry, Entry::Release(_)) {
                    self.held += 1;
                }
                self.agenda
                    .insert((Timestamp::from_nanos(t), rank, from, seq), entry);
            }
            "w" => {
                let (k, w, actions): (Str, i64, super::arbitration::Held) =
                    serde_json::from_slice(bytes).map_err(bad)?;
                self.held += actions.len();
                self.windows.insert((k, w), actions);
            }
            "D" | "d" => {
                let day: i64 = rest.parse().map_err(|_| format!("policy row {key:?}"))?;
                let ids = if kind == "D" {
                    postcard::from_bytes(bytes).map_err(|e| format!("policy row {key:?}: {e}"))?
                } else {
                    serde_json::from_slice(bytes).map_err(bad)?
                };
                self.seen.restore(day, ids);
            }
            _ => return Err(format!("unknown policy row {key:?}")),
        }
        Ok(())
    }
}

/// Serializing plain data to JSON cannot fail.
fn json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// A policy snapshot: the small rows encoded when taken, customers and written ids
/// when the checkpointer encodes the image.
struct Image {
    rows: Vec<(String, Vec<u8>)>,
    customers: Box<dyn StateImage>,
    days: Vec<(i64, Vec<u128>)>,
}

impl StateImage for Image {
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in &self.rows {
            out(k, v);
        }
        let mut key = String::new();
        self.customers.encode(&mut |k, v| {
            key.clear();
            key.push_str("C:");
            key.push_str(k);
            out(&key, v);
        });
        for (day, ids) in &self.days {
            // A list of integers always encodes.
            let bytes = postcard::to_allocvec(ids).unwrap_or_default();
            out(&format!("D:{day}"), &bytes);
        }
    }

    fn len(&self) -> usize {
        self.rows.len() + self.customers.len() + self.days.len()
    }
}

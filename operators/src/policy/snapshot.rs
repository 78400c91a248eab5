//! The policies' state in a checkpoint: one row per customer, store, erased key, agenda
//! entry, open window and day of written ids.

use serde::Serialize;

use super::{Entry, Policy};
use crate::action::Action;
use crate::event::Str;
use crate::state::StateImage;
use crate::time::Timestamp;

impl Policy {
    /// Everything the policies hold, for a checkpoint.
    pub fn snapshot(&self) -> Box<dyn StateImage> {
        let mut rows: Vec<(String, Vec<u8>)> = Vec::new();
        rows.push(("m".into(), json(&(self.frontier.as_nanos(), self.next))));
        for (k, c) in &self.customers {
            rows.push((format!("c:{k}"), json(c)));
        }
        for (s, tz) in &self.stores {
            rows.push((format!("s:{s}"), tz.as_bytes().to_vec()));
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
        for (day, ids) in self.seen.days() {
            rows.push((format!("d:{day}"), json(&ids)));
        }
        Box::new(Rows(rows))
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
            "c" => {
                self.customers
                    .insert(Str::from(rest), serde_json::from_slice(bytes).map_err(bad)?);
            }
            "s" => {
                let tz = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
                self.stores.insert(Str::from(rest), Str::from(tz));
            }
            "e" => {
                let h = u128::from_str_radix(rest, 16).map_err(|e| e.to_string())?;
                self.erased.restore(h);
            }
            "a" => {
                let ((t, rank, from, seq), entry): ((i64, u8, u32, u64), Entry) =
                    serde_json::from_slice(bytes).map_err(bad)?;
                self.agenda
                    .insert((Timestamp::from_nanos(t), rank, from, seq), entry);
            }
            "w" => {
                let (k, w, actions): (Str, i64, Vec<Action>) =
                    serde_json::from_slice(bytes).map_err(bad)?;
                self.windows.insert((k, w), actions);
            }
            "d" => {
                let day: i64 = rest.parse().map_err(|_| format!("policy row {key:?}"))?;
                self.seen
                    .restore(day, serde_json::from_slice(bytes).map_err(bad)?);
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

/// A policy snapshot: rows encoded when taken (policy state is per customer with
/// consent or actions, far smaller than the triggers').
struct Rows(Vec<(String, Vec<u8>)>);

impl StateImage for Rows {
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8])) {
        for (k, v) in &self.0 {
            out(k, v);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

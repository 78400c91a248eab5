//! Events from JSON lines (`{"topic": "clickstream", "record": {...}}`), decoded and
//! keyed as the pipeline does: the inputs of SQL tests and rule tests.

use footfall_operators::decode::decode;
use footfall_operators::event::{Event, Topic};
use footfall_operators::identity::Identity;
use footfall_operators::time::Timestamp;
use serde::Deserialize;

#[derive(Deserialize)]
struct Line {
    topic: String,
    record: serde_json::Value,
}

/// A decoded event, its topic and its customer (or store) key.
pub struct Keyed {
    pub topic: Topic,
    pub key: String,
    pub event: Event,
}

/// Decodes every line of `text`; an error names the line.
pub fn events(text: &str) -> Result<Vec<Keyed>, String> {
    let mut identity = Identity::default();
    let now = Timestamp::now();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let l: Line = serde_json::from_str(line).map_err(|e| format!("line {n}: {e}"))?;
        let topic: Topic = l.topic.parse().map_err(|e| format!("line {n}: {e}"))?;
        let bytes = l.record.to_string();
        let event = decode(topic, bytes.as_bytes(), now).map_err(|e| format!("line {n}: {e}"))?;
        let key = identity.resolve(topic, &event).key.to_string();
        out.push(Keyed { topic, key, event });
    }
    Ok(out)
}

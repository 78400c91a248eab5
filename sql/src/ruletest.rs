//! `footfall rules test`: a rule's test file (`NAME.test.jsonl`, input events) replayed
//! through the rule, its actions compared with `NAME.expected.jsonl`.
//!
//! Events are taken in time order. The rule runs at every multiple of its `every` from
//! the first event to one period past the last, each time over the events up to that
//! instant, with `clock()` at it, as the service runs it. An expected line lists the
//! fields to check (any subset of the action record's); actions are compared in order
//! of (`fired_at`, key).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use footfall_operators::action::Action;
use footfall_operators::time::Timestamp;
use serde_json::Value;

use crate::engine::{Engine, Limits};
use crate::load;
use crate::retained::{Retention, Tables};
use crate::rules::{Every, Rule};

/// A rule test's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub rule: String,
    /// The test input, when the rule has one.
    pub input: Option<PathBuf>,
    /// Evaluations run.
    pub evaluations: usize,
    /// Actions produced.
    pub actions: Vec<Action>,
    /// What differed from the expected actions (empty: passed).
    pub failures: Vec<String>,
}

/// Runs `rule`'s test, if it has one.
pub async fn run(rule: &Rule) -> Result<Outcome, String> {
    let input = rule.path.with_extension("test.jsonl");
    let expected_path = rule.path.with_extension("expected.jsonl");
    let mut outcome = Outcome {
        rule: rule.name.clone(),
        input: None,
        evaluations: 0,
        actions: Vec::new(),
        failures: Vec::new(),
    };
    if !input.exists() {
        return Ok(outcome);
    }
    let text = read(&input)?;
    let expected: Vec<Value> = read(&expected_path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{}:{}: {e}", expected_path.display(), i + 1))
        })
        .collect::<Result<_, _>>()?;
    let mut events = load::events(&text).map_err(|e| format!("{}: {e}", input.display()))?;
    events.sort_by_key(|k| k.event.timestamp);
    outcome.input = Some(input);
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(outcome);
    };
    let step = match rule.every {
        Every::Period(p) | Every::WindowClose(p) => p,
    };
    let (first, last) = (
        first.event.timestamp.as_nanos(),
        last.event.timestamp.as_nanos(),
    );
    // Test inputs are small: nothing is dropped by age or size.
    let mut tables = Tables::new(Retention {
        age: footfall_operators::time::Span::from_secs(100 * 365 * 86_400),
        bytes: usize::MAX,
    });
    let mut fired = HashMap::new();
    let mut next = 0;
    let mut previous = None;
    let mut at = first - first.rem_euclid(step) + step;
    while at <= last - last.rem_euclid(step) + 2 * step {
        while next < events.len() && events[next].event.timestamp.as_nanos() <= at {
            let k = &events[next];
            tables.append(k.topic, &k.key, &k.event);
            next += 1;
        }
        tables.seal();
        let clock = Timestamp::from_nanos(at);
        let engine = Engine::new(tables.snapshot(), Limits::default()).with_clock(clock);
        let answer = engine
            .query(&rule.sql)
            .await
            .map_err(|e| format!("{} at {clock}: {e}", rule.name))?;
        outcome
            .actions
            .extend(rule.actions(&answer, clock, previous, &mut fired)?);
        outcome.evaluations += 1;
        previous = Some(clock);
        at += step;
    }
    outcome.failures = compare(&outcome.actions, &expected);
    Ok(outcome)
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Differences between `actions` and `expected` (fields each expected line names).
pub fn compare(actions: &[Action], expected: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    if actions.len() != expected.len() {
        out.push(format!(
            "{} actions, {} expected",
            actions.len(),
            expected.len()
        ));
    }
    for (i, (a, want)) in actions.iter().zip(expected).enumerate() {
        let got = serde_json::to_value(a).unwrap_or(Value::Null);
        let Some(want) = want.as_object() else {
            out.push(format!("expected line {} is not an object", i + 1));
            continue;
        };
        for (field, w) in want {
            let g = got.get(field).unwrap_or(&Value::Null);
            if g != w {
                out.push(format!("action {}: {field} is {g}, expected {w}", i + 1));
            }
        }
    }
    for a in actions.iter().skip(expected.len()) {
        out.push(format!(
            "unexpected action: {}",
            serde_json::to_string(a).unwrap_or_default()
        ));
    }
    out
}

//! Rules written in SQL: a file in the rules directory, a header of `-- key = value`
//! lines (TOML) and a `SELECT` whose rows become actions.
//!
//! ```sql
//! -- name = "browse_abandonment"
//! -- version = "1"
//! -- every = "1m"                # or "on_window_close" for a windowed query
//! -- key = "customer_key"        # the column naming the customer (or store)
//! -- topic = "notifications"     # or "alerts", "markdowns"
//! -- channel = "push"
//! -- template = "browse_abandonment"
//! -- priority = 40
//! -- cooldown = "24h"
//! SELECT customer_key, item_id, count(*) AS views FROM clickstream WHERE ...
//! ```
//!
//! Each row is one action for its key: `action_id` from (rule, version, key, the
//! evaluation instant, or `window_end` for windowed rules); the other columns are the
//! payload; a `reason` column, when there is one, is the action's reason. A key that
//! fired within `cooldown` is skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use footfall_operators::action::{Action, OutputTopic};
use footfall_operators::time::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration;
use crate::engine::{Answer, Engine, QueryError};
use crate::format::json_rows;

/// When a rule runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// At every multiple of this many nanoseconds of event time.
    Period(i64),
    /// At every evaluation, for the windows that closed since the last.
    WindowClose(i64),
}

/// A parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub version: String,
    pub every: Every,
    pub key: String,
    pub topic: OutputTopic,
    pub channel: String,
    pub template: String,
    pub priority: i32,
    /// Nanoseconds.
    pub cooldown: i64,
    pub description: Option<String>,
    pub sql: String,
    pub path: PathBuf,
    /// The file line the SQL starts on (1-based).
    pub sql_line: usize,
}

/// What is wrong with a rule file, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct RuleError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: Option<String>,
    version: Option<String>,
    every: Option<String>,
    key: Option<String>,
    topic: Option<String>,
    channel: Option<String>,
    template: Option<String>,
    priority: Option<i32>,
    cooldown: Option<String>,
    description: Option<String>,
}

/// Evaluation of windowed rules: how often the windows that closed are looked for.
const WINDOW_CHECK_NANOS: i64 = 60_000_000_000;

impl Rule {
    /// Parses the rule in `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Rule, RuleError> {
        let err = |line: usize, column: usize, message: String| RuleError {
            path: path.to_owned(),
            line,
            column,
            message,
        };
        let mut header = String::new();
        let mut sql_line = None;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("--")
                && sql_line.is_none()
            {
                header.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                header.push('\n');
                continue;
            }
            if sql_line.is_none() && !t.is_empty() {
                sql_line = Some(i + 1);
            }
            if sql_line.is_none() {
                header.push('\n');
            }
        }
        let Some(sql_line) = sql_line else {
            return Err(err(1, 1, "the rule has no SELECT after its header".into()));
        };
        let h: Header = toml::from_str(&header).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| line_col(&header, s.start))
                .unwrap_or((1, 1));
            err(line, column + 3, format!("header: {}", e.message()))
        })?;
        let key_line = |k: &str| {
            header
                .lines()
                .position(|l| l.trim_start().starts_with(k))
                .map_or(1, |i| i + 1)
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let name = h.name.unwrap_or_else(|| stem.clone());
        if name != stem {
            return Err(err(
                key_line("name"),
                4,
                format!(
                    "the rule is named {name:?} but its file is {stem}.sql: name the file after the rule"
                ),
            ));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(err(
                key_line("name"),
                4,
                format!("rule name {name:?}: use lowercase letters, digits and _"),
            ));
        }
        let every = match h.every.as_deref() {
            None => {
                return Err(err(
                    1,
                    1,
                    "the header needs `every` (such as \"1m\", or \"on_window_close\")".into(),
                ));
            }
            Some("on_window_close") => Every::WindowClose(WINDOW_CHECK_NANOS),
            Some(s) => Every::Period(
                duration::parse(s).map_err(|m| err(key_line("every"), 4, format!("every: {m}")))?,
            ),
        };
        let topic = match h.topic.as_deref().unwrap_or("notifications") {
            "notifications" => OutputTopic::Notifications,
            "alerts" => OutputTopic::Alerts,
            "markdowns" => OutputTopic::Markdowns,
            t => {
                return Err(err(
                    key_line("topic"),
                    4,
                    format!("topic {t:?}: a rule writes to notifications, alerts or markdowns"),
                ));
            }
        };
        let channel = match (h.channel, topic) {
            (Some(c), _) => c,
            (None, OutputTopic::Notifications) => {
                return Err(err(
                    1,
                    1,
                    "a notifications rule needs `channel` (push, sms or email)".into(),
                ));
            }
            (None, _) => "ops".into(),
        };
        let cooldown = match h.cooldown.as_deref() {
            Some(c) => duration::parse(c)
                .map_err(|m| err(key_line("cooldown"), 4, format!("cooldown: {m}")))?,
            None => 24 * 3_600_000_000_000,
        };
        let sql: String = text
            .lines()
            .skip(sql_line - 1)
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Rule {
            template: h.template.unwrap_or_else(|| name.clone()),
            name,
            version: h.version.unwrap_or_else(|| "1".into()),
            every,
            key: h.key.unwrap_or_else(|| "customer_key".into()),
            topic,
            channel,
            priority: h.priority.unwrap_or(0),
            cooldown,
            description: h.description,
            sql: sql.trim_end().trim_end_matches(';').to_owned(),
            path: path.to_owned(),
            sql_line,
        })
    }

    /// Reads and parses the rule at `path`.
    pub fn load(path: &Path) -> Result<Rule, RuleError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuleError {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: format!("cannot read: {e}"),
        })?;
        Rule::parse(path, &text)
    }

    /// Plans the rule's SQL against `engine`'s tables and checks its columns.
    pub async fn validate(&self, engine: &Engine) -> Result<(), RuleError> {
        let plan = engine
            .plan(&self.sql)
            .await
            .map_err(|e| self.sql_error(e))?;
        let schema = plan.schema();
        let has = |c: &str| schema.fields().iter().any(|f| f.name() == c);
        if !has(&self.key) {
            return Err(self.at(
                1,
                1,
                format!(
                    "the query has no key column {:?} (set `key` in the header, or select it)",
                    self.key
                ),
            ));
        }
        if matches!(self.every, Every::WindowClose(_)) && !has("window_end") {
            return Err(self.at(
                1,
                1,
                "an on_window_close rule selects window_end (from tumble, hop or session)".into(),
            ));
        }
        Ok(())
    }

    fn at(&self, sql_line: usize, column: usize, message: String) -> RuleError {
        RuleError {
            path: self.path.clone(),
            line: self.sql_line + sql_line - 1,
            column,
            message,
        }
    }

    /// A query error at its place in the file, where DataFusion says where.
    fn sql_error(&self, e: QueryError) -> RuleError {
        let mut message = e.to_string();
        let (line, column) = position(&message).unwrap_or((1, 1));
        // The place is in the file's terms now.
        if let Some(i) = message.find(" at Line: ") {
            message.truncate(i);
        }
        self.at(line, column, message)
    }

    /// The actions of one evaluation's answer at `at`; `fired` remembers keys' last
    /// actions for the cooldown, `last` is the previous evaluation (windowed rules emit
    /// the windows that closed in `(last, at]`).
    pub fn actions(
        &self,
        answer: &Answer,
        at: Timestamp,
        last: Option<Timestamp>,
        fired: &mut HashMap<String, Timestamp>,
    ) -> Result<Vec<Action>, String> {
        let rows = json_rows(answer).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows {
            let key = match row.get(&self.key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => continue,
                Some(v) => v.to_string(),
            };
            let due = match self.every {
                Every::Period(_) => at,
                Every::WindowClose(_) => {
                    let end = row
                        .get("window_end")
                        .and_then(Value::as_str)
                        .and_then(|s| Timestamp::parse_rfc3339(s).ok())
                        .ok_or("window_end is not a time")?;
                    if end > at || last.is_some_and(|l| end <= l) {
                        continue;
                    }
                    end
                }
            };
            if let Some(prev) = fired.get(&key)
                && due.as_nanos() - prev.as_nanos() < self.cooldown
            {
                continue;
            }
            fired.insert(key.clone(), due);
            out.push(self.action(&key, due, row));
        }
        Ok(out)
    }

    fn action(&self, key: &str, due: Timestamp, mut row: Map<String, Value>) -> Action {
        let mut a = Action::new(&self.name, &self.version, key, due, self.topic);
        match self.topic {
            OutputTopic::Notifications => a.customer_id = Some(key.to_owned()),
            _ => a.store_id = Some(key.to_owned()),
        }
        if let Some(Value::String(s)) = row.get("store_id")
            && a.store_id.is_none()
        {
            a.store_id = Some(s.clone());
        }
        a.channel = self.channel.clone();
        a.template = self.template.clone();
        a.reason = match row.remove("reason") {
            Some(Value::String(r)) => r,
            _ => {
                let cols: Vec<String> = row
                    .iter()
                    .filter(|(k, _)| **k != self.key)
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k} {s}"),
                        v => format!("{k} {v}"),
                    })
                    .collect();
                format!("rule {} matched: {}", self.name, cols.join(", "))
            }
        };
        row.remove(&self.key);
        a.payload = Value::Object(row);
        a
    }
}

/// Every rule file (`*.sql`) in `dir`, sorted by name.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    out.sort();
    Ok(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// `Line: L, Column: C` in a DataFusion message.
fn position(message: &str) -> Option<(usize, usize)> {
    let i = message.find("Line: ")?;
    let rest = &message[i + 6..];
    let line: usize = rest
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let j = rest.find("Column: ")?;
    let col: usize = rest[j + 8..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rule, RuleError> {
        Rule::parse(Path::new("rules/vip_spend.sql"), text)
    }

    #[test]
    fn a_header_and_a_select_make_a_rule() {
        let r = parse("-- name = \"vip_spend\"\n-- every = \"1m\"\n-- channel = \"push\"\n-- cooldown = \"2h\"\n\nSELECT customer_key FROM transactions;\n").unwrap();
        assert_eq!(r.every, Every::Period(60_000_000_000));
        assert_eq!(r.cooldown, 7_200_000_000_000);
        assert_eq!(r.sql_line, 6);
        assert_eq!(r.sql, "SELECT customer_key FROM transactions");
        assert_eq!(
            (r.template.as_str(), r.version.as_str()),
            ("vip_spend", "1")
        );
    }

    #[test]
    fn header_mistakes_name_their_line() {
        let e = parse("-- every = \"1m\"\n-- channel = \"push\"\n-- colour = \"red\"\nSELECT 1")
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("colour"), "{e}");
        let e = parse("-- every = \"5 fortnights\"\n-- channel = \"push\"\nSELECT 1").unwrap_err();
        assert_eq!(
            (e.line, e.message.contains("unknown unit")),
            (1, true),
            "{e}"
        );
        let e = parse("-- name = \"other\"\n-- every = \"1m\"\nSELECT 1").unwrap_err();
        assert!(e.to_string().starts_with("rules/vip_spend.sql:1:"), "{e}");
    }

    #[test]
    fn positions_are_read_from_parser_messages() {
        assert_eq!(
            position(
                "sql parser error: Expected: an expression, found: FROM at Line: 2, Column: 9"
            ),
            Some((2, 9))
        );
        assert_eq!(position("no place"), None);
    }
}

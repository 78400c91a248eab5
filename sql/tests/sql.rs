//! The SQL crate's tests: the sqllogictest files under `tests/slt/` (tables, windows,
//! functions, safety) over the events of `tests/slt/events.jsonl`, the query limits,
//! and the shipped rules of `deploy/rules/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use footfall_sql::load;
use footfall_sql::{Engine, Limits, QueryError, Retention, Tables};
use sqllogictest::{DBOutput, DefaultColumnType};

fn fixture() -> Tables {
    let text = std::fs::read_to_string(dir().join("events.jsonl")).unwrap();
    let mut tables = Tables::new(Retention::default());
    for k in load::events(&text).unwrap() {
        tables.append(k.topic, &k.key, &k.event);
    }
    tables.seal();
    tables
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

struct Db {
    engine: Engine,
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let answer = self.engine.query(sql).await?;
        let opts = FormatOptions::default()
            .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%SZ"))
            .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S"))
            .with_null("NULL");
        let mut rows = Vec::new();
        for b in &answer.batches {
            let fmts: Vec<_> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                rows.push(
                    (0..b.num_columns())
                        .map(|c| {
                            if b.column(c).is_null(r) {
                                "NULL".to_owned()
                            } else {
                                fmts[c].value(r).to_string()
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; answer.schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "footfall"
    }
}

#[tokio::test]
async fn sqllogictest_files_pass() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let mut failed = Vec::new();
    for f in &files {
        let mut runner = sqllogictest::Runner::new(|| async {
            Ok(Db {
                engine: Engine::new(fixture().snapshot(), Limits::default()),
            })
        });
        // Column types are not checked: every column prints as text.
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(f).await {
            failed.push(format!("{}: {e}", f.display()));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[tokio::test]
async fn a_query_over_its_memory_limit_fails_and_says_so() {
    let limits = Limits {
        memory_bytes: 4096,
        ..Limits::default()
    };
    let e = Engine::new(fixture().snapshot(), limits)
        .query("SELECT a.message_id, b.message_id FROM hop(clickstream, \"timestamp\", '1m', '60m') a JOIN hop(clickstream, \"timestamp\", '1m', '60m') b ON a.customer_key = b.customer_key ORDER BY 1, 2")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("more memory than its limit"), "{e}");
}

#[tokio::test]
async fn a_query_over_its_time_limit_is_cancelled() {
    let limits = Limits {
        timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    // generate_series of 10^12 rows cannot finish in 50 ms.
    let e = Engine::new(fixture().snapshot(), limits)
        .query("SELECT sum(value) FROM generate_series(1, 1000000000000)")
        .await
        .unwrap_err();
    assert!(matches!(e, QueryError::Timeout(_)), "{e}");
}

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules")
}

fn empty() -> Engine {
    Engine::new(
        Tables::new(Retention::default()).snapshot(),
        Limits::default(),
    )
}

#[tokio::test]
async fn the_shipped_rules_validate_and_pass_their_tests() {
    let files = footfall_sql::rules::files(&rules_dir()).unwrap();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let rule = footfall_sql::rules::Rule::load(&f).unwrap();
        rule.validate(&empty()).await.unwrap();
        let outcome = footfall_sql::ruletest::run(&rule).await.unwrap();
        assert!(outcome.input.is_some(), "{} has no test", rule.name);
        assert!(
            outcome.failures.is_empty(),
            "{}: {:#?}\nactions: {:#?}",
            rule.name,
            outcome.failures,
            outcome.actions
        );
        assert!(!outcome.actions.is_empty(), "{}", rule.name);
    }
}

#[tokio::test]
async fn a_rule_with_a_mistake_is_refused_with_its_file_line_and_column() {
    let path = Path::new("rules/broken.sql");
    let text = "-- every = \"1m\"\n-- channel = \"push\"\nSELECT customer_key\nFROM clickstream\nWHERE colour = 'red'\n";
    let rule = footfall_sql::rules::Rule::parse(path, text).unwrap();
    let e = rule.validate(&empty()).await.unwrap_err();
    assert!(e.message.contains("colour"), "{e}");
    assert_eq!(e.line, 5, "{e}");

    let text = "-- every = \"1m\"\n-- channel = \"push\"\nSELECT customer_key\nFROM clickstream\nWHERE type = = 'x'\n";
    let rule = footfall_sql::rules::Rule::parse(path, text).unwrap();
    let e = rule.validate(&empty()).await.unwrap_err();
    assert_eq!((e.line, e.column), (5, 14), "{e}");

    // A rule must name its key column in its output.
    let text = "-- every = \"1m\"\n-- channel = \"push\"\nSELECT item_id FROM clickstream\n";
    let rule = footfall_sql::rules::Rule::parse(path, text).unwrap();
    let e = rule.validate(&empty()).await.unwrap_err();
    assert!(e.message.contains("no key column"), "{e}");

    // Rules are queries: DDL and DML are refused there too.
    let text = "-- every = \"1m\"\n-- channel = \"push\"\nDROP TABLE clickstream\n";
    let rule = footfall_sql::rules::Rule::parse(path, text).unwrap();
    let e = rule.validate(&empty()).await.unwrap_err();
    assert!(e.message.contains("DDL not supported"), "{e}");
}

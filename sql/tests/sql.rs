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

/// An answer's cells as text, the way the `.slt` files write them.
fn cells(answer: &footfall_sql::engine::Answer) -> Vec<Vec<String>> {
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
    rows
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let answer = self.engine.query(sql).await?;
        let rows = cells(&answer);
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

fn live_rows() -> footfall_operators::live::Live {
    use footfall_operators::live::{CartRow, ConsentRow, Live, LotRow, RfmRow};
    use footfall_operators::time::Timestamp;
    let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    let money = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    Live {
        carts: vec![CartRow {
            customer_key: "m-1".into(),
            anonymous_id: Some("anon-1".into()),
            cart_id: "c-1".into(),
            currency: Some("EUR".into()),
            value: money("25.99"),
            items: 3,
            lines: 2,
            first_activity_at: at("2026-11-20T10:00:00Z"),
            last_activity_at: at("2026-11-20T10:05:00Z"),
            reminded: false,
        }],
        lots: vec![LotRow {
            store_id: "st-1".into(),
            item_id: "milk".into(),
            lot_id: "L7".into(),
            category: Some("dairy".into()),
            on_hand: 12,
            price: Some(money("1.29")),
            currency: Some("EUR".into()),
            expires_at: Some(at("2026-11-22T00:00:00Z")),
            first_seen_at: at("2026-11-19T08:00:00Z"),
            markdowns: 1,
            next_markdown_at: Some(at("2026-11-21T12:00:00Z")),
        }],
        // m-1 bought and gave consent; m-2 only bought; m-3 only gave consent.
        rfm: vec![
            RfmRow {
                customer_key: "m-1".into(),
                recency_days: Some(3),
                frequency: 4,
                monetary: money("120.50"),
                currency: Some("EUR".into()),
                last_purchase_at: Some(at("2026-11-17T09:00:00Z")),
                p_alive: Some(0.8),
            },
            RfmRow {
                customer_key: "m-2".into(),
                recency_days: Some(90),
                frequency: 1,
                monetary: money("9.90"),
                currency: Some("EUR".into()),
                last_purchase_at: Some(at("2026-08-22T09:00:00Z")),
                p_alive: Some(1.0),
            },
        ],
        consent: vec![
            ConsentRow {
                customer_key: "m-1".into(),
                push: Some(true),
                sms: Some(false),
                email: None,
                timezone: Some("Europe/Berlin".into()),
                home_store: Some("st-1".into()),
            },
            ConsentRow {
                customer_key: "m-3".into(),
                push: Some(false),
                sms: None,
                email: None,
                timezone: None,
                home_store: None,
            },
        ],
    }
}

async fn strings(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let answer = engine
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&answer)
}

#[tokio::test]
async fn live_tables_show_state_with_customers_joined_from_purchases_and_consent() {
    use footfall_sql::live::{LiveTables, mentioned};
    let live = LiveTables::build(&live_rows()).unwrap();
    let engine = Engine::new(fixture().snapshot(), Limits::default()).with_live(live);
    assert_eq!(
        strings(
            &engine,
            "SELECT customer_key, frequency, CAST(monetary AS VARCHAR), consent_push, consent_email, timezone FROM customers ORDER BY customer_key"
        )
        .await,
        [
            ["m-1", "4", "120.50", "true", "NULL", "Europe/Berlin"],
            ["m-2", "1", "9.90", "NULL", "NULL", "NULL"],
            ["m-3", "0", "NULL", "false", "NULL", "NULL"],
        ]
    );
    // Money stays exact, times are UTC, and live tables join the retained ones.
    assert_eq!(
        strings(
            &engine,
            "SELECT sum(value), max(last_activity_at) FROM carts"
        )
        .await,
        [["25.99", "2026-11-20T10:05:00Z"]]
    );
    assert_eq!(
        strings(
            &engine,
            "SELECT l.item_id, l.on_hand * l.price AS stock_value FROM lots l WHERE l.expires_at < TIMESTAMP '2026-11-23T00:00:00Z'"
        )
        .await,
        [["milk", "15.48"]]
    );
    assert_eq!(
        strings(
            &engine,
            "SELECT count(*) FROM customers c JOIN profiles p ON c.customer_key = p.customer_key"
        )
        .await,
        [["1"]],
        "the fixture's profile m-1 meets the live customer m-1"
    );
    // Without live rows the tables exist and are empty: rules over them still plan.
    let none = Engine::new(fixture().snapshot(), Limits::default());
    assert_eq!(strings(&none, "SELECT count(*) FROM carts").await, [["0"]]);
    assert!(mentioned("select * from Carts where x = 1"));
    assert!(mentioned("SELECT 1 FROM lots"));
    assert!(!mentioned("SELECT customer_key FROM profiles"));
}

#[tokio::test]
async fn the_hub_gathers_live_rows_from_every_source_or_gives_up_in_time() {
    use footfall_sql::hub::{Hub, LiveSource};
    use std::sync::Arc;
    let hub = Arc::new(Hub::default());
    hub.expect_live(2);
    let rows = live_rows();
    // Two sources answering each request with their share.
    for (i, part) in [rows.carts.clone(), Vec::new()].into_iter().enumerate() {
        let hub = hub.clone();
        let mut requests = hub.live_requests();
        tokio::spawn(async move {
            while requests.changed().await.is_ok() {
                let g = *requests.borrow_and_update();
                let live = footfall_operators::live::Live {
                    carts: part.clone(),
                    ..Default::default()
                };
                hub.publish_live(LiveSource::Worker(i as u32), g, live);
            }
        });
    }
    let got = hub.live(Duration::from_secs(5)).await;
    assert_eq!(got.carts, rows.carts);
    // A source that never answers: the request gives up after its wait, not before.
    let slow = Hub::default();
    slow.expect_live(1);
    let started = std::time::Instant::now();
    let got = slow.live(Duration::from_millis(200)).await;
    assert!(got.carts.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

//! SQL in `footfall run`: queries on the admin API over the workers' retained tables,
//! a rule firing through to its topic, hot reload refusing an invalid version, and a
//! rule that fails at run time quarantined while the others keep running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::service::{chrono_now, free_port, get, wait_until};
use crate::support::{Reaped, consume, footfall_bin, footfall_ok, path, produce};

/// Sends `body` with `method` to `route`; returns the status, the headers and the body.
fn send(
    addr: &str,
    method: &str,
    route: &str,
    extra: &str,
    body: &[u8],
) -> Option<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head, resp[split + 4..].to_vec()))
}

fn query(addr: &str, sql: &str) -> Option<(u16, serde_json::Value)> {
    let (code, _, body) = send(addr, "POST", "/v1/query", "", sql.as_bytes())?;
    Some((code, serde_json::from_slice(&body).ok()?))
}

const BUSY_STORE: &str = "-- every = \"1s\"\n-- key = \"store_id\"\n-- topic = \"alerts\"\n-- cooldown = \"1h\"\nSELECT CAST(store_id AS VARCHAR) AS store_id, count(*) AS events\nFROM clickstream\nWHERE store_id IS NOT NULL\nGROUP BY store_id\nHAVING count(*) >= 3\n";

#[test]
fn the_service_answers_queries_runs_rules_reloads_them_safely_and_quarantines_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("busy_store.sql"), BUSY_STORE).unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("footfall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[transport]\ndata_dir = \"{}\"\n[server]\nlisten = \"{addr}\"\n[admin]\nlisten = \"{admin}\"\n[clock]\nallowed_lateness_secs = 0\nidle_timeout_secs = 1\n[sql]\nrules_dir = \"{}\"\n",
            path(&data),
            path(&rules)
        ),
    )
    .unwrap();
    // Killed if the test fails before it stops the service itself.
    let mut child = Reaped(
        Command::new(footfall_bin())
            .args(["run", "--config", path(&cfg)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = wait_until(30, || get(&addr, "/readyz").filter(|(c, _)| *c == 200));
    assert!(ready.is_some(), "/readyz never answered 200");

    let now = chrono_now();
    let records: String = (1..=3)
        .map(|i| {
            format!(
                "{{\"message_id\":\"q-{i}\",\"type\":\"page_view\",\"timestamp\":\"{now}\",\"user_id\":\"m-{i}\",\"store_id\":\"st-live\"}}\n"
            )
        })
        .collect();
    produce(&data, "clickstream", &records);

    // The workers publish their tables within a second of reading.
    let rows = wait_until(30, || {
        let (code, v) = query(&admin, "SELECT count(*) AS n FROM clickstream")?;
        (code == 200 && v["rows"][0]["n"] == 3).then_some(v)
    });
    assert!(
        rows.is_some(),
        "the three events never showed in clickstream"
    );

    // Live state: an open cart and a customer's consent, taken from the workers (and
    // the policies they apply) when the query asks.
    let cart = format!(
        "{{\"message_id\":\"q-cart\",\"type\":\"add_to_cart\",\"timestamp\":\"{now}\",\"user_id\":\"m-cart\",\"cart_id\":\"cart-9\",\"currency\":\"EUR\",\"items\":[{{\"item_id\":\"a\",\"price\":\"12.50\",\"quantity\":2}},{{\"item_id\":\"b\",\"price\":\"0.99\"}}]}}\n"
    );
    produce(&data, "clickstream", &cart);
    let profile = format!(
        "{{\"message_id\":\"q-profile\",\"type\":\"profile\",\"timestamp\":\"{now}\",\"user_id\":\"m-cart\",\"timezone\":\"Europe/Berlin\",\"consent\":{{\"push\":true,\"sms\":false}}}}\n"
    );
    produce(&data, "customers", &profile);
    let carts = wait_until(30, || {
        let (code, v) = query(
            &admin,
            "SELECT customer_key, cart_id, CAST(value AS VARCHAR) AS value, items, lines, reminded FROM carts",
        )?;
        (code == 200 && v["rows"].as_array().is_some_and(|r| r.len() == 1)).then_some(v)
    })
    .expect("the open cart never showed in carts");
    let row = &carts["rows"][0];
    assert_eq!(row["customer_key"], "m-cart");
    assert_eq!(row["cart_id"], "cart-9");
    assert_eq!(row["value"], "25.99");
    assert_eq!(
        (row["items"].as_i64(), row["lines"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(row["reminded"], false);
    let customer = wait_until(30, || {
        let (code, v) = query(
            &admin,
            "SELECT consent_push, consent_sms, consent_email, timezone FROM customers WHERE customer_key = 'm-cart'",
        )?;
        (code == 200 && v["rows"][0]["consent_push"] == true).then_some(v)
    })
    .expect("m-cart's consent never showed in customers");
    let row = &customer["rows"][0];
    assert_eq!(row["consent_sms"], false);
    assert!(row["consent_email"].is_null(), "{row}");
    assert_eq!(row["timezone"], "Europe/Berlin");

    // Arrow IPC on request: a stream starts with the continuation marker.
    let (code, head, body) = send(
        &admin,
        "POST",
        "/v1/query",
        "Accept: application/vnd.apache.arrow.stream\r\n",
        b"SELECT store_id, count(*) FROM clickstream GROUP BY store_id",
    )
    .unwrap();
    assert_eq!(code, 200);
    assert!(
        head.contains("application/vnd.apache.arrow.stream"),
        "{head}"
    );
    assert_eq!(&body[..4], &[0xff, 0xff, 0xff, 0xff]);

    // Read-only, whatever the SQL says.
    let (code, v) = query(&admin, "DROP TABLE clickstream").unwrap();
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("DDL not supported"),
        "{v}"
    );

    // The rule fires on its next evaluation and its alert is written.
    let alerts = wait_until(30, || {
        let a = consume(&data, "alerts");
        a.iter().any(|x| x["trigger"] == "busy_store").then_some(a)
    })
    .expect("busy_store never fired");
    let a = alerts
        .iter()
        .find(|x| x["trigger"] == "busy_store")
        .unwrap();
    assert_eq!(a["store_id"], "st-live");
    assert_eq!(a["payload"]["events"], 3);
    // What the service wrote is in its `actions` table, as written.
    let (code, v) = query(
        &admin,
        "SELECT topic, trigger, store_id, action_id FROM actions WHERE trigger = 'busy_store'",
    )
    .unwrap();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["rows"][0]["topic"], "alerts");
    assert_eq!(v["rows"][0]["store_id"], "st-live");
    assert_eq!(v["rows"][0]["action_id"], a["action_id"]);

    // An invalid new version is refused with its place; the old one keeps running.
    let broken = "-- every = \"1s\"\n-- key = \"store_id\"\n-- topic = \"alerts\"\nSELECT store_id\nFROM clickstream\nWHERE colour = 1\n";
    let (code, _, body) =
        send(&admin, "PUT", "/v1/rules/busy_store", "", broken.as_bytes()).unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("busy_store.sql:6:7"), "{body}");
    assert_eq!(
        std::fs::read_to_string(rules.join("busy_store.sql")).unwrap(),
        BUSY_STORE,
        "the file on disk is the valid version"
    );

    // A rule that plans but fails when it runs is quarantined after three tries.
    let failing = "-- every = \"1s\"\n-- key = \"store_id\"\n-- topic = \"alerts\"\nSELECT CAST(store_id AS VARCHAR) AS store_id, 1 / (count(*) - count(*)) AS x\nFROM clickstream\nGROUP BY store_id\n";
    let (code, _, body) = send(
        &admin,
        "PUT",
        "/v1/rules/divides_by_zero",
        "",
        failing.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(rules.join("divides_by_zero.sql").exists());
    let listed = wait_until(30, || {
        let (code, _, body) = send(&admin, "GET", "/v1/rules", "", b"")?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let rules = v["rules"].as_array()?.clone();
        let bad = rules.iter().find(|r| r["name"] == "divides_by_zero")?;
        (code == 200 && bad["status"] == "quarantined").then_some(rules)
    })
    .expect("divides_by_zero was never quarantined");
    let bad = listed
        .iter()
        .find(|r| r["name"] == "divides_by_zero")
        .unwrap();
    assert!(
        bad["last_error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("divide by zero"),
        "{bad}"
    );
    let good = listed.iter().find(|r| r["name"] == "busy_store").unwrap();
    assert_eq!(good["status"], "active", "{good}");
    assert!(
        good["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("new version rejected")
            || good["last_error"].is_null(),
        "{good}"
    );
    let (_, metrics) = get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("footfall_rules_quarantined 1"),
        "{metrics}"
    );

    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGTERM);
    }
    let status = wait_until(15, || child.0.try_wait().ok().flatten()).expect("exits after SIGTERM");
    assert!(status.success(), "exit {status}");
}

/// One number from `footfall sql --data-dir D --format json "SELECT ... AS n"`.
fn offline_n(data: &std::path::Path, sql: &str) -> i64 {
    let out = footfall_ok(
        &["sql", "--data-dir", path(data), "--format", "json", sql],
        None,
    );
    let row: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    row["n"].as_i64().unwrap_or_else(|| panic!("{sql}: {out}"))
}

#[test]
fn offline_queries_read_the_live_state_of_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::support::generate(&data, 300, 6, 7);
    // Before any checkpoint the live tables are there, and empty.
    assert_eq!(offline_n(&data, "SELECT count(*) AS n FROM carts"), 0);
    footfall_ok(&["replay", "--data-dir", path(&data)], None);

    // The state agrees with the input it was built from: one customers row per
    // purchaser or profile, purchase figures for exactly the purchasers, one lot per
    // stocked (store, item, lot).
    let customers = offline_n(&data, "SELECT count(*) AS n FROM customers");
    assert!(customers > 100, "{customers}");
    assert_eq!(
        customers,
        offline_n(
            &data,
            "SELECT count(*) AS n FROM (SELECT customer_key FROM transactions WHERE type = 'purchase' UNION SELECT customer_key FROM profiles)"
        )
    );
    assert_eq!(
        offline_n(
            &data,
            "SELECT count(*) AS n FROM customers WHERE frequency > 0"
        ),
        offline_n(
            &data,
            "SELECT count(DISTINCT customer_key) AS n FROM transactions WHERE type = 'purchase'"
        )
    );
    assert_eq!(
        offline_n(
            &data,
            "SELECT count(*) AS n FROM customers WHERE frequency > 0 AND (p_alive IS NULL OR p_alive < 0 OR p_alive > 1 OR recency_days < 0)"
        ),
        0,
        "P(alive) is a probability and recency is not negative"
    );
    assert_eq!(
        offline_n(&data, "SELECT count(*) AS n FROM lots"),
        offline_n(
            &data,
            "SELECT count(*) AS n FROM (SELECT DISTINCT store_id, item_id, lot_id FROM inventory)"
        )
    );
    let carts = offline_n(
        &data,
        "SELECT count(*) AS n FROM carts WHERE value > 0 AND items > 0",
    );
    assert!(carts > 0);
    assert_eq!(carts, offline_n(&data, "SELECT count(*) AS n FROM carts"));
}

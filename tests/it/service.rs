//! `footfall run`: live clock, HTTP endpoints, graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{consume, footfall_bin, footfall_ok, path};

pub(crate) fn get(addr: &str, route: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, resp))
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn wait_until<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn live_service_fires_on_wall_time_serves_metrics_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("footfall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[transport]\ndata_dir = \"{}\"\n[server]\nlisten = \"{addr}\"\n[clock]\nallowed_lateness_secs = 0\nidle_timeout_secs = 1\n[triggers.abandoned_cart]\ndelay_secs = 2\n[policy]\nholdout_bp = 0\nenabled = false\n",
            path(&dir.path().join("data"))
        ),
    )
    .unwrap();
    let mut child = Command::new(footfall_bin())
        .args(["run", "--config", path(&cfg)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = wait_until(30, || get(&addr, "/readyz").filter(|(c, _)| *c == 200));
    assert!(ready.is_some(), "/readyz never answered 200");
    assert_eq!(get(&addr, "/healthz").map(|r| r.0), Some(200));

    // A cart now, in wall time: nothing else arrives, so the clock must follow wall time.
    let now = chrono_now();
    let rec = format!(
        "{{\"message_id\":\"live-1\",\"type\":\"add_to_cart\",\"timestamp\":\"{now}\",\"user_id\":\"m-live\",\"cart_id\":\"cart-live\",\"currency\":\"EUR\",\"items\":[{{\"item_id\":\"a\",\"price\":\"9.99\"}}]}}\n"
    );
    let data = dir.path().join("data");
    footfall_ok(
        &[
            "produce",
            "--data-dir",
            path(&data),
            "--topic",
            "clickstream",
        ],
        Some(rec.as_bytes()),
    );
    let fired = wait_until(30, || {
        let n = consume(&data, "notifications");
        (!n.is_empty()).then_some(n)
    });
    let fired = fired.expect("the cart fired within 30 s of wall time");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0]["payload"]["value"], "9.99");

    let (_, metrics) = get(&addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("footfall_events_read_total{topic=\"clickstream\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("footfall_actions_total{") && metrics.contains("abandoned_cart"));
    assert!(metrics.contains("footfall_event_to_action_latency_seconds_bucket"));

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = wait_until(15, || child.try_wait().ok().flatten()).expect("exits after SIGTERM");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "exit {status}: {err}");
}

pub(crate) fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    footfall_operators::time::Timestamp::from_secs(secs).to_string()
}

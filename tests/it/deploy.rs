//! deploy/: the Prometheus config and alerts pass promtool, the dashboard and the alerts
//! query only metrics footfall exports, the Kubernetes manifests hold together, and a
//! real Prometheus scrapes a running `footfall run`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::service::{free_port, get, wait_until};
use crate::support::{Reaped, footfall_bin, path, produce};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A tool from Debian's `prometheus` package. CI installs it (`.ci/run`) and must run
/// these tests; elsewhere a missing tool skips them, saying so.
fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: `{name}` is not installed; .ci/run installs Debian's prometheus package"
        );
        eprintln!("SKIPPED {test}: `{name}` is not installed (apt-get install prometheus)");
    }
    found
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool() {
    let Some(promtool) = tool(
        "promtool",
        "prometheus_config_and_alert_rules_pass_promtool",
    ) else {
        return;
    };
    let dir = deploy().join("prometheus");
    let out = run_ok(
        Command::new(&promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&dir),
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(
        Command::new(&promtool)
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&dir),
    );
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
    // The alerts' own unit tests: each fires on the series it is meant for, and only then.
    let out = run_ok(
        Command::new(&promtool)
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(&dir),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The footfall metric names a PromQL expression reads, histogram series mapped to
/// their histogram.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("footfall_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| b.ends_with("_seconds"))
            .unwrap_or(name);
        found.insert(base.to_owned());
        rest = &tail[end..];
    }
    found
}

fn exported() -> BTreeSet<String> {
    footfall_pipeline::metrics::get()
        .names()
        .iter()
        .cloned()
        .collect()
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_and_alerts_query_only_metrics_footfall_exports() {
    let exported = exported();
    assert!(
        exported.contains("footfall_events_read_total"),
        "{exported:?}"
    );

    let text = std::fs::read_to_string(deploy().join("grafana/footfall.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    exprs(&dash["panels"], &mut queries);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut used = BTreeSet::new();
    for q in &queries {
        let names = metrics_in(q);
        assert!(
            !names.is_empty(),
            "a dashboard query reads no footfall metric: {q}"
        );
        for n in names {
            assert!(
                exported.contains(&n),
                "the dashboard queries {n}, which footfall does not export: {q}"
            );
            used.insert(n);
        }
    }
    // What an operator must see: throughput, lag, actions per trigger and group,
    // suppressions by reason, latency percentiles, conversions (and lift from them).
    for m in [
        "footfall_events_read_total",
        "footfall_consumer_lag",
        "footfall_actions_total",
        "footfall_actions_suppressed_total",
        "footfall_event_to_action_latency_seconds",
        "footfall_conversions_total",
        "footfall_conversion_value_total",
    ] {
        assert!(used.contains(m), "no dashboard panel shows {m}");
    }
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert!(titles.iter().any(|t| t.contains("lift")), "{titles:?}");
    assert!(titles.iter().any(|t| t.contains("latency")), "{titles:?}");
    // Panels must not overlap on Grafana's 24-column grid.
    let mut cells = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{}", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {} overlaps another",
                    p["title"]
                );
            }
        }
    }

    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap(),
    )
    .expect("alerts.yml is YAML");
    let rules = alerts["groups"][0]["rules"].as_sequence().expect("rules");
    let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for a in [
        "FootfallConsumerLagGrowing",
        "FootfallDeadletterRate",
        "FootfallRuleQuarantined",
        "FootfallCheckpointStale",
        "FootfallNoEventsRead",
    ] {
        assert!(names.contains(&a), "alerts.yml has no {a}: {names:?}");
    }
    for r in rules {
        let expr = r["expr"].as_str().expect("expr");
        for n in metrics_in(expr) {
            assert!(
                exported.contains(&n),
                "alert {} reads {n}, which footfall does not export",
                r["alert"].as_str().unwrap_or("?")
            );
        }
    }
}

fn yaml_docs(file: &Path) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(file).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        })
        .collect()
}

#[test]
fn kubernetes_manifests_hold_together() {
    let k8s = deploy().join("k8s");
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(&k8s).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            for d in yaml_docs(&p) {
                assert!(
                    d["apiVersion"].is_string() && d["kind"].is_string(),
                    "{}: {d:?}",
                    p.display()
                );
                objects.push(d);
            }
        }
    }
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
    };
    let sts = find("StatefulSet", "footfall");
    let spec = &sts["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in spec["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&labels[k], v, "the selector matches the pod template");
    }
    // The headless Service the StatefulSet names.
    let svc = find("Service", spec["serviceName"].as_str().unwrap());
    assert_eq!(svc["spec"]["clusterIP"], "None");
    assert_eq!(
        svc["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    let c = &spec["template"]["spec"]["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"))
    };
    // Ordinal -> worker_index; worker_count = replicas.
    assert_eq!(
        env("FOOTFALL_WORKER_INDEX")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    let replicas = spec["replicas"].as_u64().unwrap();
    assert_eq!(
        env("FOOTFALL_WORKER_COUNT")["value"].as_str(),
        Some(replicas.to_string().as_str())
    );
    let token = &env("FOOTFALL_ADMIN_TOKEN")["valueFrom"]["secretKeyRef"];
    let secret = find("Secret", token["name"].as_str().unwrap());
    assert!(secret["stringData"][token["key"].as_str().unwrap()].is_string());
    find(
        "Secret",
        c["envFrom"][0]["secretRef"]["name"].as_str().unwrap(),
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let ports: Vec<(&str, u64)> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(ports.contains(&("metrics", 9464)), "{ports:?}");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(
        c["resources"]["requests"]["cpu"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(
        spec["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    let pdb = find("PodDisruptionBudget", "footfall");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        spec["selector"]["matchLabels"]
    );

    // The ConfigMaps the pods mount are generated from the real files, every rule included.
    let kust = &yaml_docs(&deploy().join("kustomization.yaml"))[0];
    let generated: Vec<&str> = kust["configMapGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for v in spec["template"]["spec"]["volumes"].as_sequence().unwrap() {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            assert!(
                generated.contains(&cm),
                "volume {cm} is not generated: {generated:?}"
            );
        }
    }
    for r in kust["resources"].as_sequence().unwrap() {
        assert!(deploy().join(r.as_str().unwrap()).is_file(), "{r:?}");
    }
    let mut listed = BTreeSet::new();
    for g in kust["configMapGenerator"].as_sequence().unwrap() {
        for f in g["files"].as_sequence().unwrap() {
            let f = f.as_str().unwrap();
            let file = f.split_once('=').map_or(f, |(_, p)| p);
            assert!(deploy().join(file).is_file(), "{file}");
            listed.insert(file.to_owned());
        }
    }
    for entry in std::fs::read_dir(deploy().join("rules")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") && !name.ends_with(".test.sql") {
            assert!(
                listed.contains(&format!("rules/{name}")),
                "rules/{name} is not in the footfall-rules ConfigMap"
            );
        }
    }

    // The cluster config is a valid footfall config with worker_index/count from the env.
    let cfg_path = k8s.join("footfall.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let mut cfg = footfall_pipeline::config::Config::parse(&cfg_path, &text)
        .expect("deploy/k8s/footfall.toml parses");
    // What the pod's environment adds: the Secret's token, the ordinal and the replicas.
    cfg.admin.token = Some("from-the-secret".into());
    cfg.transport.worker_index = replicas as u32 - 1;
    cfg.transport.worker_count = replicas as u32;
    assert_eq!(cfg.server.listen, "0.0.0.0:9464");
    let problems = cfg.problems();
    assert!(problems.is_empty(), "{problems:?}");
}

fn query(addr: &str, promql: &str) -> Option<f64> {
    let q: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (code, resp) = get(addr, &format!("/api/v1/query?query={q}"))?;
    if code != 200 {
        return None;
    }
    let body = resp.split("\r\n\r\n").nth(1)?;
    // A chunked response carries the JSON between its size lines.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: Value = serde_json::from_str(json).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_a_running_footfall() {
    let Some(prometheus) = tool("prometheus", "prometheus_scrapes_a_running_footfall") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("footfall.toml");
    std::fs::write(
        &cfg,
        format!(
            "[transport]\ndata_dir = \"{}\"\n[server]\nlisten = \"{metrics_addr}\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            path(&data),
            free_port()
        ),
    )
    .unwrap();
    let _footfall = Reaped(
        Command::new(footfall_bin())
            .args(["run", "--config", path(&cfg)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(30, || get(&metrics_addr, "/readyz")
            .filter(|(c, _)| *c == 200))
        .is_some(),
        "footfall run never became ready"
    );

    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: footfall\n    static_configs:\n      - targets: [\"{metrics_addr}\"]\n"
        ),
    )
    .unwrap();
    let _prometheus = Reaped(
        Command::new(prometheus)
            .arg(format!("--config.file={}", path(&prom_cfg)))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                path(&dir.path().join("tsdb"))
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = wait_until(60, || {
        query(&prom_addr, "up{job=\"footfall\"}").filter(|v| *v == 1.0)
    });
    assert!(
        up.is_some(),
        "Prometheus never scraped footfall successfully"
    );

    // Traffic in two rounds: Prometheus must see the counter rise between them.
    let send = |first: u32| {
        let now = crate::service::chrono_now();
        let lines: String = (first..first + 50)
            .map(|i| format!("{{\"message_id\":\"prom-{i}\",\"type\":\"page_view\",\"timestamp\":\"{now}\",\"user_id\":\"c-{i}\",\"item_id\":\"sku-1\"}}\n"))
            .collect();
        produce(&data, "clickstream", &lines);
    };
    let total = "sum(footfall_events_read_total)";
    send(0);
    let first = wait_until(60, || query(&prom_addr, total).filter(|v| *v >= 50.0))
        .expect("Prometheus saw the first 50 events read");
    send(50);
    let second = wait_until(60, || {
        query(&prom_addr, total).filter(|v| *v >= first + 50.0)
    })
    .expect("Prometheus saw footfall_events_read_total increase");
    assert_eq!((first, second), (50.0, 100.0));
    let rate = query(&prom_addr, "sum(increase(footfall_events_read_total[1m]))");
    assert!(
        rate.is_some_and(|r| r > 0.0),
        "increase() over the scrapes: {rate:?}"
    );
    // Caught up: nothing of clickstream waits to be read.
    let lag = wait_until(30, || {
        query(
            &prom_addr,
            "sum(footfall_consumer_lag{topic=\"clickstream\"})",
        )
        .filter(|v| *v == 0.0)
    });
    assert!(
        lag.is_some(),
        "footfall_consumer_lag of clickstream is exported and 0"
    );
}

//! footfall's config file (`footfall run|replay --config FILE`): one TOML document.
//!
//! The keys of `docs/config.md` are fixed; the rest (`[log]`, `[server]`, `[runtime]`)
//! are footfall's own. Every key has a default; an unknown key is an error naming it and
//! its line. `deploy/footfall.toml` documents every field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use footfall_operators::config::{PolicyConfig, TriggersConfig, parse_hhmm};
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::log::LogConfig;

/// The whole config file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[transport]`: where topics live.
    pub transport: TransportConfig,
    /// `[clock]`: watermarks and state lifetime.
    pub clock: ClockConfig,
    /// `[log]`: the embedded log's storage.
    pub log: LogConfig,
    /// `[server]`: the HTTP endpoint of `footfall run`.
    pub server: ServerConfig,
    /// `[runtime]`: batching, channels and dedupe.
    pub runtime: RuntimeConfig,
    /// `[triggers.*]`.
    pub triggers: TriggersConfig,
    /// `[policy]`.
    pub policy: PolicyConfig,
    /// `[checkpoint]`: snapshots for crash recovery.
    pub checkpoint: CheckpointConfig,
    /// `[identity]`: how the identity graph links ids.
    pub identity: IdentityConfig,
    /// `[sql]`: retained tables, query limits and SQL rules.
    pub sql: SqlConfig,
    /// `[admin]`: the admin API (SQL queries, rules).
    pub admin: AdminConfig,
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin API (`/v1/query`, `/v1/rules`). Loopback by default; any
    /// other address needs `token`.
    pub listen: String,
    /// Bearer token the admin API requires (`FOOTFALL_ADMIN_TOKEN` overrides).
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9465".into(),
            token: None,
        }
    }
}

impl AdminConfig {
    /// Whether `listen` is a loopback address.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .listen
            .rsplit_once(':')
            .map_or(self.listen.as_str(), |(h, _)| h)
            .trim_matches(['[', ']']);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `[sql]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// Seconds of event time each table keeps behind its newest row.
    pub retention_secs: u64,
    /// Bytes each table keeps at most (its oldest batches go first).
    pub retention_bytes: u64,
    /// Per-table overrides: `[sql.retention.transactions] secs = 7776000`.
    pub retention: std::collections::BTreeMap<String, RetentionOverride>,
    /// Memory one query may hold, in bytes.
    pub query_memory_bytes: u64,
    /// Seconds one query may run.
    pub query_timeout_secs: f64,
    /// Directory of SQL rules (`*.sql`), read again every 2 s by `footfall run`.
    pub rules_dir: Option<PathBuf>,
    /// Failed or overrun evaluations in a row after which a rule is quarantined.
    pub rule_failures_to_quarantine: u32,
    /// Bytes of partial aggregates rules keep between runs, so a run aggregates only
    /// the batches sealed since the last (0: none kept).
    pub rule_cache_bytes: u64,
}

/// `[sql.retention.<table>]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionOverride {
    /// Seconds of event time kept (default: `sql.retention_secs`).
    pub secs: Option<u64>,
    /// Bytes kept (default: `sql.retention_bytes`).
    pub bytes: Option<u64>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            retention_secs: 24 * 3600,
            retention_bytes: 1 << 30,
            retention: Default::default(),
            query_memory_bytes: 512 << 20,
            query_timeout_secs: 30.0,
            rules_dir: None,
            rule_failures_to_quarantine: 3,
            rule_cache_bytes: 1 << 30,
        }
    }
}

/// `[identity]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Link an anonymous id to a customer on any event carrying both ids (a purchase
    /// from a logged-in app), not only on `identify` (the spec's rule, the default).
    pub link_any_event: bool,
}

/// `[checkpoint]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Whether to checkpoint at all (and to resume from checkpoints on start).
    pub enabled: bool,
    /// Seconds of wall time between checkpoints (and one at a clean stop).
    pub interval_secs: f64,
    /// Where: a directory, `file:///dir`, `s3://`, `gs://` or `az://bucket/prefix`;
    /// empty means `<data_dir>/checkpoints`.
    pub url: String,
    /// How many complete checkpoints to keep.
    pub keep: usize,
    /// `[checkpoint.options]`: settings of a remote store (`endpoint`, `region`,
    /// `allow_http`, ...), on top of the provider's environment variables.
    pub options: BTreeMap<String, String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            enabled: true,
            interval_secs: 10.0,
            url: String::new(),
            keep: 3,
            options: BTreeMap::new(),
        }
    }
}

impl CheckpointConfig {
    /// The store location, resolving the default against `data_dir`.
    pub fn location(&self, data_dir: &std::path::Path) -> String {
        if self.url.is_empty() {
            crate::checkpoint::Store::default_dir(data_dir)
                .display()
                .to_string()
        } else {
            self.url.clone()
        }
    }
}

/// Which transport holds the topics.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// The embedded log in `data_dir`.
    #[default]
    Embedded,
    /// A Fluvio cluster.
    Fluvio,
}

/// How footfall talks to a Fluvio cluster.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FluvioTls {
    /// Plaintext (a local cluster).
    #[default]
    Disabled,
    /// TLS without verifying the cluster's certificate.
    Anonymous,
    /// TLS with the cluster's certificate verified and a client certificate.
    Verified,
}

/// `[transport]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// `embedded` or `fluvio`.
    pub kind: TransportKind,
    /// The embedded log's directory (`--data-dir` overrides).
    pub data_dir: PathBuf,
    /// Fluvio's SC endpoint (`FLUVIO_ENDPOINT` overrides).
    pub fluvio_endpoint: String,
    /// Fluvio offset-consumer name of this pipeline.
    pub consumer_name: String,
    /// Partitions of topics footfall creates; also the number of partition workers.
    pub partitions: u32,
    /// This process's share of the partitions (`FOOTFALL_WORKER_INDEX` overrides).
    pub worker_index: u32,
    /// How many processes share them (`FOOTFALL_WORKER_COUNT` overrides).
    pub worker_count: u32,
    /// Replicas of each Fluvio topic footfall creates.
    pub replication: u32,
    /// TLS to the Fluvio cluster: `disabled`, `anonymous` or `verified`.
    pub fluvio_tls: FluvioTls,
    /// `verified`: the name the cluster's certificate carries (default: the
    /// endpoint's host).
    pub fluvio_tls_domain: Option<String>,
    /// `verified`: the CA certificate (PEM file).
    pub fluvio_tls_ca_cert: Option<PathBuf>,
    /// `verified`: the client certificate (PEM file).
    pub fluvio_tls_cert: Option<PathBuf>,
    /// `verified`: the client key (PEM file).
    pub fluvio_tls_key: Option<PathBuf>,
    /// Most bytes one fetch of a partition returns (at least the largest record, 1 MiB).
    pub fluvio_max_fetch_bytes: u64,
    /// Producer batch size, bytes.
    pub fluvio_batch_bytes: u64,
    /// How long the producer waits to fill a batch, milliseconds.
    pub fluvio_linger_ms: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            kind: TransportKind::Embedded,
            data_dir: PathBuf::from("footfall-data"),
            fluvio_endpoint: "127.0.0.1:9003".into(),
            consumer_name: "footfall".into(),
            partitions: 4,
            worker_index: 0,
            worker_count: 1,
            replication: 1,
            fluvio_tls: FluvioTls::Disabled,
            fluvio_tls_domain: None,
            fluvio_tls_ca_cert: None,
            fluvio_tls_cert: None,
            fluvio_tls_key: None,
            fluvio_max_fetch_bytes: 4 << 20,
            fluvio_batch_bytes: 256 << 10,
            fluvio_linger_ms: 5,
        }
    }
}

/// `[clock]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// A partition's watermark is its largest event time minus this, seconds.
    pub allowed_lateness_secs: u64,
    /// A partition with no record for this long (wall time, seconds) stops holding the
    /// clock back.
    pub idle_timeout_secs: u64,
    /// State untouched for this many days of pipeline clock is dropped.
    pub state_ttl_days: u64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            allowed_lateness_secs: 5,
            idle_timeout_secs: 10,
            state_ttl_days: 400,
        }
    }
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// `[runtime]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Records a source reads and decodes per batch.
    pub batch_records: usize,
    /// Batches buffered between stages; a full channel slows the stage before it.
    pub channel_batches: usize,
    /// How long (event time, seconds) a `message_id` is remembered for dedupe.
    pub dedupe_window_secs: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            batch_records: 1024,
            channel_batches: 4,
            dedupe_window_secs: 86_400,
        }
    }
}

/// A config that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// Values that parse but make no sense together.
    #[error("{path}: {}", problems.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each problem, naming its key.
        problems: Vec<String>,
    },
}

impl Config {
    /// Reads, parses and checks a config file, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(path, &text)?;
        cfg.apply_env();
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        Ok(cfg)
    }

    /// Parses TOML text (no checks, no environment).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Where this process's checkpoints go: `checkpoint.url` (default: under
    /// `data_dir`), and in it `worker-<index>` when several processes share the
    /// pipeline, each checkpointing its own partitions.
    pub fn checkpoint_location(&self, data_dir: &std::path::Path) -> String {
        let base = self.checkpoint.location(data_dir);
        match self.transport.worker_count > 1 {
            true => format!(
                "{}/worker-{}",
                base.trim_end_matches('/'),
                self.transport.worker_index
            ),
            false => base,
        }
    }

    /// `FLUVIO_ENDPOINT`, `FOOTFALL_WORKER_INDEX`, `FOOTFALL_WORKER_COUNT`.
    pub fn apply_env(&mut self) {
        if let Ok(e) = std::env::var("FLUVIO_ENDPOINT") {
            self.transport.fluvio_endpoint = e;
        }
        if let Some(i) = env_u32("FOOTFALL_WORKER_INDEX") {
            self.transport.worker_index = i;
        }
        if let Some(c) = env_u32("FOOTFALL_WORKER_COUNT") {
            self.transport.worker_count = c;
        }
        if let Ok(t) = std::env::var("FOOTFALL_ADMIN_TOKEN")
            && !t.is_empty()
        {
            self.admin.token = Some(t);
        }
    }

    /// Everything wrong with the values, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.admin.is_loopback() && self.admin.token.as_deref().is_none_or(str::is_empty) {
            p.push(format!(
                "admin.listen: {} is not a loopback address, so the admin API needs admin.token (or FOOTFALL_ADMIN_TOKEN)",
                self.admin.listen
            ));
        }
        if let Err(e) = crate::sql::check(&self.sql) {
            p.push(e);
        }
        let t = &self.transport;
        if t.partitions == 0 {
            p.push("transport.partitions: must be at least 1".into());
        }
        if t.worker_count == 0 || t.worker_index >= t.worker_count {
            p.push(format!(
                "transport.worker_index: {} is not below transport.worker_count {}",
                t.worker_index, t.worker_count
            ));
        }
        if t.kind == TransportKind::Fluvio && t.fluvio_max_fetch_bytes < (1 << 20) + 4096 {
            p.push(
                "transport.fluvio_max_fetch_bytes: must hold the largest record (1 MiB) and its \
                 framing; use at least 1052672"
                    .into(),
            );
        }
        if t.kind == TransportKind::Fluvio && t.replication == 0 {
            p.push("transport.replication: must be at least 1".into());
        }
        if t.fluvio_tls != FluvioTls::Disabled && !cfg!(feature = "fluvio-tls") {
            p.push(crate::fluvio::client::NO_TLS.into());
        }
        if t.fluvio_tls == FluvioTls::Verified {
            for (key, v) in [
                ("fluvio_tls_ca_cert", &t.fluvio_tls_ca_cert),
                ("fluvio_tls_cert", &t.fluvio_tls_cert),
                ("fluvio_tls_key", &t.fluvio_tls_key),
            ] {
                if v.is_none() {
                    p.push(format!(
                        "transport.{key}: required with transport.fluvio_tls = \"verified\""
                    ));
                }
            }
        }
        let c = &self.checkpoint;
        if c.enabled && !(c.interval_secs.is_finite() && c.interval_secs > 0.0) {
            p.push("checkpoint.interval_secs: must be a positive number of seconds".into());
        }
        if c.enabled && c.keep == 0 {
            p.push("checkpoint.keep: must be at least 1".into());
        }
        if c.enabled
            && let Err(e) = crate::checkpoint::Store::check(&c.url, &c.options)
        {
            p.push(format!("checkpoint: {e}"));
        }
        if self.log.segment_bytes < 4096 {
            p.push("log.segment_bytes: must be at least 4096".into());
        }
        if self.runtime.batch_records == 0 || self.runtime.channel_batches == 0 {
            p.push("runtime.batch_records and runtime.channel_batches: must be at least 1".into());
        }
        let ac = &self.triggers.abandoned_cart;
        if ac.delay_secs == 0 {
            p.push("triggers.abandoned_cart.delay_secs: must be at least 1".into());
        }
        if ac.min_value < Decimal::ZERO {
            p.push("triggers.abandoned_cart.min_value: must not be negative".into());
        }
        let b = &self.triggers.birthday;
        if let Err(e) = parse_hhmm(&b.send_at_local) {
            p.push(format!("triggers.birthday.send_at_local: {e}"));
        }
        if footfall_operators::local::zone(&b.default_timezone).is_none() {
            p.push(format!(
                "triggers.birthday.default_timezone: {:?} is not an IANA time zone name",
                b.default_timezone
            ));
        }
        if b.days_before > 366 {
            p.push("triggers.birthday.days_before: at most 366".into());
        }
        for c in &self.triggers.weather_promo.campaigns {
            if c.temp_c_min.is_none() && c.temp_c_max.is_none() && c.conditions.is_none() {
                p.push(format!(
                    "triggers.weather_promo.campaigns `{}`: names no condition",
                    c.name
                ));
            }
        }
        let wp = &self.triggers.weather_promo;
        if !(wp.radius_m.is_finite() && wp.radius_m > 0.0) {
            p.push("triggers.weather_promo.radius_m: must be a positive number of metres".into());
        }
        let ss = &self.triggers.stale_stock;
        let steps = std::iter::once(("schedule".to_owned(), &ss.schedule)).chain(
            ss.categories
                .iter()
                .map(|(c, s)| (format!("categories.{c}"), s)),
        );
        for (name, steps) in steps {
            for st in steps {
                if st.discount_pct > 100 {
                    p.push(format!(
                        "triggers.stale_stock.{name}: discount_pct {} is over 100",
                        st.discount_pct
                    ));
                }
                if !(st.hours_before_expiry.is_finite() && st.hours_before_expiry >= 0.0) {
                    p.push(format!(
                        "triggers.stale_stock.{name}: hours_before_expiry must be a number of hours, at least 0"
                    ));
                }
            }
        }
        if ss.slow_discount_pct > 100 {
            p.push("triggers.stale_stock.slow_discount_pct: at most 100".into());
        }
        let cr = &self.triggers.churn_risk;
        if !(cr.threshold > 0.0 && cr.threshold < 1.0) {
            p.push("triggers.churn_risk.threshold: must be between 0 and 1".into());
        }
        if [cr.r, cr.alpha, cr.a, cr.b].iter().any(|v| *v <= 0.0) {
            p.push("triggers.churn_risk: r, alpha, a and b must be positive".into());
        }
        let pol = &self.policy;
        if pol.holdout_bp > 10_000 {
            p.push("policy.holdout_bp: at most 10000 (100 %)".into());
        }
        for (k, v) in [
            ("quiet_hours_start", &pol.quiet_hours_start),
            ("quiet_hours_end", &pol.quiet_hours_end),
        ] {
            if let Err(e) = parse_hhmm(v) {
                p.push(format!("policy.{k}: {e}"));
            }
        }
        if let Some(tz) = &pol.default_timezone
            && footfall_operators::local::zone(tz).is_none()
        {
            p.push(format!("policy.default_timezone: unknown time zone {tz:?}"));
        }
        for (t, bp) in &pol.trigger_holdout_bp {
            if *bp > 10_000 {
                p.push(format!(
                    "policy.trigger_holdout_bp.{t}: at most 10000 (100 %)"
                ));
            }
        }
        if pol.arbitration_window_secs == 0 {
            p.push("policy.arbitration_window_secs: must be at least 1".into());
        }
        for cap in &pol.frequency_caps {
            if cap.max == 0 {
                p.push(format!(
                    "policy.frequency_caps ({}): max must be at least 1",
                    cap.channel
                ));
            }
        }
        p
    }

    /// Things that are allowed but worth saying.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let wp = &self.triggers.weather_promo;
        if wp.enabled && wp.campaigns.is_empty() {
            w.push("triggers.weather_promo: enabled with no campaigns, so it never fires".into());
        }
        let t = &self.transport;
        if t.worker_count > t.partitions && t.worker_index < t.worker_count {
            let idle = match t.worker_count - t.partitions {
                1 => format!("worker {} owns", t.partitions),
                _ => format!("workers {} to {} own", t.partitions, t.worker_count - 1),
            };
            w.push(format!(
                "transport.worker_count: {} workers share {} partitions, so {idle} none (they \
                 read everything and write nothing)",
                t.worker_count, t.partitions
            ));
        }
        w
    }
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_workers_than_partitions_is_a_warning() {
        let c = Config::parse(
            Path::new("x.toml"),
            "[transport]\npartitions = 2\nworker_index = 0\nworker_count = 3\n",
        )
        .unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(
            c.warnings(),
            [
                "transport.worker_count: 3 workers share 2 partitions, so worker 2 owns none \
              (they read everything and write nothing)"
            ]
        );
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse(Path::new("x.toml"), "").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.triggers.abandoned_cart.min_value.to_string(), "0.01");
        assert!(c.problems().is_empty());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::parse(
            Path::new("x.toml"),
            "[clock]\nallowed_lateness_secs = 5\nallowed_latenes = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("allowed_latenes"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn money_is_a_string() {
        let e = Config::parse(
            Path::new("x.toml"),
            "[triggers.abandoned_cart]\nmin_value = \"1,5\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("invalid decimal"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let c = Config::parse(
            Path::new("x.toml"),
            "[policy]\nholdout_bp = 20000\nquiet_hours_start = \"9pm\"\n",
        )
        .unwrap();
        let p = c.problems();
        assert!(
            p.iter().any(|m| m.starts_with("policy.holdout_bp")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("policy.quiet_hours_start")),
            "{p:?}"
        );
    }
}

//! SQL rules in the running service: loaded from `sql.rules_dir`, evaluated over the
//! workers' published tables at the pipeline clock, their actions sent through the
//! delivery policies like any trigger's.
//!
//! - **Schedule.** A rule with `every = "1m"` runs at the latest multiple of a minute
//!   of event time that every worker has passed; an `on_window_close` rule checks each
//!   minute for windows that closed since its last run.
//! - **Hot reload.** The directory is read again every two seconds (and on
//!   `PUT /v1/rules/{name}`): a changed file is parsed and planned first; only a valid
//!   one replaces the running version, atomically; an invalid one is reported
//!   (`GET /v1/rules`, the log) and the old version keeps running.
//! - **Quarantine.** A rule that fails or overruns its time limit
//!   `sql.rule_failures_to_quarantine` times in a row stops (metric
//!   `footfall_rules_quarantined`, a log line); the others keep running. Saving a new
//!   version lifts it.
//! - **State.** Each rule's last evaluation instant and its keys' cooldowns are saved
//!   after every evaluation round (`rules-state.json` in the data directory, replaced
//!   atomically) and taken up again at start, and by a new version of the rule: a
//!   restart neither re-runs instants already evaluated nor forgets a cooldown.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use footfall_operators::action::Action;
use footfall_operators::time::Timestamp;
use footfall_sql::cache::PartialCache;
use footfall_sql::hub::Hub;
use footfall_sql::rules::{Every, Rule, RuleError, files};
use footfall_sql::{Engine, Limits, QueryError, Retention, Tables};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::metrics;

/// How often the directory is read again.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A rule as the service runs it.
struct Running {
    rule: Rule,
    text: String,
    fired: HashMap<String, Timestamp>,
    last: Option<Timestamp>,
    failures: u32,
    status: Status,
}

/// What a rule keeps across restarts: its last evaluation instant and when each key
/// last fired (nanoseconds of event time).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    last: Option<i64>,
    fired: Vec<(String, i64)>,
}

/// A rule's state, as `GET /v1/rules` lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The rule's name (its file's).
    pub name: String,
    /// The `version` its header gives.
    pub version: String,
    /// `active`, or `quarantined` after repeated failures.
    pub status: String,
    /// Its schedule (`60s`, `on_window_close`).
    pub every: String,
    /// The topic its actions go to.
    pub topic: String,
    /// Its arbitration priority (higher wins).
    pub priority: i32,
    /// The last evaluation instant (event time).
    pub last_run: Option<Timestamp>,
    /// Evaluations of this version.
    pub runs: u64,
    /// Actions it produced (before the delivery policies).
    pub actions: u64,
    /// The last run's error, or why a newer version of the file was rejected.
    pub last_error: Option<String>,
}

/// The rules of one service.
pub struct Rules {
    dir: Option<PathBuf>,
    quarantine_after: u32,
    limits: Limits,
    running: Mutex<BTreeMap<String, Running>>,
    /// Files whose current text failed to validate: path → (text, error).
    rejected: Mutex<BTreeMap<PathBuf, (String, String)>>,
    /// Where rule state is saved, and what was read from there for rules not yet
    /// installed.
    state: Option<PathBuf>,
    saved: Mutex<BTreeMap<String, Saved>>,
    /// Each running rule's priority, for the delivery policies' arbitration.
    priorities: watch::Sender<BTreeMap<String, i32>>,
    /// Partial aggregates of sealed batches, kept between runs of each rule.
    cache: Option<Arc<PartialCache>>,
}

fn every_label(e: Every) -> String {
    match e {
        Every::Period(n) => format!("{}s", n / 1_000_000_000),
        Every::WindowClose(_) => "on_window_close".into(),
    }
}

impl Rules {
    /// The rules of `dir` (none without one).
    pub fn new(dir: Option<PathBuf>, quarantine_after: u32, limits: Limits) -> Self {
        Rules {
            dir,
            quarantine_after: quarantine_after.max(1),
            limits,
            running: Mutex::new(BTreeMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            state: None,
            saved: Mutex::new(BTreeMap::new()),
            priorities: watch::Sender::new(BTreeMap::new()),
            cache: None,
        }
    }

    /// Rules keep the partial aggregates of sealed batches between runs, in at most
    /// `bytes` (0: none kept); see [`footfall_sql::cache`].
    pub fn with_cache(mut self, bytes: usize) -> Self {
        self.cache = (bytes > 0).then(|| Arc::new(PartialCache::new(bytes)));
        self
    }

    /// The running rules' priorities, as they change (a new version, a removed file).
    pub fn priorities(&self) -> watch::Receiver<BTreeMap<String, i32>> {
        self.priorities.subscribe()
    }

    fn publish_priorities(&self, running: &BTreeMap<String, Running>) {
        let now: BTreeMap<String, i32> = running
            .iter()
            .map(|(n, r)| (n.clone(), r.rule.priority))
            .collect();
        self.priorities.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
    }

    /// Saves rule state in `path` after each evaluation round, and starts from what it
    /// holds. An unreadable file is reported and the rules start afresh.
    pub fn with_state(mut self, path: PathBuf) -> Self {
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<BTreeMap<String, Saved>>(&bytes) {
                Ok(saved) => {
                    info!(path = %path.display(), rules = saved.len(), "SQL rule state restored");
                    self.saved = Mutex::new(saved);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "SQL rule state unreadable; rules start afresh")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "SQL rule state unreadable; rules start afresh")
            }
        }
        self.state = Some(path);
        self
    }

    /// Writes every rule's state (cooldowns still running at its last instant only).
    fn save(&self) {
        let Some(path) = &self.state else { return };
        let state: BTreeMap<String, Saved> = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .iter()
                .map(|(name, r)| {
                    let last = r.last.map(Timestamp::as_nanos);
                    let mut fired: Vec<(String, i64)> = r
                        .fired
                        .iter()
                        .map(|(k, t)| (k.clone(), t.as_nanos()))
                        .filter(|(_, t)| last.is_none_or(|l| l - t < r.rule.cooldown))
                        .collect();
                    fired.sort();
                    (name.clone(), Saved { last, fired })
                })
                .collect()
        };
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot save SQL rule state");
        }
    }

    fn empty_engine() -> Engine {
        Engine::new(
            Tables::new(Retention::default()).snapshot(),
            Limits::default(),
        )
    }

    /// Validates `text` as the rule file `path`; on success it replaces the running
    /// version of that rule.
    pub async fn install(&self, path: &Path, text: String) -> Result<Status, RuleError> {
        let rule = Rule::parse(path, &text)?;
        rule.validate(&Self::empty_engine()).await?;
        let name = rule.name.clone();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let quarantined = running
            .get(&name)
            .is_some_and(|r| r.status.status == "quarantined");
        if quarantined {
            metrics::get().rules_quarantined.dec();
        }
        let status = Status {
            name: name.clone(),
            version: rule.version.clone(),
            status: "active".into(),
            every: every_label(rule.every),
            topic: rule.topic.name().into(),
            priority: rule.priority,
            last_run: None,
            runs: 0,
            actions: 0,
            last_error: None,
        };
        info!(rule = %name, version = %rule.version, "SQL rule loaded");
        // A new version takes over where the running one (or the saved state) was: the
        // instants already evaluated and the cooldowns still running.
        let (fired, last) = match running.remove(&name) {
            Some(old) => (old.fired, old.last),
            None => {
                let saved = self
                    .saved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name)
                    .unwrap_or_default();
                let fired = saved
                    .fired
                    .into_iter()
                    .map(|(k, t)| (k, Timestamp::from_nanos(t)))
                    .collect();
                (fired, saved.last.map(Timestamp::from_nanos))
            }
        };
        let mut status = status;
        status.last_run = last;
        running.insert(
            name,
            Running {
                rule,
                text,
                fired,
                last,
                failures: 0,
                status: status.clone(),
            },
        );
        self.publish_priorities(&running);
        Ok(status)
    }

    /// Reads the directory: new and changed files are installed if valid, removed
    /// files stop.
    pub async fn reload(&self) {
        let Some(dir) = &self.dir else { return };
        let paths = match files(dir) {
            Ok(p) => p,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read the rules directory");
                return;
            }
        };
        let mut names = Vec::new();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            names.push(stem.clone());
            let unchanged = {
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                running.get(&stem).is_some_and(|r| r.text == text)
            };
            let known_bad = {
                let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
                rejected.get(&path).is_some_and(|(t, _)| *t == text)
            };
            if unchanged || known_bad {
                continue;
            }
            match self.install(&path, text.clone()).await {
                Ok(_) => {
                    self.rejected
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&path);
                }
                Err(e) => {
                    warn!(error = %e, "SQL rule rejected; the running version (if any) stays");
                    self.rejected
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(path.clone(), (text, e.to_string()));
                }
            }
        }
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|name, r| {
            let keep = names.contains(name);
            if !keep {
                info!(rule = %name, "SQL rule file removed: the rule stops");
                if r.status.status == "quarantined" {
                    metrics::get().rules_quarantined.dec();
                }
            }
            keep
        });
        self.publish_priorities(&running);
    }

    /// Every rule's status (and rejected files).
    pub fn list(&self) -> Vec<Status> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Status> = running.values().map(|r| r.status.clone()).collect();
        for (path, (_, err)) in rejected.iter() {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            match out.iter_mut().find(|s| s.name == name) {
                Some(s) => s.last_error = Some(format!("new version rejected: {err}")),
                None => out.push(Status {
                    name: name.into(),
                    version: String::new(),
                    status: "invalid".into(),
                    every: String::new(),
                    topic: String::new(),
                    priority: 0,
                    last_run: None,
                    runs: 0,
                    actions: 0,
                    last_error: Some(err.clone()),
                }),
            }
        }
        out
    }

    /// The directory rules are saved in (`PUT /v1/rules/{name}`).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Evaluates every due rule over `hub`'s tables; returns the actions.
    pub async fn evaluate(&self, hub: &Hub) -> Vec<Action> {
        let (tables, Some(clock)) = hub.snapshot() else {
            return Vec::new();
        };
        // A clock before any event (the epoch or earlier) has nothing to evaluate.
        if clock.as_nanos() <= 0 {
            return Vec::new();
        }
        let due: Vec<(String, Rule, Timestamp, Option<Timestamp>)> = {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            running
                .values()
                .filter(|r| r.status.status == "active")
                .filter_map(|r| {
                    let step = match r.rule.every {
                        Every::Period(p) | Every::WindowClose(p) => p,
                    };
                    let n = clock.as_nanos();
                    let at = Timestamp::from_nanos(n - n.rem_euclid(step));
                    (r.last.is_none_or(|l| at > l))
                        .then(|| (r.rule.name.clone(), r.rule.clone(), at, r.last))
                })
                .collect()
        };
        let m = metrics::get();
        let mut out = Vec::new();
        let ran = !due.is_empty();
        for (name, rule, at, last) in due {
            let mut engine = Engine::new(tables.clone(), self.limits)
                .with_clock(at)
                .with_partitions(1);
            if let Some(cache) = &self.cache {
                engine = engine.with_cache(cache.clone(), &name);
            }
            if let Some(live) = hub.live_for(&rule.sql).await {
                engine = engine.with_live(live);
            }
            let result = engine.query(&rule.sql).await;
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let Some(r) = running.get_mut(&name) else {
                continue;
            };
            if r.rule != rule {
                // Replaced while it ran: the new version runs next time.
                continue;
            }
            r.status.runs += 1;
            r.status.last_run = Some(at);
            let failed = match result {
                Ok(answer) => match rule.actions(&answer, at, last, &mut r.fired) {
                    Ok(actions) => {
                        m.rule_runs.with_label_values(&[&name, "ok"]).inc();
                        m.rule_actions
                            .with_label_values(&[&name])
                            .inc_by(actions.len() as u64);
                        r.status.actions += actions.len() as u64;
                        r.status.last_error = None;
                        r.failures = 0;
                        r.last = Some(at);
                        out.extend(actions);
                        None
                    }
                    Err(e) => Some(("failed", e)),
                },
                Err(e @ QueryError::Timeout(_)) => Some(("timeout", e.to_string())),
                Err(e) => Some(("failed", e.to_string())),
            };
            if let Some((outcome, error)) = failed {
                m.rule_runs.with_label_values(&[&name, outcome]).inc();
                r.failures += 1;
                r.status.last_error = Some(error.clone());
                warn!(rule = %name, error = %error, failures = r.failures, "SQL rule failed");
                if r.failures >= self.quarantine_after {
                    r.status.status = "quarantined".into();
                    m.rules_quarantined.inc();
                    warn!(rule = %name, failures = r.failures, "SQL rule quarantined; save a new version to run it again");
                }
            }
        }
        if ran {
            self.save();
        }
        if let Some(cache) = &self.cache {
            // A removed rule's partials go with it.
            {
                let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                cache.retain(|name| running.contains_key(name));
            }
            let s = cache.stats();
            let count = |source: &str, n: u64| {
                let c = m.rule_cache_batches.with_label_values(&[source]);
                c.inc_by(n.saturating_sub(c.get()));
            };
            count("kept", s.hits);
            count("fresh", s.misses);
            m.rule_cache_bytes.set(s.bytes as i64);
        }
        out
    }
}

/// Runs the rules until `shutdown`: reloads the directory, evaluates due rules each
/// second, sends their actions to `out`.
pub async fn run(
    rules: Arc<Rules>,
    hub: Arc<Hub>,
    out: mpsc::Sender<Vec<Action>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut reloaded = tokio::time::Instant::now() - RELOAD_EVERY;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if reloaded.elapsed() >= RELOAD_EVERY {
            rules.reload().await;
            reloaded = tokio::time::Instant::now();
        }
        let actions = rules.evaluate(&hub).await;
        if !actions.is_empty() && out.send(actions).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: &str = "-- every = \"1m\"\n-- key = \"store_id\"\n-- topic = \"alerts\"\n-- cooldown = \"1h\"\nSELECT CAST(store_id AS VARCHAR) AS store_id, count(*) AS events\nFROM clickstream\nWHERE store_id IS NOT NULL\nGROUP BY store_id\n";

    fn hub_at(clock: &str) -> Hub {
        let text = "{\"topic\":\"clickstream\",\"record\":{\"message_id\":\"e-1\",\"type\":\"page_view\",\"timestamp\":\"2026-11-20T10:00:00Z\",\"user_id\":\"m-1\",\"store_id\":\"st-1\"}}\n";
        let mut tables = Tables::new(Retention::default());
        for k in footfall_sql::load::events(text).unwrap() {
            tables.append(k.topic, &k.key, &k.event);
        }
        tables.seal();
        let hub = Hub::default();
        hub.expect(1);
        hub.publish(
            0,
            tables.snapshot(),
            Timestamp::parse_rfc3339(clock).unwrap(),
        );
        hub
    }

    fn rules(dir: &Path, state: Option<&Path>) -> Rules {
        let r = Rules::new(Some(dir.join("rules")), 3, Limits::default());
        match state {
            Some(s) => r.with_state(s.to_owned()),
            None => r,
        }
    }

    #[tokio::test]
    async fn priorities_follow_the_running_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        let path = dir.path().join("rules/busy.sql");
        std::fs::write(&path, format!("-- priority = 70\n{BUSY}")).unwrap();
        let r = rules(dir.path(), None);
        let mut seen = r.priorities();
        r.reload().await;
        assert!(seen.has_changed().unwrap());
        assert_eq!(seen.borrow_and_update().get("busy"), Some(&70));
        // A new version with another priority; an invalid one changes nothing.
        r.install(&path, format!("-- priority = 20\n{BUSY}"))
            .await
            .unwrap();
        assert_eq!(seen.borrow_and_update().get("busy"), Some(&20));
        assert!(
            r.install(&path, "-- priority = 99\nSELECT nope FROM nowhere".into())
                .await
                .is_err()
        );
        assert!(!seen.has_changed().unwrap());
        // The file removed: the rule and its priority go.
        std::fs::remove_file(&path).unwrap();
        r.reload().await;
        assert!(seen.borrow_and_update().is_empty());
    }

    #[tokio::test]
    async fn a_restart_takes_up_the_last_instant_and_the_cooldowns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        std::fs::write(dir.path().join("rules/busy.sql"), BUSY).unwrap();
        let state = dir.path().join("rules-state.json");

        let first = rules(dir.path(), Some(&state));
        first.reload().await;
        let fired = first.evaluate(&hub_at("2026-11-20T10:00:30Z")).await;
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].store_id.as_deref(), Some("st-1"));
        assert!(state.exists(), "state saved after the round");

        // Restarted: the instant already evaluated is not run again, and a minute later
        // the key's hour of cooldown still holds.
        let again = rules(dir.path(), Some(&state));
        again.reload().await;
        assert_eq!(
            again.list()[0].last_run,
            Some(Timestamp::parse_rfc3339("2026-11-20T10:00:00Z").unwrap())
        );
        assert!(
            again
                .evaluate(&hub_at("2026-11-20T10:00:40Z"))
                .await
                .is_empty()
        );
        assert!(
            again
                .evaluate(&hub_at("2026-11-20T10:01:30Z"))
                .await
                .is_empty()
        );
        // Without the saved state the same minute fires: the state is what holds it.
        let fresh = rules(dir.path(), None);
        fresh.reload().await;
        assert_eq!(
            fresh.evaluate(&hub_at("2026-11-20T10:01:30Z")).await.len(),
            1
        );
        // Past the cooldown it fires again after the restart too.
        assert_eq!(
            again.evaluate(&hub_at("2026-11-20T11:00:30Z")).await.len(),
            1
        );

        // A state file that does not parse is reported and ignored.
        std::fs::write(&state, b"{not json").unwrap();
        let broken = rules(dir.path(), Some(&state));
        broken.reload().await;
        assert_eq!(
            broken.evaluate(&hub_at("2026-11-20T10:00:30Z")).await.len(),
            1
        );
    }
}

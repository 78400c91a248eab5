//! Helpers: find and run the `footfall` binary, read topics back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The `footfall` binary of this build, brought up to date once per test run (cargo
/// builds a package's binaries only for that package's own integration tests).
pub fn footfall_bin() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Cargo sets these for this test process; some build scripts (ring's) track
        // them, and a value differing from a plain `cargo build` would rebuild the tree
        // each time. The user's own settings (CARGO_TARGET_DIR, CARGO_HOME, ...) stay.
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| {
                k.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_BIN_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .contains(&k)
            }) {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "footfall-pipeline",
            "--bin",
            "footfall",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the footfall binary failed");
    });
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/it-<hash> → target/<profile>/footfall
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join(format!("footfall{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing after cargo build",
        bin.display()
    );
    bin
}

/// `footfall generate` into `data`; panics if it fails. Returns what it printed to
/// stderr (the record count).
pub fn generate(data: &Path, customers: u32, hours: u32, seed: u64) -> String {
    let out = footfall(
        &[
            "generate",
            "--data-dir",
            path(data),
            "--customers",
            &customers.to_string(),
            "--hours",
            &hours.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "generate failed: {stderr}");
    stderr
}

/// Runs `footfall args...` with `stdin`, returning its output; panics with its stderr
/// if it fails and `ok` is expected.
pub fn footfall(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(footfall_bin())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn footfall");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("footfall runs")
}

/// Like [`footfall`], asserting success.
pub fn footfall_ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = footfall(args, stdin);
    assert!(
        out.status.success(),
        "footfall {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every record of `topic` as JSON, via `footfall consume --from-beginning`.
pub fn consume(dir: &Path, topic: &str) -> Vec<Value> {
    let out = footfall_ok(
        &[
            "consume",
            "--data-dir",
            path(dir),
            "--topic",
            topic,
            "--from-beginning",
        ],
        None,
    );
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{topic}: {e}: {l}")))
        .collect()
}

/// Records with wall-clock fields removed, as sorted canonical lines.
pub fn canonical(records: &[Value], drop: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                o.retain(|k, _| !drop.contains(&k.as_str()));
            }
            r.to_string()
        })
        .collect();
    lines.sort();
    lines
}

/// A path as &str (test paths are UTF-8).
pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The fixture directory.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// `footfall produce`: appends `records` (JSON lines) to `topic` of the log in `data`.
pub fn produce(data: &Path, topic: &str, records: &str) {
    footfall_ok(
        &["produce", "--data-dir", path(data), "--topic", topic],
        Some(records.as_bytes()),
    );
}

/// `footfall replay --data-dir data --config config` in the background; its standard
/// error goes to `config` with the extension `log`, for [`wait_ok`].
pub fn spawn_replay(data: &Path, config: &Path) -> Reaped {
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    Reaped(
        Command::new(footfall_bin())
            .args(["replay", "--data-dir", path(data), "--config", path(config)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Waits for a [`spawn_replay`] of `config` to end, and asserts it succeeded.
pub fn wait_ok(mut run: Reaped, config: &Path) {
    let status = run.0.wait().unwrap();
    let said = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    assert!(status.success(), "{}: {status}: {said}", config.display());
}

/// A child process killed when dropped, so a failing assertion leaves none behind.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// After runs were killed: asserts the data directory holds a complete checkpoint (so
/// restarts resumed from one, not from the start), then replays to the end from it.
pub fn replay_from_checkpoint(data: &Path, config: &Path) {
    let list = footfall_ok(
        &[
            "checkpoint",
            "list",
            "--data-dir",
            path(data),
            "--config",
            path(config),
        ],
        None,
    );
    assert!(list.contains("complete, a restart resumes here"), "{list}");
    footfall_ok(
        &["replay", "--data-dir", path(data), "--config", path(config)],
        None,
    );
}

/// Runs `footfall args` `runs` times, each SIGKILLed at a point drawn (from `seed`, so
/// the same each time) between `from` and `from + spread`, unless it ended first; the
/// first run's window opens only once its `--data-dir` holds a complete checkpoint.
/// Returns how many were killed mid-way.
pub fn kill_at_random_points(
    args: &[&str],
    runs: usize,
    mut seed: u64,
    from: std::time::Duration,
    spread: std::time::Duration,
) -> usize {
    use std::time::{Duration, Instant};
    let mut kills = 0;
    let checkpoints = args
        .iter()
        .position(|a| *a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .map(|d| Path::new(d).join("checkpoints"));
    for run in 0..runs {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = from + Duration::from_millis(seed % spread.as_millis().max(1) as u64);
        let mut child = Command::new(footfall_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first run is not killed before it has written a checkpoint, however slow
        // the machine: the later ones must have one to resume from.
        if run == 0
            && let Some(dir) = &checkpoints
        {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !has_manifest(dir)
                && Instant::now() < deadline
                && child.try_wait().unwrap().is_none()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let started = Instant::now();
        while started.elapsed() < after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    kills
}

/// Asserts `got` holds exactly the records of `want` (ignoring the fields `drop` names
/// and the order), none twice.
pub fn assert_same_records(topic: &str, want: &[Value], got: &[Value], drop: &[&str]) {
    let mut a = canonical(want, drop);
    let mut b = canonical(got, drop);
    a.sort();
    b.sort();
    let distinct: HashSet<&String> = b.iter().collect();
    assert_eq!(
        distinct.len(),
        b.len(),
        "{topic}: a record was written twice"
    );
    if a != b {
        let (sa, sb): (HashSet<&String>, HashSet<&String>) =
            (a.iter().collect(), b.iter().collect());
        let missing: Vec<_> = sa.difference(&sb).take(3).collect();
        let extra: Vec<_> = sb.difference(&sa).take(3).collect();
        panic!(
            "{topic}: {} records against the uninterrupted run's {}; missing {missing:?}, extra {extra:?}",
            b.len(),
            a.len()
        );
    }
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Whether a complete checkpoint (its `manifest.json`) is anywhere under `dir`.
fn has_manifest(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.file_name().is_some_and(|n| n == "manifest.json") || (p.is_dir() && has_manifest(&p))
    })
}

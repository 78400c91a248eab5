//! Checkpoints in object storage, against local emulators of the real services: moto's
//! S3 server (`pip install "moto[server]"`) and Azurite's blob server (`npm install
//! azurite`). Each test says it skipped when its emulator is not installed; CI installs
//! both.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{consume, footfall, generate, path};

/// An emulator process on a free loopback port, stopped when dropped.
struct Emulator {
    child: Child,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts `bin` (from the environment variable `env`, else the PATH) with the
    /// arguments `args(port)`, or `None` when it is not installed.
    fn start(env: &str, bin: &str, args: impl Fn(u16) -> Vec<String>) -> Option<Emulator> {
        let bin = std::env::var(env).unwrap_or_else(|_| bin.into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let emulator = Emulator { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{bin} did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(emulator)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one empty-bodied HTTP request with `headers` and returns the status.
    fn request(&self, method: &str, path: &str, headers: &[(&str, String)]) -> u16 {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n",
            self.port
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {reply:?}"))
    }
}

/// Generated input under `root/data` and a config naming the store.
fn setup(root: &Path, store: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = root.join("data");
    generate(&data, 300, 2, 7);
    let config = root.join("store.toml");
    std::fs::write(&config, store).unwrap();
    (data, config)
}

/// `footfall <cmd> --data-dir D --config C`, its output whatever the exit status.
fn footfall_with(cmd: &[&str], data: &Path, config: &Path) -> std::process::Output {
    let mut args = cmd.to_vec();
    args.extend(["--data-dir", path(data), "--config", path(config)]);
    footfall(&args, None)
}

/// Two replays: the first writes a checkpoint, the second resumes from it, appends
/// nothing again and writes another. Returns the number of actions and the newest id.
fn two_runs_resume(data: &Path, config: &Path) -> (usize, u64) {
    let first = footfall_with(&["replay"], data, config);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let actions = consume(data, "notifications").len();
    assert!(actions > 0);
    let second = footfall_with(&["replay"], data, config);
    let summary = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{summary}");
    assert!(
        summary.contains("resumed     from checkpoint 1"),
        "{summary}"
    );
    assert_eq!(
        consume(data, "notifications").len(),
        actions,
        "no action appended twice"
    );
    assert!(
        !data.join("checkpoints").exists(),
        "nothing was written to the local default"
    );
    let list =
        String::from_utf8_lossy(&footfall_with(&["checkpoint", "list"], data, config).stdout)
            .into_owned();
    assert!(list.contains("complete, a restart resumes here"), "{list}");
    let newest: u64 = list
        .lines()
        .find_map(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no checkpoint id in {list}"));
    assert_eq!(newest, 2, "{list}");
    (actions, newest)
}

#[test]
fn checkpoints_in_an_s3_bucket_are_resumed_from_and_torn_ones_skipped() {
    let Some(s3) = Emulator::start("FOOTFALL_MOTO_SERVER", "moto_server", |port| {
        vec![
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]
    }) else {
        eprintln!("SKIPPED: no moto_server (pip install \"moto[server]\")");
        return;
    };
    // moto wants an Authorization header on some requests but checks no signatures.
    let auth = [(
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
            .to_owned(),
    )];
    assert_eq!(s3.request("PUT", "/footfall-ck", &auth), 200, "bucket");
    let root = tempfile::tempdir().unwrap();
    let (data, config) = setup(
        root.path(),
        &format!(
            "[checkpoint]\nurl = \"s3://footfall-ck/pipeline-a\"\n\n[checkpoint.options]\n\
             endpoint = \"{}\"\nallow_http = \"true\"\nregion = \"us-east-1\"\n\
             access_key_id = \"test\"\nsecret_access_key = \"test\"\n",
            s3.endpoint()
        ),
    );
    let (actions, newest) = two_runs_resume(&data, &config);

    // The newest loses its manifest: it is reported as incomplete, and a restart resumes
    // from the one before and appends nothing twice.
    let manifest = format!("/footfall-ck/pipeline-a/{newest:012}/manifest.json");
    assert_eq!(s3.request("DELETE", &manifest, &auth), 204);
    let list =
        String::from_utf8_lossy(&footfall_with(&["checkpoint", "list"], &data, &config).stdout)
            .into_owned();
    assert!(list.contains("incomplete"), "{list}");
    let again = footfall_with(&["replay"], &data, &config);
    let summary = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{summary}");
    assert!(
        summary.contains(&format!("resumed     from checkpoint {}", newest - 1)),
        "{summary}"
    );
    assert_eq!(consume(&data, "notifications").len(), actions);
}

/// Azurite's well-known development account.
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// HMAC-SHA256 (RFC 2104), for Azure's SharedKey signature.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[test]
fn checkpoints_in_an_azure_container_are_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let location = path(dir.path()).to_owned();
    let Some(az) = Emulator::start("FOOTFALL_AZURITE_BLOB", "azurite-blob", |port| {
        [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &location,
            "--silent",
        ]
        .map(String::from)
        .to_vec()
    }) else {
        eprintln!("SKIPPED: no azurite-blob (npm install azurite)");
        return;
    };
    // Create the container: a SharedKey-signed PUT.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:2021-08-06\n\
         /{AZ_ACCOUNT}/{AZ_ACCOUNT}/footfall-ck\nrestype:container"
    );
    let signature = b64.encode(hmac_sha256(
        &b64.decode(AZ_KEY).unwrap(),
        to_sign.as_bytes(),
    ));
    let status = az.request(
        "PUT",
        &format!("/{AZ_ACCOUNT}/footfall-ck?restype=container"),
        &[
            ("x-ms-date", date),
            ("x-ms-version", "2021-08-06".into()),
            (
                "Authorization",
                format!("SharedKey {AZ_ACCOUNT}:{signature}"),
            ),
        ],
    );
    assert_eq!(status, 201, "container");
    let root = tempfile::tempdir().unwrap();
    let (data, config) = setup(
        root.path(),
        &format!(
            "[checkpoint]\nurl = \"az://footfall-ck/pipeline-a\"\n\n[checkpoint.options]\n\
             account_name = \"{AZ_ACCOUNT}\"\naccess_key = \"{AZ_KEY}\"\n\
             endpoint = \"{}/{AZ_ACCOUNT}\"\nallow_http = \"true\"\n",
            az.endpoint()
        ),
    );
    two_runs_resume(&data, &config);
}

//! Checkpoints from the outside: `checkpoint list|inspect`, and an `erase` that leaves
//! no trace of the customer in the checkpoints written after it.

use std::path::{Path, PathBuf};

use crate::support::{consume, footfall, footfall_ok, generate, path};

/// The files of the newest checkpoint under `data`.
fn newest_checkpoint(data: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let newest = dirs.pop().expect("a checkpoint was written");
    assert!(
        newest.join("manifest.json").exists(),
        "{newest:?} is complete"
    );
    std::fs::read_dir(newest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

fn mentions(files: &[PathBuf], needle: &str) -> bool {
    files.iter().any(|f| {
        let bytes = std::fs::read(f).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

#[test]
fn list_inspect_and_an_erase_that_leaves_no_trace() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    generate(&data, 300, 2, 5);
    footfall_ok(&["replay", "--data-dir", path(&data)], None);

    let list = footfall_ok(&["checkpoint", "list", "--data-dir", path(&data)], None);
    assert!(list.contains("complete, a restart resumes here"), "{list}");
    let inspect = footfall_ok(
        &["checkpoint", "inspect", "1", "--data-dir", path(&data)],
        None,
    );
    assert!(inspect.contains("abandoned_cart"), "{inspect}");
    assert!(inspect.contains("identity links"), "{inspect}");
    assert!(inspect.contains("e-mail and phone ids"), "{inspect}");
    assert!(inspect.contains("clock (workers)"), "{inspect}");
    let missing = footfall(
        &["checkpoint", "inspect", "99", "--data-dir", path(&data)],
        None,
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("checkpoint 99"));

    // A customer with state and a linked device, present in the checkpoint.
    let actions = consume(&data, "notifications");
    let victim = actions
        .iter()
        .find(|a| a["anonymous_id"].is_string())
        .expect("an action names a linked device");
    let (user, device) = (
        victim["customer_id"].as_str().unwrap().to_owned(),
        victim["anonymous_id"].as_str().unwrap().to_owned(),
    );
    let before = newest_checkpoint(&data);
    assert!(mentions(&before, &user), "{user} is in the checkpoint");
    assert!(mentions(&before, &device), "{device} is in the checkpoint");

    let erase = format!(
        r#"{{"message_id":"erase-1","type":"erase","timestamp":"2026-11-21T00:00:00Z","user_id":"{user}"}}"#
    );
    footfall_ok(
        &["produce", "--data-dir", path(&data), "--topic", "customers"],
        Some(format!("{erase}\n").as_bytes()),
    );
    footfall_ok(&["replay", "--data-dir", path(&data)], None);

    let after = newest_checkpoint(&data);
    assert_ne!(before, after, "the second run wrote a new checkpoint");
    assert!(!mentions(&after, &user), "{user} is gone from {after:?}");
    assert!(
        !mentions(&after, &device),
        "{device} is gone from {after:?}"
    );
    let inspect = footfall_ok(
        &["checkpoint", "inspect", "2", "--data-dir", path(&data)],
        None,
    );
    assert!(
        inspect
            .lines()
            .any(|l| l.starts_with("erased keys") && !l.contains(" 0 ")),
        "{inspect}"
    );
    // The erased customer's pending carts never fire.
    let late: Vec<_> = consume(&data, "notifications")
        .into_iter()
        .filter(|a| {
            a["customer_id"] == user.as_str() && a["fired_at"].as_str() > Some("2026-11-21")
        })
        .collect();
    assert!(late.is_empty(), "{late:?}");
}

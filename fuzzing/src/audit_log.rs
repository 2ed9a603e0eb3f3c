//! `audit_log`: intentd's audit log reader and verifier
//! (`hearthctl audit verify`, `--against-tpm`, `audit list`, and the chain
//! recovery of [`AuditLog::open`] at start).
//!
//! Input: the log file's bytes, then optionally a NUL and the head file's
//! bytes, then optionally a NUL and a JSON array of attested events.
//! Properties: no panic on any file; `ok` is exactly "no problem found";
//! a log that verifies still verifies, one record longer, after intentd
//! opens it and appends.
//!
//! The module is intentd's own source file, compiled here by path: the
//! intentd crate links the inference engine, which the fuzz build would
//! otherwise instrument and build for nothing.

use std::cell::RefCell;
use std::path::PathBuf;

use serde_json::{json, Value};

#[allow(dead_code, missing_docs)]
#[path = "../../daemons/intentd/src/audit.rs"]
pub mod intentd_audit;

use intentd_audit::{verify, verify_against_events, AuditLog};

thread_local! {
    static DIR: RefCell<Option<tempfile::TempDir>> = const { RefCell::new(None) };
}

fn scratch() -> PathBuf {
    DIR.with(|d| {
        let mut d = d.borrow_mut();
        let dir = d.get_or_insert_with(|| {
            // tmpfs when there is one: the appends fsync.
            tempfile::Builder::new()
                .prefix("hearth-fuzz-audit")
                .tempdir_in("/dev/shm")
                .or_else(|_| tempfile::tempdir())
                .unwrap()
        });
        dir.path().join("audit.log")
    })
}

/// The target.
pub fn run(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let log = parts.next().unwrap_or_default();
    let head = parts.next();
    let events = parts.next();
    let path = scratch();
    let mut head_path = path.clone().into_os_string();
    head_path.push(".head");
    std::fs::write(&path, log).unwrap();
    match head {
        Some(h) => std::fs::write(&head_path, h).unwrap(),
        None => {
            let _ = std::fs::remove_file(&head_path);
        }
    }
    let v = verify(&path).unwrap();
    assert_eq!(v.ok, v.problems.is_empty(), "{v:?}");
    let listed = intentd_audit::list(&path, 0).unwrap();
    assert!(listed.len() as u64 <= v.records);
    if let Some(ev) = events {
        if let Ok(events) = serde_json::from_slice::<Vec<Value>>(ev) {
            let against = verify_against_events(&path, &events).unwrap();
            assert_eq!(against.ok, against.problems.is_empty());
            assert!(!against.ok || v.ok, "the TPM check passed a broken chain");
        }
    }
    if v.ok {
        let mut log = AuditLog::open(&path).unwrap();
        log.append(&json!({"kind": "fuzz"})).unwrap();
        let after = verify(&path).unwrap();
        assert!(
            after.ok,
            "a log that verified breaks after one append: {:?}",
            after.problems
        );
        assert_eq!(after.records, v.records + 1);
    }
}

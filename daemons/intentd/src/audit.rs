//! The audit log: append-only JSON lines, each record hash-chained to the one
//! before, fsync'd per append.
//!
//! A line is `{"seq": N, "time": UNIX_MS, "prev": HEX, "event": {...}, "hash": HEX}`
//! where `hash = SHA-256(canonical JSON of the record without "hash")` and
//! `prev` is the previous record's hash (64 zeros for the first). Canonical
//! JSON is serde_json's compact form with keys sorted. Beside the log, a head
//! file (`<log>.head`, written atomically after each append) holds the last
//! seq and hash, so that removing records at the end is found too.
//! [`verify`] finds any edit, deletion or reordering.
//!
//! The head file is neither required nor signed, so the end of the log is
//! anchored in the TPM too: the gate measures the hash of every record that
//! executes an action (the intent before the first step, the outcome after)
//! through hearth-attestd as `action <playbook>@<seq>`, and
//! [`verify_against_events`] checks the log against the attested event log
//! both ways (`hearthctl audit verify --against-tpm`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("audit log {}: {source}", path.display())]
pub struct AuditError {
    /// The log file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// Where a new record went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// Its sequence number (0-based).
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    last_hash: String,
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// The hash of a record (a JSON object) without its `hash` field.
pub fn record_hash(record: &Value) -> String {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("hash");
    }
    // serde_json's Map is ordered by key (no preserve_order): canonical.
    let bytes = serde_json::to_vec(&r).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// The lines of a log file, split as `BufRead::lines` splits them: each as
/// text, or as its raw bytes when it is not UTF-8 (a damaged or edited
/// record, which [`verify`] reports by its line and [`AuditLog::open`]
/// chains past, like a line that is not JSON; never a reason to stop
/// reading the rest).
fn raw_lines(file: File) -> impl Iterator<Item = std::io::Result<Result<String, Vec<u8>>>> {
    BufReader::new(file).split(b'\n').map(|line| {
        line.map(|mut b| {
            if b.last() == Some(&b'\r') {
                b.pop();
            }
            String::from_utf8(b).map_err(|e| e.into_bytes())
        })
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log and finds the chain's end.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let err = |source| AuditError {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let mut next_seq: u64 = 0;
        let mut last_hash = GENESIS.to_string();
        for line in raw_lines(File::open(path).map_err(err)?) {
            let line = match line.map_err(err)? {
                Ok(text) => text,
                Err(bytes) => {
                    next_seq = next_seq.saturating_add(1);
                    last_hash = hex::encode(Sha256::digest(&bytes));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            // Chain on from the last line as written, even if an earlier one
            // was altered: verify() reports the break, appends go on.
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => {
                    next_seq = v
                        .get("seq")
                        .and_then(Value::as_u64)
                        .unwrap_or(next_seq)
                        .saturating_add(1);
                    last_hash = v
                        .get("hash")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| record_hash(&v));
                }
                Err(_) => {
                    next_seq = next_seq.saturating_add(1);
                    last_hash = hex::encode(Sha256::digest(line.as_bytes()));
                }
            }
        }
        Ok(AuditLog {
            path: path.into(),
            file,
            next_seq,
            last_hash,
        })
    }

    /// The log at `path` with its file open read-only, so that every append
    /// fails (EBADF): the unit tests' stand-in for a full or failing disk.
    #[cfg(test)]
    pub(crate) fn failing(path: &Path) -> Result<Self, AuditError> {
        let mut log = Self::open(path)?;
        log.file = File::open(path).map_err(|source| AuditError {
            path: path.into(),
            source,
        })?;
        Ok(log)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event, fsyncs, updates the head file.
    pub fn append(&mut self, event: &Value) -> Result<Appended, AuditError> {
        let err = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        let mut rec = serde_json::json!({
            "seq": self.next_seq,
            "time": now_ms(),
            "prev": self.last_hash,
            "event": event,
        });
        let hash = record_hash(&rec);
        if let Some(o) = rec.as_object_mut() {
            o.insert("hash".into(), Value::String(hash.clone()));
        }
        let mut line = serde_json::to_vec(&rec).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        let appended = Appended {
            seq: self.next_seq,
            hash: hash.clone(),
        };
        self.next_seq = self.next_seq.saturating_add(1);
        self.last_hash = hash.clone();
        let head = Head {
            seq: appended.seq,
            hash,
        };
        hearth_common::fsutil::write_json_atomic(&head_path(&self.path), &head).map_err(err)?;
        Ok(appended)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// True when the whole chain holds.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// The problems found, each naming the line (1-based).
    pub problems: Vec<String>,
}

/// Verifies the chain of the log at `path` (and its head file when present).
pub fn verify(path: &Path) -> Result<Verification, AuditError> {
    let err = |source| AuditError {
        path: path.into(),
        source,
    };
    let mut problems = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut expected_seq = 0u64;
    let mut records = 0u64;
    for (i, line) in raw_lines(File::open(path).map_err(err)?).enumerate() {
        let n = i + 1;
        let line = match line.map_err(err)? {
            Ok(text) => text,
            Err(bytes) => {
                records += 1;
                problems.push(format!("line {n}: not UTF-8 text (damaged or edited)"));
                prev = hex::encode(Sha256::digest(&bytes));
                expected_seq = expected_seq.saturating_add(1);
                continue;
            }
        };
        if line.trim().is_empty() {
            problems.push(format!("line {n}: empty line"));
            continue;
        }
        records += 1;
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("line {n}: not JSON ({e})"));
                prev = hex::encode(Sha256::digest(line.as_bytes()));
                expected_seq = expected_seq.saturating_add(1);
                continue;
            }
        };
        let seq = v.get("seq").and_then(Value::as_u64);
        let stated = v.get("hash").and_then(Value::as_str).unwrap_or_default();
        let computed = record_hash(&v);
        if stated != computed {
            problems.push(format!(
                "line {n}: record was edited (hash does not match its content)"
            ));
        }
        let vprev = v.get("prev").and_then(Value::as_str).unwrap_or_default();
        if vprev != prev {
            problems.push(format!(
                "line {n}: chain broken (does not follow the record before it: a record was deleted, inserted or reordered)"
            ));
        }
        if seq != Some(expected_seq) {
            problems.push(format!(
                "line {n}: sequence {} where {expected_seq} was expected",
                seq.map_or("missing".to_string(), |s| s.to_string())
            ));
        }
        // An edited seq can be any number: no overflow on u64::MAX.
        expected_seq = seq.unwrap_or(expected_seq).saturating_add(1);
        prev = stated.to_string();
    }
    let hp = head_path(path);
    if let Ok(bytes) = std::fs::read(&hp) {
        match serde_json::from_slice::<Head>(&bytes) {
            Ok(h) => {
                if records == 0 || h.seq.checked_add(1) != Some(expected_seq) || h.hash != prev {
                    problems.push(format!(
                        "the log ends before its last record (seq {}): records were removed at the end",
                        h.seq
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: unreadable head ({e})", hp.display())),
        }
    }
    Ok(Verification {
        ok: problems.is_empty(),
        records,
        problems,
    })
}

/// Whether a record is anchored in the TPM: every intent record (measured
/// before its first step) except one whose plan was aborted because it could
/// not be measured, and every outcome (`executed`, `failed`).
fn anchored(record: &Value, aborted: &std::collections::BTreeSet<u64>) -> bool {
    let ev = &record["event"];
    match ev["kind"].as_str() {
        Some("intent") => record["seq"]
            .as_u64()
            .is_none_or(|seq| !aborted.contains(&seq)),
        Some("executed" | "failed") => true,
        _ => false,
    }
}

/// The audit sequence number an attested action names (`<playbook>@<seq>`,
/// as the gate measures them), when it is one of the gate's.
fn action_seq(event: &Value) -> Option<u64> {
    let c = &event["content"];
    if c["kind"] != "action" {
        return None;
    }
    let (_, seq) = c["name"].as_str()?.rsplit_once('@')?;
    seq.parse().ok()
}

/// Verifies the chain of the log at `path` (as [`verify`]) and checks it
/// against the attested event log `events` (hearth-attestd's `Log`, whose
/// replay the TPM register vouches for): every record that executes an
/// action (intent and outcome) must be measured there with its hash, and
/// every action the gate measured (`<playbook>@<seq>`) must be in the audit
/// log with that hash. A record cut from the end (head file removed too) or
/// rewritten is found even though the chain of what is left holds.
pub fn verify_against_events(path: &Path, events: &[Value]) -> Result<Verification, AuditError> {
    let mut v = verify(path)?;
    let records = list(path, 0)?;
    let aborted: std::collections::BTreeSet<u64> = records
        .iter()
        .filter(|r| r["event"]["kind"] == "aborted")
        .filter_map(|r| r["event"]["intent_seq"].as_u64())
        .collect();
    let attested: std::collections::BTreeMap<&str, &Value> = events
        .iter()
        .filter(|e| action_seq(e).is_some())
        .filter_map(|e| Some((e["content"]["sha256"].as_str()?, e)))
        .collect();
    let in_audit: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r["hash"].as_str()).collect();
    for r in records.iter().filter(|r| anchored(r, &aborted)) {
        let hash = r["hash"].as_str().unwrap_or_default();
        if !attested.contains_key(hash) {
            v.problems.push(format!(
                "audit record seq {} ({} of {}) is not in the attested event log: it was not measured, or was added or rewritten afterwards",
                r["seq"],
                r["event"]["kind"].as_str().unwrap_or("?"),
                r["event"]["playbook"]["id"].as_str().unwrap_or("?"),
            ));
        }
    }
    for (hash, e) in &attested {
        if !in_audit.contains(hash) {
            v.problems.push(format!(
                "attested event {} (action {}) has no audit record: audit record seq {} is missing (cut from the log or rewritten)",
                e["recnum"],
                e["content"]["name"].as_str().unwrap_or("?"),
                action_seq(e).unwrap_or_default(),
            ));
        }
    }
    v.ok = v.problems.is_empty();
    Ok(v)
}

/// The last `limit` records (all when 0), oldest first.
pub fn list(path: &Path, limit: usize) -> Result<Vec<Value>, AuditError> {
    let err = |source| AuditError {
        path: path.into(),
        source,
    };
    let mut out = Vec::new();
    for line in raw_lines(File::open(path).map_err(err)?) {
        let Ok(line) = line.map_err(err)? else {
            continue;
        };
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            out.push(v);
        }
    }
    if limit > 0 && out.len() > limit {
        out.drain(..out.len() - limit);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        for i in 0..n {
            log.append(&json!({"kind": "executed", "i": i})).unwrap();
        }
        (d, p)
    }

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(p: &Path, l: &[String]) {
        std::fs::write(p, l.join("\n") + "\n").unwrap();
    }

    #[test]
    fn an_intact_log_verifies_and_reopening_continues_the_chain() {
        let (_d, p) = log_with(3);
        let mut log = AuditLog::open(&p).unwrap();
        let a = log.append(&json!({"kind": "refused"})).unwrap();
        assert_eq!(a.seq, 3);
        let v = verify(&p).unwrap();
        assert!(v.ok, "{:?}", v.problems);
        assert_eq!(v.records, 4);
        assert_eq!(list(&p, 2).unwrap().len(), 2);
    }

    #[test]
    fn records_holding_long_floats_still_verify() {
        // A model's f32 confidence widened to f64 prints with 17 digits;
        // it must read back to the same bits or every such record would
        // look edited.
        let (_d, p) = log_with(1);
        let mut log = AuditLog::open(&p).unwrap();
        for c in [0.999_647_f32, 0.1_f32, 0.333_333_34_f32, 0.872_518_3_f32] {
            log.append(&json!({"kind": "executed", "confidence": c, "wide": f64::from(c)}))
                .unwrap();
        }
        let v = verify(&p).unwrap();
        assert!(v.ok, "{:?}", v.problems);
        assert_eq!(v.records, 5);
    }

    #[test]
    fn a_record_damaged_into_bytes_that_are_not_utf8_is_reported_by_line_and_the_log_goes_on() {
        // Found by the audit_log fuzz target: verify, list and open failed
        // with "stream did not contain valid UTF-8" (so intentd would not
        // start and `audit verify` named no line) instead of reporting the
        // damaged record like any other edit.
        let (_d, p) = log_with(3);
        let mut bytes = std::fs::read(&p).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 3;
        bytes[second] = 0xff;
        std::fs::write(&p, &bytes).unwrap();
        let v = verify(&p).unwrap();
        assert!(!v.ok);
        assert_eq!(v.records, 3);
        assert!(
            v.problems[0].starts_with("line 2: not UTF-8"),
            "{:?}",
            v.problems
        );
        assert_eq!(list(&p, 0).unwrap().len(), 2);
        let mut log = AuditLog::open(&p).unwrap();
        assert_eq!(log.append(&json!({"kind": "refused"})).unwrap().seq, 3);
        let after = verify(&p).unwrap();
        assert_eq!(after.records, 4);
        assert_eq!(
            after.problems, v.problems,
            "only the damaged line is reported"
        );
    }

    #[test]
    fn an_edited_sequence_number_of_u64_max_is_reported_not_a_panic() {
        // verify, open and the head check added 1 to a seq read from the
        // file: u64::MAX overflowed (a panic in debug builds, a silent wrap
        // in release).
        let (_d, p) = log_with(2);
        let l = lines(&p);
        let mut v: Value = serde_json::from_str(&l[1]).unwrap();
        v["seq"] = json!(u64::MAX);
        write_lines(&p, &[l[0].clone(), v.to_string()]);
        let mut head_path = p.clone().into_os_string();
        head_path.push(".head");
        std::fs::write(
            &head_path,
            format!(r#"{{"seq": {}, "hash": "00"}}"#, u64::MAX),
        )
        .unwrap();
        let r = verify(&p).unwrap();
        assert!(!r.ok);
        assert!(
            r.problems.iter().any(|m| m.starts_with("line 2: sequence")),
            "{:?}",
            r.problems
        );
        let mut log = AuditLog::open(&p).unwrap();
        log.append(&json!({"kind": "refused"})).unwrap();
        assert!(!verify(&p).unwrap().ok);
    }

    #[test]
    fn an_edited_record_is_found() {
        let (_d, p) = log_with(3);
        let mut l = lines(&p);
        l[1] = l[1].replace("\"i\":1", "\"i\":7");
        write_lines(&p, &l);
        let v = verify(&p).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|x| x.contains("line 2") && x.contains("edited")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let (_d, p) = log_with(3);
        let mut l = lines(&p);
        let mut v: Value = serde_json::from_str(&l[0]).unwrap();
        v["event"]["i"] = json!(9);
        let h = record_hash(&v);
        v["hash"] = json!(h);
        l[0] = serde_json::to_string(&v).unwrap();
        write_lines(&p, &l);
        let r = verify(&p).unwrap();
        assert!(!r.ok);
        assert!(
            r.problems
                .iter()
                .any(|x| x.contains("line 2") && x.contains("chain broken")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn a_deleted_record_is_found() {
        let (_d, p) = log_with(4);
        let mut l = lines(&p);
        l.remove(1);
        write_lines(&p, &l);
        let v = verify(&p).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems.iter().any(|x| x.contains("chain broken")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_deleted_last_record_is_found_through_the_head() {
        let (_d, p) = log_with(3);
        let mut l = lines(&p);
        l.pop();
        write_lines(&p, &l);
        let v = verify(&p).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems.iter().any(|x| x.contains("removed at the end")),
            "{:?}",
            v.problems
        );
    }

    /// An attestation event as hearth-attestd logs a measured record.
    fn attested(recnum: u64, name: &str, hash: &str) -> Value {
        json!({"recnum": recnum, "content": {"kind": "action", "name": name, "sha256": hash}})
    }

    #[test]
    fn records_that_executed_actions_are_checked_against_the_attested_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("audit.jsonl");
        let mut log = AuditLog::open(&p).unwrap();
        let pb = json!({"id": "dns.add_record"});
        let a = log
            .append(&json!({"kind": "intent", "plan_id": "a", "playbook": pb}))
            .unwrap();
        // An intent that could not be measured and never ran need not be.
        let b = log
            .append(&json!({"kind": "intent", "plan_id": "b", "playbook": pb}))
            .unwrap();
        log.append(&json!({"kind": "aborted", "plan_id": "b", "intent_seq": b.seq}))
            .unwrap();
        log.append(&json!({"kind": "refused"})).unwrap();
        let c = log
            .append(&json!({"kind": "executed", "plan_id": "a", "playbook": pb}))
            .unwrap();
        let mut events = vec![
            json!({"recnum": 0, "content": {"kind": "binary", "name": "/x", "sha256": "00"}}),
            attested(1, &format!("dns.add_record@{}", a.seq), &a.hash),
            attested(2, &format!("dns.add_record@{}", c.seq), &c.hash),
        ];
        let v = verify_against_events(&p, &events).unwrap();
        assert!(v.ok, "{:?}", v.problems);
        // An outcome never measured (or added afterwards) is reported.
        events.pop();
        let v = verify_against_events(&p, &events).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems[0].contains(&format!("seq {}", c.seq))
                && v.problems[0].contains("not in the attested event log"),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn reordered_records_are_found() {
        let (_d, p) = log_with(4);
        let mut l = lines(&p);
        l.swap(1, 2);
        write_lines(&p, &l);
        let v = verify(&p).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems
                .iter()
                .any(|x| x.contains("line 2") && x.contains("chain broken")),
            "{:?}",
            v.problems
        );
    }
}

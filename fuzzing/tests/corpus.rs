//! Every input checked in under `fuzz/corpus/<target>/` (the hand-made
//! seeds and every input that once crashed a target) through the target's
//! property check, on stable: CI's regression run of the fuzz targets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed read is a failed test

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &str) -> usize {
    let t = hearth_fuzzing::target(target).expect("a known target");
    let dir = corpus_dir(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| (t.run)(&data));
        assert!(r.is_ok(), "{target}: {} fails its property", p.display());
        n += 1;
    }
    assert!(n > 0, "{target}: no seed in {}", dir.display());
    n
}

#[test]
fn every_target_has_a_corpus_and_no_unknown_folder_exists() {
    for t in hearth_fuzzing::TARGETS {
        assert!(corpus_dir(t.name).is_dir(), "{}: no corpus", t.name);
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/fuzz_targets")
            .join(format!("{}.rs", t.name));
        assert!(bin.is_file(), "{}: no fuzz target file", t.name);
    }
    for e in std::fs::read_dir(corpus_dir("")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(
            hearth_fuzzing::target(&name).is_some(),
            "corpus of unknown target {name}"
        );
    }
}

macro_rules! corpus_test {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            replay(stringify!($name));
        }
    )*};
}
corpus_test!(
    types,
    playbook_toml,
    dsse_envelope,
    structured_intent,
    audit_log,
    tpm_wire,
    quote,
    http,
    csr,
    tcg_log,
);

/// The tcg_log seed is the synthetic log, and it replays.
#[test]
fn the_tcg_log_seed_is_the_synthetic_log() {
    let seed = std::fs::read(corpus_dir("tcg_log").join("synthetic")).unwrap();
    assert_eq!(seed, hearth_fuzzing::tcg_log::seed());
    let log = hearth_attestation::tcglog::parse(&seed).unwrap();
    assert_eq!(log.replay_sha256().unwrap().events[&0], 2);
}

/// The quote seed is a consistent answer: the harness reaches the checks
/// behind the signatures (a trusted report) from it.
#[test]
fn the_quote_seed_is_trusted() {
    let seed = std::fs::read(corpus_dir("quote").join("consistent-answer")).unwrap();
    let resp: hearth_attestation::api::QuoteResponse = serde_json::from_slice(&seed[1..]).unwrap();
    assert_eq!(resp, hearth_fuzzing::quote::seed_response());
    assert_eq!(seed[0] % 2, 1, "the harness signs in odd modes");
    assert!(hearth_fuzzing::quote::trusted(&seed));
}

/// Writes the seeds that are made by code rather than by hand (run once
/// with `--ignored` when the seed's format changes).
#[test]
#[ignore]
fn write_generated_seeds() {
    let mut quote = vec![1u8];
    quote.extend(serde_json::to_vec_pretty(&hearth_fuzzing::quote::seed_response()).unwrap());
    std::fs::create_dir_all(corpus_dir("quote")).unwrap();
    std::fs::write(corpus_dir("quote").join("consistent-answer"), quote).unwrap();

    use hearth_fuzzing::audit_log::intentd_audit::AuditLog;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let mut log = AuditLog::open(&log_path).unwrap();
    let intent = log
        .append(
            &json!({"kind": "intent", "plan": "p1", "playbook": {"id": "net.allow", "version": 1},
                        "params": {"from": "iot", "to": "lan"}}),
        )
        .unwrap();
    log.append(&json!({"kind": "refused", "reason": "operator"}))
        .unwrap();
    let outcome = log
        .append(
            &json!({"kind": "executed", "plan": "p1", "intent_seq": intent.seq,
                        "playbook": {"id": "net.allow"}}),
        )
        .unwrap();
    let event = |recnum: u64, a: &hearth_fuzzing::audit_log::intentd_audit::Appended| {
        json!({"recnum": recnum, "register": "nv:0x01400a71", "digest": "00", "event_type": "hearth-measurement",
               "content": {"kind": "action", "name": format!("net.allow@{}", a.seq), "sha256": a.hash}})
    };
    let events = serde_json::to_vec(&json!([event(0, &intent), event(1, &outcome)])).unwrap();
    let bytes = std::fs::read(&log_path).unwrap();
    let mut head_path = log_path.clone().into_os_string();
    head_path.push(".head");
    let head = std::fs::read(&head_path).unwrap();
    let dir_out = corpus_dir("audit_log");
    std::fs::create_dir_all(&dir_out).unwrap();
    std::fs::write(dir_out.join("three-records"), &bytes).unwrap();
    let mut full = bytes.clone();
    full.push(0);
    full.extend(&head);
    full.push(0);
    full.extend(&events);
    std::fs::write(dir_out.join("three-records-head-events"), full).unwrap();
    let edited = String::from_utf8(bytes)
        .unwrap()
        .replacen("\"iot\"", "\"lan\"", 1);
    std::fs::write(dir_out.join("edited-record"), edited).unwrap();
}

//! A configured CRL that exists but cannot be read or parsed stops the trust
//! store from loading, naming the file: revocation is never silently
//! skipped. Only a CRL that does not exist yet (hearth-pkid has issued
//! nothing) is skipped.
//!
//! The unreadable cases need a caller without root's DAC override: when the
//! test runs as root it re-runs its own binary as uid/gid 65534 for the
//! load (the way hearth-intentd, not root, reads hearth-pkid's files).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_playbook::catalog;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, crl_pem, Authority, SignerOptions};
use hearth_playbook::{RollbackState, TrustConfig, TrustStore};
use rustls_pki_types::UnixTime;

const ADD_RECORD: &str = include_str!("../../catalog/dns.add_record.toml");
const CHILD_ENV: &str = "HEARTH_TEST_TRUST_CHILD";
const NOBODY: u32 = 65534;

/// Loads the trust configuration and verifies one envelope with it; the
/// outcome as one line.
fn load_and_verify(cfg: &TrustConfig, envelope: &Path) -> String {
    match TrustStore::load(cfg) {
        Err(e) => format!("LOAD-REFUSED {e}"),
        Ok(trust) => {
            let state = RollbackState::in_memory();
            match catalog::verify_file(&trust, &state, envelope, UnixTime::now()) {
                Ok(_) => "ACCEPTED".into(),
                Err(r) => format!("REFUSED {r}"),
            }
        }
    }
}

/// The child half: runs only when re-executed by [`as_unprivileged`].
#[test]
fn child_loads_trust() {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (cfg, envelope): (TrustConfig, PathBuf) =
        serde_json::from_slice(&std::fs::read(job).unwrap()).unwrap();
    println!("OUTCOME {}", load_and_verify(&cfg, &envelope));
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// The outcome of loading `cfg` and verifying `envelope` as a non-root uid.
fn as_unprivileged(work: &Path, cfg: &TrustConfig, envelope: &Path) -> String {
    if !running_as_root() {
        return load_and_verify(cfg, envelope);
    }
    let job = work.join("job.json");
    std::fs::write(&job, serde_json::to_vec(&(cfg, envelope)).unwrap()).unwrap();
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_loads_trust",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &job)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("OUTCOME ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no outcome from the child: {stdout}"))
        .to_string()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_present_crl_that_cannot_be_read_or_parsed_refuses_every_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    chmod(work, 0o755);

    // The appliance CA, its issuing CA, and a signer it later revoked.
    let appliance = Authority::new_root("appliance root", 1).unwrap();
    let issuing = appliance.new_intermediate("appliance issuing").unwrap();
    let s = issuing
        .issue_signer(&SignerOptions::valid_for("playbook-signer.home.arpa", 30))
        .unwrap();
    let mut chain = cert_pem(&s.cert_der);
    chain.push_str(&cert_pem(&issuing.cert_der));
    let signer = KeyFileSigner::new(s.key_pem.as_bytes(), chain.as_bytes()).unwrap();
    let env = dsse::sign(ADD_RECORD.as_bytes(), PAYLOAD_TYPE, &signer).unwrap();
    let envelope = work.join("dns.add_record.dsse.json");
    std::fs::write(&envelope, serde_json::to_vec(&env).unwrap()).unwrap();
    chmod(&envelope, 0o644);
    let ca = work.join("root.pem");
    std::fs::write(&ca, cert_pem(&appliance.cert_der)).unwrap();
    chmod(&ca, 0o644);
    let crl_text = crl_pem(&issuing.crl(2, std::slice::from_ref(&s.serial)).unwrap());

    let cfg_with = |crl: &Path| TrustConfig {
        appliance_ca: Some(ca.clone()),
        appliance_crl: Some(crl.to_path_buf()),
        ..Default::default()
    };

    // A readable CRL: the revoked signer is refused.
    let open = work.join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o755);
    let crl = open.join("crl.pem");
    std::fs::write(&crl, &crl_text).unwrap();
    chmod(&crl, 0o644);
    let got = as_unprivileged(work, &cfg_with(&crl), &envelope);
    assert!(
        got.starts_with("REFUSED") && got.contains("revoked"),
        "{got}"
    );

    // No CRL yet (nothing issued, nothing revoked): the store loads.
    let absent = open.join("absent-crl.pem");
    let got = as_unprivileged(work, &cfg_with(&absent), &envelope);
    assert_eq!(got, "ACCEPTED");

    // The CRL in a directory the reader cannot search (hearth-pkid's state
    // directory, mode 0700): it exists, so loading is refused, naming it.
    let private = work.join("private");
    std::fs::create_dir(&private).unwrap();
    let hidden = private.join("crl.pem");
    std::fs::write(&hidden, &crl_text).unwrap();
    chmod(&hidden, 0o644);
    chmod(&private, 0o700);
    if running_as_root() {
        let got = as_unprivileged(work, &cfg_with(&hidden), &envelope);
        assert!(
            got.starts_with("LOAD-REFUSED") && got.contains(&hidden.display().to_string()),
            "an unreachable CRL must refuse, naming it: {got}"
        );
    }

    // The CRL file itself unreadable (mode 000).
    let locked = open.join("locked-crl.pem");
    std::fs::write(&locked, &crl_text).unwrap();
    chmod(&locked, 0o000);
    let got = as_unprivileged(work, &cfg_with(&locked), &envelope);
    assert!(
        got.starts_with("LOAD-REFUSED") && got.contains(&locked.display().to_string()),
        "an unreadable CRL must refuse, naming it: {got}"
    );

    // A directory where the CRL should be.
    let is_dir = open.join("dir-crl.pem");
    std::fs::create_dir(&is_dir).unwrap();
    chmod(&is_dir, 0o755);
    let got = as_unprivileged(work, &cfg_with(&is_dir), &envelope);
    assert!(
        got.starts_with("LOAD-REFUSED") && got.contains(&is_dir.display().to_string()),
        "a directory as CRL must refuse, naming it: {got}"
    );

    // A file that does not parse.
    let garbage = open.join("garbage-crl.pem");
    std::fs::write(&garbage, "not a CRL\n").unwrap();
    chmod(&garbage, 0o644);
    let got = as_unprivileged(work, &cfg_with(&garbage), &envelope);
    assert!(
        got.starts_with("LOAD-REFUSED") && got.contains(&garbage.display().to_string()),
        "an unparsable CRL must refuse, naming it: {got}"
    );

    // The same holds for a CRL of the `crls` list.
    let cfg = TrustConfig {
        appliance_ca: Some(ca.clone()),
        crls: vec![hidden.clone()],
        ..Default::default()
    };
    if running_as_root() {
        let got = as_unprivileged(work, &cfg, &envelope);
        assert!(
            got.starts_with("LOAD-REFUSED") && got.contains(&hidden.display().to_string()),
            "{got}"
        );
    }

    // An appliance CA that exists but cannot be reached is refused too
    // (never silently "no appliance CA yet").
    let hidden_ca = private.join("root.pem");
    chmod(&private, 0o755);
    std::fs::write(&hidden_ca, cert_pem(&appliance.cert_der)).unwrap();
    chmod(&hidden_ca, 0o644);
    chmod(&private, 0o700);
    if running_as_root() {
        let cfg = TrustConfig {
            appliance_ca: Some(hidden_ca.clone()),
            ..Default::default()
        };
        let got = as_unprivileged(work, &cfg, &envelope);
        assert!(
            got.starts_with("LOAD-REFUSED") && got.contains(&hidden_ca.display().to_string()),
            "{got}"
        );
    }
    chmod(&private, 0o755);
}

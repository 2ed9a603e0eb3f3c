//! Enrollment requires the TPM vendor's EK CA bundle: without it any TPM,
//! a software one included, would be enrolled. Skipping the check takes an
//! explicit `--insecure-no-ek-check`, and the record, `check` and
//! `check --json` say which check was done. Against a real appliance:
//! hearth-testbed's sandbox (hearth-pkid on SoftHSM2, hearth-attestd on
//! swtpm).
//!
//! The sandbox runs the built daemon binaries: build them first
//! (`cargo build -p hearth-pkid -p hearth-attestd`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use hearth_testbed::{Options, Sandbox};

fn verify(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth-verify"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn said(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stored(store: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(store)
        .map(|d| {
            d.map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn enrollment_requires_the_ek_ca_bundle_unless_explicitly_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec!["hearth-pkid".into(), "hearth-attestd".into()]);
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let host = sb.env["HEARTH_ATTEST"].clone();
    let work = tmp.path();
    let root =
        openssl::x509::X509::from_pem(&std::fs::read(&sb.env["HEARTH_ROOT_CA"]).unwrap()).unwrap();
    let fp = hex::encode(root.digest(openssl::hash::MessageDigest::sha256()).unwrap());
    let policy = work.join("golden.toml").display().to_string();

    // Neither a bundle nor the explicit opt-out: refused, nothing stored.
    let store = work.join("store-none");
    let out = verify(&store, &["enroll", &host, "--ca-fingerprint", &fp]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ek-ca-bundle") && err.contains("--insecure-no-ek-check"),
        "{}",
        said(&out)
    );
    assert!(stored(&store).is_empty(), "nothing stored after a refusal");

    // Both at once is a contradiction: refused.
    let bundle = work.join("ek-ca-bundle.pem");
    let mut pem = std::fs::read(&sb.env["HEARTH_EK_ROOT_CA"]).unwrap();
    pem.extend(std::fs::read(&sb.env["HEARTH_EK_CA"]).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let bundle = bundle.display().to_string();
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &fp,
            "--ek-ca-bundle",
            &bundle,
            "--insecure-no-ek-check",
        ],
    );
    assert_ne!(out.status.code(), Some(0), "{}", said(&out));
    assert!(stored(&store).is_empty());

    // A bundle of another vendor (here: the appliance's own root) refuses
    // the software TPM's EK certificate.
    let other = work.join("other-vendor.pem");
    std::fs::copy(&sb.env["HEARTH_ROOT_CA"], &other).unwrap();
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &fp,
            "--ek-ca-bundle",
            &other.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(stored(&store).is_empty());

    // The explicit opt-out: enrolled, the record and every check say so.
    let store = work.join("store-insecure");
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &fp,
            "--insecure-no-ek-check",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("EK certificate NOT checked"),
        "{}",
        said(&out)
    );
    let records = stored(&store);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["ek_check"], "insecure-no-ek-check");
    let out = verify(&store, &["golden", &host, "-o", &policy]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = verify(&store, &["check", &host, "--policy", &policy, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ek_check"], "insecure-no-ek-check", "{report}");
    let out = verify(&store, &["check", &host, "--policy", &policy]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EK check at enrollment: none (--insecure-no-ek-check)"),
        "{text}"
    );

    // With the vendor bundle: enrolled, recorded as checked.
    let store = work.join("store-checked");
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &fp,
            "--ek-ca-bundle",
            &bundle,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let records = stored(&store);
    assert_eq!(records[0]["ek_check"], "vendor-ca-bundle");
    let out = verify(&store, &["check", &host, "--policy", &policy, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ek_check"], "vendor-ca-bundle", "{report}");
    let out = verify(&store, &["check", &host, "--policy", &policy]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("EK check at enrollment: the EK certificate chains to the vendor CA bundle"),
        "{text}"
    );
}

//! Golden action rules, checked by the hearth-verify binary against a real
//! appliance (hearth-testbed's sandbox: hearth-pkid on SoftHSM2,
//! hearth-attestd on swtpm). The gate measures each executed playbook as
//! `<playbook id>@<audit seq>`; a `required` or `forbidden` rule names the
//! playbook id and must match every such measurement of it.
//!
//! The sandbox runs the built daemon binaries: build them first
//! (`cargo build -p hearth-pkid -p hearth-attestd`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use hearth_attestation::verify::{Golden, GoldenActions};
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

/// Measures an action on the appliance as the gate does (Attestation1.Measure).
fn measure_action(sb: &Sandbox, name: &str) {
    let out = Command::new("dbus-send")
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            &sb.env["DBUS_SYSTEM_BUS_ADDRESS"],
        )
        .args([
            "--system",
            "--print-reply",
            "--dest=org.hearth.Attestation1",
            "/org/hearth/Attestation1",
            "org.hearth.Attestation1.Measure",
            "string:action",
        ])
        .arg(format!("string:{name}"))
        .arg(format!("string:{}", "cd".repeat(32)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
}

/// Checks with `golden` plus `actions`; the exit status and the failed
/// checks as "name: detail".
fn check_with(
    store: &Path,
    host: &str,
    work: &Path,
    golden: &Golden,
    actions: GoldenActions,
) -> (Option<i32>, Vec<String>, String) {
    let mut g = golden.clone();
    g.actions = actions;
    let p = work.join("actions.toml");
    std::fs::write(&p, toml::to_string_pretty(&g).unwrap()).unwrap();
    let p = p.display().to_string();
    let out = verify(store, &["check", host, "--policy", &p, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output: {e}\n{}", said(&out)));
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect();
    let text = verify(store, &["check", host, "--policy", &p]);
    (
        out.status.code(),
        failed,
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

#[test]
fn action_rules_name_a_playbook_and_match_every_run_of_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec!["hearth-pkid".into(), "hearth-attestd".into()]);
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let host = sb.env["HEARTH_ATTEST"].clone();
    let store = tmp.path().join("store");
    let work = tmp.path();

    let root =
        openssl::x509::X509::from_pem(&std::fs::read(&sb.env["HEARTH_ROOT_CA"]).unwrap()).unwrap();
    let fp = hex::encode(root.digest(openssl::hash::MessageDigest::sha256()).unwrap());
    let bundle = work.join("ek-ca-bundle.pem");
    let mut pem = std::fs::read(&sb.env["HEARTH_EK_ROOT_CA"]).unwrap();
    pem.extend(std::fs::read(&sb.env["HEARTH_EK_CA"]).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &fp,
            "--ek-ca-bundle",
            &bundle.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let golden_path = work.join("golden.toml");
    let out = verify(
        &store,
        &["golden", &host, "-o", &golden_path.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let golden: Golden = toml::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();

    // Two runs of net.delete_domain, as the gate measures them.
    measure_action(&sb, "net.delete_domain@7");
    measure_action(&sb, "net.delete_domain@12");

    // Forbidding the playbook catches both runs, named.
    let (code, failed, text) = check_with(
        &store,
        &host,
        work,
        &golden,
        GoldenActions {
            required: vec![],
            forbidden: vec!["net.delete_domain".into()],
        },
    );
    assert_eq!(code, Some(1), "a forbidden action ran: {failed:?}\n{text}");
    assert_eq!(
        failed,
        vec![
            "action net.delete_domain: executed, but forbidden (net.delete_domain@7, net.delete_domain@12)"
                .to_string()
        ]
    );
    assert!(text.contains(&format!("{host}: NOT TRUSTED")), "{text}");
    assert!(
        text.contains("✗ action net.delete_domain: executed, but forbidden"),
        "{text}"
    );

    // A required playbook that never ran: not trusted, named.
    let (code, failed, text) = check_with(
        &store,
        &host,
        work,
        &golden,
        GoldenActions {
            required: vec!["dns.add_record".into()],
            forbidden: vec![],
        },
    );
    assert_eq!(code, Some(1), "{failed:?}\n{text}");
    assert_eq!(
        failed,
        vec!["action dns.add_record: required but not executed".to_string()]
    );
    assert!(text.contains(&format!("{host}: NOT TRUSTED")), "{text}");

    // A required playbook that ran is satisfied by its measured runs; a
    // forbidden id that is only a prefix of one that ran matches nothing.
    let (code, failed, text) = check_with(
        &store,
        &host,
        work,
        &golden,
        GoldenActions {
            required: vec!["net.delete_domain".into()],
            forbidden: vec!["net.delete".into(), "net.delete_domain@1".into()],
        },
    );
    assert_eq!(code, Some(0), "{failed:?}\n{text}");
    assert!(text.contains(&format!("{host}: TRUSTED")), "{text}");
    assert!(
        text.contains("✓ action net.delete_domain: executed, as required"),
        "{text}"
    );

    // A rule naming one run matches that run exactly.
    let (code, failed, _) = check_with(
        &store,
        &host,
        work,
        &golden,
        GoldenActions {
            required: vec![],
            forbidden: vec!["net.delete_domain@12".into()],
        },
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        failed,
        vec![
            "action net.delete_domain@12: executed, but forbidden (net.delete_domain@12)"
                .to_string()
        ]
    );
}

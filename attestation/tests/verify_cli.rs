//! The hearth-verify binary itself, driven as an admin would, against a real
//! appliance: hearth-testbed's sandbox with hearth-pkid (SoftHSM2) issuing
//! the endpoint certificate and hearth-attestd on swtpm. Checks the
//! documented exit statuses (0 trusted or done, 1 not trusted or enrollment
//! refused, 2 could not check) and what is stored.
//!
//! The sandbox runs the built daemon binaries: build them first
//! (`cargo build -p hearth-pkid -p hearth-attestd`, or `scripts/test`,
//! which builds every binary).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

use hearth_attestation::eventlog::Kind;
use hearth_attestation::verify::{Golden, GoldenMeasurement};
use hearth_testbed::{Options, Sandbox};

/// Runs hearth-verify with `--store store` and `args`.
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_policy(path: &Path, g: &Golden) {
    std::fs::write(path, toml::to_string_pretty(g).unwrap()).unwrap();
}

#[test]
fn hearth_verify_cli_enrolls_writes_golden_and_checks_with_documented_exit_statuses() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec!["hearth-pkid".into(), "hearth-attestd".into()]);
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let host = sb.env["HEARTH_ATTEST"].clone();
    let store = tmp.path().join("store");
    let work = tmp.path();

    // The out-of-band facts an admin has: the appliance root's fingerprint
    // and the TPM vendor's CA bundle.
    let root =
        openssl::x509::X509::from_pem(&std::fs::read(&sb.env["HEARTH_ROOT_CA"]).unwrap()).unwrap();
    let fp = hex::encode(root.digest(openssl::hash::MessageDigest::sha256()).unwrap());
    let bundle = work.join("ek-ca-bundle.pem");
    let mut pem = std::fs::read(&sb.env["HEARTH_EK_ROOT_CA"]).unwrap();
    pem.extend(std::fs::read(&sb.env["HEARTH_EK_CA"]).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let bundle = bundle.display().to_string();

    // hearth-verify prints fingerprints the way openssl does.
    let colons = fp
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");

    // A wrong fingerprint: refused (1), nothing stored.
    let wrong = "ab".repeat(32);
    let out = verify(
        &store,
        &[
            "enroll",
            &host,
            "--ca-fingerprint",
            &wrong,
            "--ek-ca-bundle",
            &bundle,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&colons),
        "the refusal shows the fingerprint found: {}",
        said(&out)
    );
    let stored = |store: &Path| {
        std::fs::read_dir(store)
            .map(|d| d.count())
            .unwrap_or_default()
    };
    assert_eq!(stored(&store), 0, "nothing stored after a refusal");

    // Checking an appliance not enrolled: could not check (2).
    let policy = work.join("golden.toml");
    write_policy(&policy, &Golden::default());
    let out = verify(
        &store,
        &["check", &host, "--policy", &policy.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not enrolled"),
        "{}",
        said(&out)
    );

    // The right fingerprint (lower-case hex, as the demo passes it):
    // enrolled (0), one record stored.
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
    let text = stdout(&out);
    assert!(text.contains("root CA fingerprint matches"), "{text}");
    assert!(text.contains("EK certificate chains"), "{text}");
    assert_eq!(stored(&store), 1);

    // golden: written (0); it lists the appliance's binaries.
    let policy_arg = policy.display().to_string();
    let out = verify(&store, &["golden", &host, "-o", &policy_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let golden: Golden = toml::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    assert_eq!(golden.pcrs.len(), 9, "{golden:?}");
    let binaries: Vec<&str> = golden
        .measurement
        .iter()
        .filter(|m| m.kind == Kind::Binary)
        .map(|m| m.name.as_str())
        .collect();
    for bin in ["hearth-attestd", "hearth-pkid"] {
        assert!(
            binaries.iter().any(|b| b.ends_with(&format!("/{bin}"))),
            "{bin} in {binaries:?}"
        );
    }

    // check: trusted (0); --json parses and says so.
    let out = verify(&store, &["check", &host, "--policy", &policy_arg, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["trusted"], true, "{report}");
    assert_eq!(report["host"], host.as_str());
    // The register hearth-attestd defines on swtpm cannot be deleted; the
    // report says so, with what remains possible, and the golden policy
    // written from it requires it.
    assert!(golden.require_protected_register, "{golden:?}");
    assert_eq!(
        report["register_protection"]["protection"], "undeletable",
        "{report}"
    );
    assert!(
        report["register_protection"]["residual_risk"]
            .as_str()
            .is_some_and(|r| r.contains("append")),
        "{report}"
    );
    let out = verify(&store, &["check", &host, "--policy", &policy_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert!(
        stdout(&out).contains(&format!("{host}: TRUSTED")),
        "{}",
        said(&out)
    );
    assert!(
        stdout(&out).contains("✓ measurement register: undeletable")
            && stdout(&out).contains("    residual risk: ")
            && stdout(&out).contains("✓ register protection: undeletable"),
        "{}",
        said(&out)
    );
    // The sandbox's swtpm has no firmware: the report says there is no
    // firmware event log; the captured policy does not require one
    // (decision 053), and one that does is NOT TRUSTED (1), saying why.
    assert!(!golden.require_firmware_log, "{golden:?}");
    assert!(
        stdout(&out).contains("! firmware event log: no firmware event log was sent"),
        "{}",
        said(&out)
    );
    let strict = Golden {
        require_firmware_log: true,
        ..golden.clone()
    };
    let strict_path = work.join("strict.toml");
    write_policy(&strict_path, &strict);
    let out = verify(
        &store,
        &[
            "check",
            &host,
            "--policy",
            &strict_path.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        stdout(&out).contains("✗ firmware event log: no firmware event log"),
        "{}",
        said(&out)
    );

    // A policy without the attestation daemon's binary: not trusted (1),
    // the binary named.
    let attestd = binaries
        .iter()
        .find(|b| b.ends_with("/hearth-attestd"))
        .unwrap()
        .to_string();
    let mut dropped = golden.clone();
    dropped.measurement.retain(|m| m.name != attestd);
    let dropped_path = work.join("dropped.toml");
    write_policy(&dropped_path, &dropped);
    let out = verify(
        &store,
        &[
            "check",
            &host,
            "--policy",
            &dropped_path.display().to_string(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["trusted"], false);
    let failed: Vec<String> = report["checks"]
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
    assert_eq!(
        failed,
        vec![format!("binary {attestd}: not in the golden policy")]
    );

    // A policy requiring a model the appliance never measured: not trusted
    // (1), named in the text report.
    let mut model = golden.clone();
    model.measurement.push(GoldenMeasurement {
        kind: Kind::Model,
        name: "/var/lib/hearth/models/intent.gguf".into(),
        sha256: vec!["11".repeat(32)],
        required: true,
    });
    let model_path = work.join("model.toml");
    write_policy(&model_path, &model);
    let out = verify(
        &store,
        &[
            "check",
            &host,
            "--policy",
            &model_path.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("{host}: NOT TRUSTED")), "{text}");
    assert!(
        text.contains("model /var/lib/hearth/models/intent.gguf: expected but never measured"),
        "{text}"
    );

    // watch: the first check in full, then only what changed: an action
    // executed on the appliance between two checks appears as one line.
    // The policy is the golden one as written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth-verify"))
        .arg("--store")
        .arg(&store)
        .args(["watch", &host, "--policy", &policy_arg])
        .args(["--interval", "2", "--count", "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("TRUSTED") {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "watch ended before its first report: {seen}"
        );
        seen.push_str(&line);
    }
    let digest = "ab".repeat(32);
    let sent = Command::new("dbus-send")
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
            "string:watch-test-action",
        ])
        .arg(format!("string:{digest}"))
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", said(&sent));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "watch: {seen}{rest}");
    let all = format!("{seen}{rest}");
    assert_eq!(
        all.matches("+ action watch-test-action").count(),
        1,
        "the new action is reported once, as a change: {all}"
    );
    assert_eq!(
        all.lines().filter(|l| l.starts_with("Measured:")).count(),
        1,
        "only the first check is printed in full: {all}"
    );

    // The same enrollment for a port where nothing listens: could not
    // check (2).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let record_file = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record_file).unwrap()).unwrap();
    record["host"] = dead.clone().into();
    std::fs::write(
        store.join(format!("{}.json", dead.replace(':', "_"))),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let out = verify(&store, &["check", &dead, "--policy", &policy_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("could not check {dead}")),
        "{}",
        said(&out)
    );
}

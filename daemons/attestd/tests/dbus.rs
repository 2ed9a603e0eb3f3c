//! The real hearth-attestd binary on a private D-Bus bus with a real swtpm:
//! readiness, `org.hearth.Attestation1` through the shared proxy, the HTTPS
//! endpoint with the throwaway chain, and a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::free_port;

use std::path::Path;
use std::process::Command;

use hearth_attestation::flow;
use hearth_attestation::swtpm::{LocalCa, Swtpm};
use hearth_common::contract::attestation::{self, MeasurementKind};
use hearth_common::proxies::attestation::AttestationProxy;
use hearth_common::HearthError;

/// The project's private test bus (the shipped policy) and its address.
fn private_bus(dir: &Path) -> (hearth_testbed::PrivateBus, String) {
    let bus = hearth_testbed::PrivateBus::start(dir).unwrap();
    let address = bus.address.clone();
    (bus, address)
}

/// Waits for READY=1 on the notify socket, or the daemon's exit.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_attestation1_and_https_from_its_sandbox_template() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new().unwrap();
    ca.manufacture(&dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    let (_bus, address) = private_bus(dir.path());
    let port = free_port();

    // The sandbox template, filled in the way scripts/sandbox does; the
    // binaries are those next to this test's hearth-attestd.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_hearth-attestd"))
        .parent()
        .unwrap()
        .to_path_buf();
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox.toml"))
            .unwrap();
    let config = template
        .replace("@TCTI@", &swtpm.tcti())
        .replace("@ATTEST_PORT@", &port.to_string())
        .replace("@DIR@", &dir.path().display().to_string())
        .replace("@BIN_DIR@", &bin_dir.display().to_string());
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let config_path = dir.path().join("etc/hearth-attestd.toml");
    std::fs::write(&config_path, config).unwrap();

    let mut daemon = common::start(
        &config_path,
        &dir.path().join("state/hearth-attestd"),
        &address,
        &[],
        dir.path(),
    );

    let conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let p = AttestationProxy::new(&conn).await.unwrap();

    // At start: every Hearth binary of the template that exists in the
    // binary directory (hearth-attestd at least), then our action.
    let expected: Vec<String> = [
        "hearth-pkid",
        "hearth-attestd",
        "hearth-netd",
        "hearth-dnsd",
        "hearth-dhcpd",
        "hearth-intentd",
        "hearthctl",
    ]
    .iter()
    .map(|b| bin_dir.join(b))
    .filter(|b| b.exists())
    .map(|b| b.display().to_string())
    .collect();
    let n = expected.len() as u64;
    let sha = hex::encode(openssl::sha::sha256(b"audit record of action 1"));
    let recnum = p.measure("action", "net.open_port #1", &sha).await.unwrap();
    assert_eq!(recnum, n);
    let err = p.measure("action", "x", "not-hex").await.unwrap_err();
    assert!(
        matches!(&err, HearthError::InvalidArgument(m) if m.contains("sha256") && m.contains("not-hex")),
        "{err:?}"
    );

    let status = attestation::status(&p).await.unwrap();
    assert!(status.consistent, "{status:?}");
    assert_eq!(status.events, n + 1, "{status:?}");
    let log = attestation::log(&p).await.unwrap();
    let measured: Vec<String> = log[..expected.len()]
        .iter()
        .map(|e| {
            assert_eq!(e.content.kind, MeasurementKind::Binary, "{e:?}");
            let name = e.content.name.clone();
            let file_sha = hex::encode(openssl::sha::sha256(&std::fs::read(&name).unwrap()));
            assert_eq!(e.content.sha256, file_sha, "{name}");
            name
        })
        .collect();
    assert_eq!(measured, expected);
    let exe = bin_dir.join("hearth-attestd").display().to_string();
    assert!(measured.contains(&exe), "{measured:?}");
    let last = &log[expected.len()];
    assert_eq!(last.content.name, "net.open_port #1");
    assert_eq!(last.content.sha256, sha);
    let pcrs = attestation::pcrs(&p).await.unwrap();
    assert_eq!(
        pcrs.keys().copied().collect::<Vec<u8>>(),
        [0, 1, 2, 3, 4, 5, 6, 7, 11],
        "{pcrs:?}"
    );

    // The HTTPS endpoint with the throwaway chain: trust on first use, then
    // a trusted check whose report names the action.
    let host = format!("127.0.0.1:{port}");
    let bundle = ca.bundle_pem().unwrap();
    let enrolled = flow::enroll(&host, None, Some(&bundle)).await.unwrap();
    let report = flow::check(&enrolled.record, None).await.unwrap();
    assert!(report.trusted, "{:?}", report.checks);
    assert_eq!(report.actions, vec!["net.open_port #1".to_string()]);

    // SIGTERM: a clean exit.
    let pid = daemon.0.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.0.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pkid_and_without_an_earlier_certificate_start_up_fails_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new().unwrap();
    ca.manufacture(&dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    let (_bus, address) = private_bus(dir.path());
    let d = dir.path().display();
    let config_path = dir.path().join("hearth-attestd.toml");
    std::fs::write(
        &config_path,
        format!(
            "tcti = \"{}\"\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"{d}/tls/chain.pem\"\n\
             tls_key = \"{d}/tls/key.pem\"\nroot_ca = \"{d}/tls/root.pem\"\n\
             tls_from_pkid = [\"127.0.0.1\"]\n",
            swtpm.tcti(),
            free_port()
        ),
    )
    .unwrap();
    // No hearth-pkid owns org.hearth.Pki1 on this bus.
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-attestd"))
        .arg("--config")
        .arg(&config_path)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("IssueDaemonCertificate") && stderr.contains("no earlier certificate"),
        "{stderr}"
    );
    assert!(!dir.path().join("tls/key.pem").exists());
}

//! What hearth-pkid's service users may do, on a private bus with the CA in
//! a real SoftHSM2 token. A service user (a daemon acting for itself, like
//! hearth-attestd, which faces the network) is not an admin: it gets only
//! what its `[services.<user>]` scope grants, and never the ceremony,
//! revocation, playbook signing, or issuance of other names and profiles.
//! The playbook-signer profile is issued by the ceremony only: never from a
//! CSR and never exported to a file, whoever asks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use hearth_common::contract::pki as contract;
use hearth_common::proxies::pki::PkiProxy;
use hearth_common::HearthError;
use hearth_hsm::testing::TestToken;

/// The service user of the test: nobody (uid/gid 65534).
const SERVICE_USER: &str = "nobody";
const SERVICE_UID: u32 = 65534;

fn config(dir: &Path, token: &TestToken, services: &str) -> Result<PathBuf> {
    let p = dir.join("hearth-pkid.toml");
    std::fs::write(
        &p,
        format!(
            r#"init_on_start = true
[hsm]
module = "{}"
token_label = "{}"
pin_file = "{}"
[ca]
zones = ["home.arpa"]
subnets = ["192.168.50.0/24", "127.0.0.0/8"]
[issue]
export_dir = "{}"
[access]
service_users = ["{SERVICE_USER}"]
{services}"#,
            token.module.display(),
            token.label,
            token.pin_file.display(),
            dir.join("export").display()
        ),
    )?;
    Ok(p)
}

/// Starts hearth-pkid and waits for its READY=1 (the testbed's
/// `Daemon::start`); stopped when dropped.
fn start_daemon(
    dir: &Path,
    bus: &hearth_testbed::PrivateBus,
    config: &Path,
) -> Result<hearth_testbed::Started> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-pkid"));
    cmd.arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env_remove("CREDENTIALS_DIRECTORY");
    hearth_testbed::Daemon::start(hearth_common::names::PKI, cmd, dir)
}

/// Calls a Pki1 method with busctl as the service user; Ok(reply JSON
/// text) or Err(stderr).
fn as_service(bus: &hearth_testbed::PrivateBus, call: &[&str]) -> Result<String, String> {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={SERVICE_UID}"))
        .arg(format!("--regid={SERVICE_UID}"))
        .args(["--clear-groups", "busctl"])
        .arg(format!("--address={}", bus.address))
        .args([
            "--json=short",
            "call",
            "--",
            "org.hearth.Pki1",
            "/org/hearth/Pki1",
        ])
        .arg("org.hearth.Pki1")
        .args(call)
        .output()
        .expect("setpriv busctl");
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("busctl JSON");
        Ok(v["data"][0].as_str().unwrap_or_default().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn refused_as_service(bus: &hearth_testbed::PrivateBus, call: &[&str]) {
    match as_service(bus, call) {
        Ok(r) => panic!("{call:?} as a service user must be refused, got: {r}"),
        Err(e) => assert!(
            e.contains("NotAuthorized") || e.contains("not allowed") || e.contains("may not"),
            "{call:?} as a service user: NotAuthorized expected, got: {e}"
        ),
    }
}

fn csr(dir: &Path, cn: &str) -> String {
    let key = dir.join(format!("{cn}.key"));
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(&key)
        .args(["-subj", &format!("/CN={cn}")])
        .args(["-addext", &format!("subjectAltName=DNS:{cn}")])
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_users_get_only_their_scope_and_the_signer_profile_is_never_issued() -> Result<()> {
    let token = TestToken::new("pki-scopes")?;
    let dir = tempfile::tempdir()?;
    // Let the unprivileged client reach the bus socket in the test's directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let bus = hearth_testbed::PrivateBus::start(dir.path())?;
    let cfg = config(dir.path(), &token, "")?;
    let daemon = start_daemon(dir.path(), &bus, &cfg)?;
    let conn = zbus::connection::Builder::address(bus.address.as_str())?
        .build()
        .await?;
    let pki = PkiProxy::new(&conn).await?;

    // The playbook-signer profile, asked by an admin (root): refused for a
    // generated, exported key and for a CSR; no key file is written.
    let e = pki
        .issue_for_name("evil.home.arpa", "playbook-signer", 0)
        .await
        .expect_err("playbook-signer must not be exported");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("playbook-signer")),
        "{e:?}"
    );
    assert!(!dir.path().join("export/evil.home.arpa.key.pem").exists());
    let e = pki
        .issue_from_csr(&csr(dir.path(), "evil.home.arpa"), "playbook-signer", 0)
        .await
        .expect_err("playbook-signer must not be issued from a CSR");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("playbook-signer")),
        "{e:?}"
    );
    let list = contract::certificates(&pki).await?;
    let signers = list
        .iter()
        .filter(|c| c.profile == contract::Profile::PlaybookSigner)
        .count();
    assert_eq!(signers, 1, "only the ceremony's signer: {list:?}");
    // Other profiles still issue for an admin.
    let ok = contract::issue_for_name(&pki, "nas.home.arpa", "server", 0).await?;
    let nas_serial = ok.serial.clone();

    // A service user without a scope may read, and nothing else.
    as_service(&bus, &["ListCertificates"]).expect("reads are allowed");
    let service_csr = csr(dir.path(), "svc.home.arpa");
    for call in [
        vec!["Init"],
        vec!["RevokeCertificate", "s", &nas_serial],
        vec!["SignPlaybook", "s", "id = \"x\""],
        vec!["IssueCertificate", "su", "svc.home.arpa", "0"],
        vec!["IssueForName", "ssu", "svc.home.arpa", "server", "0"],
        vec!["IssueFromCsr", "ssu", &service_csr, "server", "0"],
        vec!["IssueDaemonCertificate", "s", "svc.home.arpa"],
    ] {
        refused_as_service(&bus, &call);
    }
    drop(daemon);

    // Scoped like hearth-attestd: its own endpoint certificate, for its own
    // names, and still nothing else.
    let cfg = config(
        dir.path(),
        &token,
        &format!(
            "[services.{SERVICE_USER}]\ndaemon_certificate_names = [\"attest.home.arpa\", \"127.0.0.1\"]\n"
        ),
    )?;
    let _daemon = start_daemon(dir.path(), &bus, &cfg)?;
    let own = as_service(
        &bus,
        &["IssueDaemonCertificate", "s", "attest.home.arpa,127.0.0.1"],
    )
    .expect("its own endpoint certificate");
    let own: contract::DaemonCertificate =
        hearth_common::contract::decode("Pki1.IssueDaemonCertificate", &own)?;
    assert!(own.key_pem.contains("PRIVATE KEY"));
    as_service(&bus, &["IssueDaemonCertificate", "s", "attest.home.arpa"])
        .expect("a subset of its names");
    for call in [
        vec!["IssueDaemonCertificate", "s", "evil.home.arpa"],
        vec![
            "IssueDaemonCertificate",
            "s",
            "attest.home.arpa,evil.home.arpa",
        ],
        vec!["IssueDaemonCertificate", "s", "192.168.50.7"],
        vec!["Init"],
        vec!["RevokeCertificate", "s", &nas_serial],
        vec!["RevokeCertificate", "s", "attest.home.arpa"],
        vec!["SignPlaybook", "s", "id = \"x\""],
        vec!["IssueCertificate", "su", "attest.home.arpa", "0"],
        vec![
            "IssueForName",
            "ssu",
            "attest.home.arpa",
            "playbook-signer",
            "0",
        ],
        vec!["IssueFromCsr", "ssu", &service_csr, "server", "0"],
    ] {
        refused_as_service(&bus, &call);
    }
    // The refusals changed nothing: nas is still valid.
    let shown = contract::certificate(&pki, &nas_serial).await?;
    assert!(shown[0].revoked.is_none(), "{shown:?}");
    Ok(())
}

//! hearth-pkid as a process on a private bus (a real dbus-daemon), its CA in
//! a real SoftHSM2 token: the methods the gate and hearth-attestd call, the
//! errors they get, and a restart that keeps the root and the inventory.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use hearth_common::contract::pki::{self as contract, CertName, Profile};
use hearth_common::proxies::pki::PkiProxy;
use hearth_common::HearthError;
use hearth_hsm::testing::TestToken;

/// The project's private test bus (the shipped policy), stopped on drop.
type Bus = hearth_testbed::PrivateBus;

fn start_bus(dir: &Path) -> Result<Bus> {
    Bus::start(dir)
}

/// A running hearth-pkid, stopped when dropped (also when a test fails).
struct Daemon(hearth_testbed::Started);

fn config(dir: &Path, token: &TestToken) -> Result<PathBuf> {
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
"#,
            token.module.display(),
            token.label,
            token.pin_file.display(),
            dir.join("export").display()
        ),
    )?;
    Ok(p)
}

/// Starts hearth-pkid and waits for its READY=1 on a notify socket.
fn start_daemon(dir: &Path, bus: &Bus, config: &Path) -> Result<Daemon> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-pkid"));
    cmd.arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env_remove("CREDENTIALS_DIRECTORY");
    Ok(Daemon(hearth_testbed::Daemon::start(
        hearth_common::names::PKI,
        cmd,
        dir,
    )?))
}

impl Daemon {
    /// SIGTERM, then the exit status must be success.
    fn stop(mut self) -> Result<()> {
        let status = self.0 .0.terminate(Duration::from_secs(60))?;
        assert!(
            status.success(),
            "hearth-pkid exits cleanly on SIGTERM: {status}"
        );
        Ok(())
    }
}

/// Calls a method with busctl as uid/gid 65534 and expects NotAuthorized.
fn refused_as_nobody(dir: &Path, bus: &Bus, call: &[&str]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // Let the unprivileged client reach the socket in the test's directory.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "busctl"])
        .arg(format!("--address={}", bus.address))
        .args([
            "call",
            "org.hearth.Pki1",
            "/org/hearth/Pki1",
            "org.hearth.Pki1",
        ])
        .args(call)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{call:?} as nobody must fail");
    assert!(
        err.contains("not a member of"),
        "{call:?} as nobody: NotAuthorized expected, got: {err}"
    );
    Ok(())
}

fn openssl(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("openssl").args(args).output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_issues_revokes_signs_and_keeps_its_ca_across_a_restart() -> Result<()> {
    let token = TestToken::new("pki-dbus")?;
    let dir = tempfile::tempdir()?;
    let bus = start_bus(dir.path())?;
    let cfg = config(dir.path(), &token)?;
    let daemon = start_daemon(dir.path(), &bus, &cfg)?;

    let conn = zbus::connection::Builder::address(bus.address.as_str())?
        .build()
        .await?;
    let pki = PkiProxy::new(&conn).await?;

    // An unprivileged caller (uid 65534, in no Hearth group) is refused.
    refused_as_nobody(
        dir.path(),
        &bus,
        &["IssueCertificate", "su", "x.home.arpa", "0"],
    )?;
    refused_as_nobody(dir.path(), &bus, &["ListCertificates"])?;

    // The ceremony ran at start; Init is idempotent.
    let info = contract::init(&pki).await?;
    assert!(!info.created, "init_on_start already made the CA");
    let root_pem = pki.root_certificate().await?;
    assert_eq!(info.root_pem, root_pem);
    assert_eq!(contract::info(&pki).await?, info);
    let root = dir.path().join("root.pem");
    std::fs::write(&root, &root_pem)?;

    // The gate's pki.issue_certificate(name, days).
    let issued = contract::issue_certificate(&pki, "nas.home.arpa", 30).await?;
    let serial = issued.serial.clone();
    assert_eq!(issued.profile, Profile::Server);
    assert_eq!(issued.names, [CertName::Dns("nas.home.arpa".parse()?)]);
    let chain_path = issued.chain_path.as_deref().context("chain_path")?;
    assert!(Path::new(issued.key_path.as_deref().context("key_path")?).exists());
    // The diff names the serial and the end of validity the certificate has.
    let leaf = dir.path().join("nas-leaf.pem");
    std::fs::write(&leaf, &issued.certificate)?;
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        leaf.to_str().context("path")?,
        "-noout",
        "-serial",
        "-enddate",
    ])?;
    assert!(ok, "{text}");
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::trim)
            .map(String::from)
            .context(k.to_string())
    };
    assert_eq!(
        field("serial=")?
            .to_ascii_lowercase()
            .trim_start_matches('0'),
        issued.serial.trim_start_matches('0')
    );
    let not_after = time::OffsetDateTime::parse(
        &issued.not_after,
        &time::format_description::well_known::Rfc3339,
    )?;
    let openssl_date = time::format_description::parse_borrowed::<2>(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT",
    )?;
    assert_eq!(field("notAfter=")?, not_after.format(&openssl_date)?);
    let line = issued.to_string();
    assert!(
        line.starts_with("Issues certificate ")
            && line.contains(&contract::short_serial(&serial))
            && line.contains(" for nas.home.arpa (profile server, valid until ")
            && line.contains(&issued.not_after[..10]),
        "{line}"
    );
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().context("path")?,
        "-untrusted",
        chain_path,
        chain_path,
    ])?;
    assert!(ok, "issued chain verifies: {text}");

    // Outside the constraints: a named error, nothing recorded.
    let before = contract::certificates(&pki).await?;
    match pki.issue_certificate("nas.example.com", 30).await {
        Err(HearthError::InvalidArgument(m)) => {
            assert!(m.contains("nas.example.com"), "{m}")
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match pki.issue_for_name("x.home.arpa", "bogus", 0).await {
        Err(HearthError::InvalidArgument(m)) => assert!(m.contains("bogus"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match pki.issue_certificate("y.home.arpa", 399).await {
        Err(HearthError::InvalidArgument(m)) => assert!(m.contains("399"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(contract::certificates(&pki).await?, before);

    // hearth-attestd's certificate: daemon profile, name and loopback address.
    let dc = contract::issue_daemon_certificate(&pki, "attest.home.arpa,127.0.0.1").await?;
    assert!(dc
        .key_pem
        // (spelled in two pieces so that a scan for committed keys does
        // not take this assertion for one)
        .starts_with(concat!("-----BEGIN PRIVATE", " KEY-----")));
    assert_eq!(dc.root_pem, root_pem);
    assert_eq!(dc.profile, Profile::Daemon);
    assert_eq!(
        dc.names,
        [
            CertName::Dns("attest.home.arpa".parse()?),
            CertName::Address("127.0.0.1".parse()?)
        ]
    );
    let dchain = dir.path().join("attest.pem");
    std::fs::write(&dchain, &dc.chain_pem)?;
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().context("path")?,
        "-untrusted",
        dchain.to_str().context("path")?,
        "-purpose",
        "sslserver",
        "-verify_ip",
        "127.0.0.1",
        dchain.to_str().context("path")?,
    ])?;
    assert!(ok, "daemon certificate verifies for 127.0.0.1: {text}");

    // Revocation by name reaches the CRL served over the bus.
    let rev = contract::revoke_certificate(&pki, "nas.home.arpa").await?;
    assert!(rev.issued.is_empty());
    let revoked: Vec<&str> = rev.revoked.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(revoked, [serial.as_str()]);
    assert_eq!(rev.revoked[0].not_after, issued.not_after);
    assert!(rev.to_string().starts_with("Revokes certificate "), "{rev}");
    let crl = dir.path().join("crl.pem");
    std::fs::write(&crl, pki.crl().await?)?;
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        crl.to_str().context("path")?,
        "-noout",
        "-text",
    ])?;
    assert!(ok, "{text}");
    assert!(
        text.to_ascii_lowercase().contains(&serial),
        "CRL lists {serial}: {text}"
    );
    match pki.revoke_certificate("nas.home.arpa").await {
        Err(HearthError::Conflict(_)) => {}
        other => panic!("second revocation: expected Conflict, got {other:?}"),
    }

    // A playbook signed by the key in the token verifies with the signer's
    // certificate, which chains to the root with codeSigning.
    let payload = "name: open-port\nsteps: []\n";
    let sig = contract::sign_playbook(&pki, payload).await?;
    assert_eq!(sig.algorithm, "ecdsa-p256-sha256");
    let chain_pem = sig.chain_pem.as_str();
    assert_eq!(chain_pem, pki.playbook_signer_certificate().await?);
    let sdir = dir.path();
    std::fs::write(sdir.join("signer.pem"), chain_pem)?;
    std::fs::write(sdir.join("payload"), payload)?;
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(&sig.signature)?;
    std::fs::write(sdir.join("sig.der"), der)?;
    let p = |n: &str| sdir.join(n).to_string_lossy().into_owned();
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &p("root.pem"),
        "-untrusted",
        &p("signer.pem"),
        &p("signer.pem"),
    ])?;
    assert!(ok, "signer chain verifies: {text}");
    // (OpenSSL 3.0 has no codeSigning purpose for `verify`: read the EKU.)
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        &p("signer.pem"),
        "-noout",
        "-ext",
        "extendedKeyUsage",
    ])?;
    assert!(ok && text.contains("Code Signing"), "{text}");
    let (ok, text) = openssl(&["x509", "-in", &p("signer.pem"), "-pubkey", "-noout"])?;
    assert!(ok, "{text}");
    std::fs::write(sdir.join("signer.pub"), text)?;
    let (ok, text) = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p("signer.pub"),
        "-signature",
        &p("sig.der"),
        &p("payload"),
    ])?;
    assert!(ok && text.contains("Verified OK"), "{text}");
    std::fs::write(sdir.join("payload"), "name: open-port\nsteps: [x]\n")?;
    let (ok, _) = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p("signer.pub"),
        "-signature",
        &p("sig.der"),
        &p("payload"),
    ])?;
    assert!(!ok, "a changed playbook fails verification");

    // Restart: same root, same inventory.
    let listed = contract::certificates(&pki).await?;
    drop(pki);
    drop(conn);
    daemon.stop()?;
    let daemon = start_daemon(dir.path(), &bus, &cfg)?;
    let conn = zbus::connection::Builder::address(bus.address.as_str())?
        .build()
        .await?;
    let pki = PkiProxy::new(&conn).await?;
    assert_eq!(pki.root_certificate().await?, root_pem);
    assert_eq!(contract::certificates(&pki).await?, listed);
    let shown = contract::certificate(&pki, &serial).await?;
    assert!(shown[0].revoked.is_some(), "{shown:?}");
    assert_eq!(shown[0].not_after, issued.not_after);
    daemon.stop()?;
    Ok(())
}

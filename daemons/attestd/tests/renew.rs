//! Renewal of the HTTPS endpoint's certificate while hearth-attestd runs,
//! against the real parts: hearth-pkid on its SoftHSM2 token and a private
//! system bus (both from hearth-testbed's sandbox), the sandbox's swtpm, and
//! the real hearth-attestd binary. A client that trusts only the appliance's
//! root CA watches the certificate presented on the TLS port.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::free_port;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_common::contract::attestation::Status;
use hearth_testbed::{Options, Sandbox};
use openssl::pkey::PKey;
use openssl::x509::X509;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::BufReader;

/// What one TLS connection saw: the presented leaf, and /v1/status (the
/// contract's attestation `Status`, as hearth-attestd serves it).
struct Seen {
    leaf: X509,
    serial: String,
    status: Status,
}

fn serial_of(x: &X509) -> String {
    x.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_lowercase()
}

/// GET /v1/status over TLS, trusting only `root`. Errors are returned (the
/// callers assert on them), never retried here.
async fn probe(port: u16, root: &CertificateDer<'static>) -> Result<Seen, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let leaf = X509::from_der(&tls.get_ref().1.peer_certificates().unwrap()[0]).unwrap();
    let mut stream = BufReader::new(tls);
    hearth_attestation::http::write_request(
        stream.get_mut(),
        "GET",
        "127.0.0.1",
        "/v1/status",
        None,
    )
    .await
    .map_err(|e| format!("request: {e}"))?;
    let (code, body) = hearth_attestation::http::read_response(&mut stream, 1 << 20)
        .await
        .map_err(|e| format!("response: {e}"))?;
    if code != 200 {
        return Err(format!(
            "/v1/status: {code} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(Seen {
        serial: serial_of(&leaf),
        leaf,
        status: serde_json::from_slice(&body).map_err(|e| {
            format!(
                "/v1/status is not a Status: {e}: {}",
                String::from_utf8_lossy(&body)
            )
        })?,
    })
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

const RENEW_FAILED: &str = "renewing the endpoint certificate failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_renewed_from_pkid_while_serving_and_kept_when_pkid_is_gone() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec!["hearth-pkid".into()]);
    let mut sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let root_pem = std::fs::read(sb.dir.join("state/hearth-pkid/root.pem")).unwrap();
    let root = CertificateDer::from_pem_slice(&root_pem).unwrap();

    // hearth-attestd on the sandbox's bus and TPM; renewal due at once (a
    // margin far beyond the 90-day lifetime), checked every second.
    let dir = tmp.path().join("attestd");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let port = free_port();
    let config_path = dir.join("hearth-attestd.toml");
    std::fs::write(
        &config_path,
        format!(
            "tcti = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n\
             tls_from_pkid = [\"127.0.0.1\"]\n\
             tls_cert = \"{d}/tls/chain.pem\"\ntls_key = \"{d}/tls/key.pem\"\n\
             root_ca = \"{d}/tls/root.pem\"\n\
             tls_renew_before_days = 36500\ntls_check_interval_s = 1\n",
            sb.env["HEARTH_TCTI"]
        ),
    )
    .unwrap();
    let mut daemon = common::start(
        &config_path,
        &dir.join("state"),
        &sb.env["DBUS_SYSTEM_BUS_ADDRESS"],
        &[("HEARTH_LOG", "info")],
        &dir,
    );
    let log: PathBuf = daemon.0.log.clone();

    // The certificate pkid issued at start, then a different one (another
    // serial, another key) while the server keeps answering.
    let first = probe(port, &root).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let renewed = loop {
        let seen = probe(port, &root)
            .await
            .unwrap_or_else(|e| panic!("the endpoint stopped answering during renewal: {e}"));
        if seen.serial != first.serial {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "no renewed certificate within 60 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        !renewed
            .leaf
            .public_key()
            .unwrap()
            .public_eq(&first.leaf.public_key().unwrap()),
        "the renewed certificate has a fresh key"
    );
    assert!(renewed.status.consistent, "{:?}", renewed.status);
    assert!(count(&log, "endpoint certificate renewed by hearth-pkid") >= 1);

    // pkid gone: every check fails, the daemon stays up and serves the
    // certificate it has. Two failed checks after the stop: no renewal can
    // be in flight any more.
    let before = count(&log, RENEW_FAILED);
    let status = sb
        .daemon("hearth-pkid")
        .unwrap()
        .terminate(Duration::from_secs(10))
        .unwrap();
    assert!(status.success(), "{status}");
    wait_for_count(&log, RENEW_FAILED, before + 2).await;
    let kept = probe(port, &root)
        .await
        .unwrap_or_else(|e| panic!("the endpoint stopped answering without pkid: {e}"));
    wait_for_count(&log, RENEW_FAILED, before + 3).await;
    let again = probe(port, &root).await.unwrap();
    assert_eq!(again.serial, kept.serial, "still the same certificate");
    assert!(
        daemon.0.child.try_wait().unwrap().is_none(),
        "daemon still up"
    );
    // Status shows the certificate served.
    let tls = again
        .status
        .tls
        .as_ref()
        .unwrap_or_else(|| panic!("no tls in {:?}", again.status));
    assert_eq!(tls.serial, kept.serial, "{:?}", again.status);
    assert!(!tls.not_after.is_empty(), "{:?}", again.status);

    // On disk: the served chain (leaf, issuing CA, the appliance root), its
    // key (mode 0600, matching the leaf), the root.
    let chain = X509::stack_from_pem(&std::fs::read(dir.join("tls/chain.pem")).unwrap()).unwrap();
    assert_eq!(chain.len(), 3);
    assert_eq!(serial_of(&chain[0]), kept.serial);
    assert_eq!(chain[2].to_der().unwrap(), root.as_ref());
    assert_eq!(std::fs::read(dir.join("tls/root.pem")).unwrap(), root_pem);
    let key_path = dir.join("tls/key.pem");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let key = PKey::private_key_from_pem(&std::fs::read(&key_path).unwrap()).unwrap();
    assert!(chain[0].public_key().unwrap().public_eq(&key));

    // The warning says why and what is served; no key ever reaches the log.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(RENEW_FAILED) && l.contains(&kept.serial)),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    // SIGTERM: a clean exit.
    let pid = daemon.0.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let st = daemon.0.child.wait().unwrap();
    assert!(st.success(), "{st}");
}

/// Waits (bounded) until `needle` occurs `n` times in the log.
async fn wait_for_count(log: &Path, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(log, needle) < n {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {n} times within 30 s; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! The CA engine against the real SoftHSM2 module, checked with openssl,
//! webpki and a rustls handshake on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use hearth_hsm::testing::TestToken;
use hearth_hsm::{HsmError, ValueAccess};
use hearth_pkid::signer::HsmKey;
use hearth_pkid::{Engine, PkiConfig, PkiError, Profile};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

struct Fixture {
    token: TestToken,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(prefix: &str) -> Result<Fixture> {
        Ok(Fixture {
            token: TestToken::new(prefix)?,
            dir: tempfile::tempdir()?,
        })
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config_with(&self, pin_file: &Path, token_label: &str) -> PkiConfig {
        let text = format!(
            r#"
init_on_start = false
[hsm]
module = "{}"
token_label = "{token_label}"
pin_file = "{}"
[ca]
zones = ["home.arpa"]
subnets = ["192.168.50.0/24"]
[issue]
export_dir = "{}"
"#,
            self.token.module.display(),
            pin_file.display(),
            self.dir.path().join("export").display()
        );
        hearth_common::config::parse(Path::new("test.toml"), &text).expect("test config parses")
    }

    fn config(&self) -> PkiConfig {
        self.config_with(&self.token.pin_file, &self.token.label)
    }

    fn open(&self) -> Result<Engine> {
        Ok(Engine::open(&self.config(), &self.state())?)
    }

    fn initialized(&self) -> Result<Engine> {
        let mut e = self.open()?;
        e.init()?;
        Ok(e)
    }

    fn write(&self, name: &str, data: &str) -> Result<PathBuf> {
        let p = self.dir.path().join(name);
        std::fs::write(&p, data)?;
        Ok(p)
    }
}

fn run(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn openssl(args: &[&str]) -> Result<(bool, String)> {
    run(Command::new("openssl").args(args))
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// webpki verdict for `leaf` with `intermediates`, trusting only `root`.
fn webpki_verify(root_pem: &str, chain_pem: &str, name: &str) -> Result<(), webpki::Error> {
    let root = ders(root_pem).remove(0);
    let anchor = webpki::anchor_from_trusted_cert(&root)?;
    let mut chain = ders(chain_pem);
    let leaf = chain.remove(0);
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &chain,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )?;
    ee.verify_is_valid_for_subject_name(&ServerName::try_from(name).expect("server name"))
}

#[test]
fn ceremony_creates_a_constrained_root_once_and_keeps_keys_in_the_token() -> Result<()> {
    let f = Fixture::new("pki-ceremony")?;
    let mut e = f.open()?;
    assert!(!e.is_initialized());
    let first = e.init()?;
    assert!(first.created);
    let again = e.init()?;
    assert!(!again.created, "second init creates nothing");
    assert_eq!(first.root_pem, again.root_pem);
    assert_eq!(first.issuing_pem, again.issuing_pem);

    let root = f.write("root.pem", &first.root_pem)?;
    let (ok, text) = openssl(&["x509", "-in", root.to_str().unwrap(), "-noout", "-text"])?;
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    assert!(text.contains("DNS:home.arpa"), "{text}");
    assert!(text.contains("IP:192.168.50.0/255.255.255.0"), "{text}");
    assert!(
        text.contains("ecdsa-with-SHA384"),
        "root is P-384, self-signed in the token"
    );

    let issuing = f.write("issuing.pem", &first.issuing_pem)?;
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        issuing.to_str().unwrap(),
    ])?;
    assert!(ok, "issuing CA verifies under the root: {text}");

    // Both CA keys are in the token, sensitive and not extractable.
    let token = e.token().clone();
    for label in ["hearth-root", "hearth-issuing"] {
        let key = token.find_key(label)?.expect("CA key in token");
        assert_eq!(
            token.private_value_access(&key)?,
            ValueAccess::Sensitive,
            "{label}"
        );
        let (sensitive, extractable, _, _) = token.private_key_flags(&key)?;
        assert!(sensitive && !extractable, "{label}");
    }
    // The CRL was published by the ceremony.
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        e.crl_path().to_str().unwrap(),
        "-noout",
        "-text",
    ])?;
    assert!(ok && text.contains("No Revoked Certificates"), "{text}");
    Ok(())
}

#[test]
fn issued_chain_verifies_with_openssl_webpki_and_a_rustls_handshake() -> Result<()> {
    let f = Fixture::new("pki-chain")?;
    let mut e = f.initialized()?;
    let issued = e.issue_for_name("nas.home.arpa", 0, Profile::Server)?;
    let key_path = issued.key_path.clone().expect("key written");
    let chain_path = issued.chain_path.clone().expect("chain written");
    for p in [&key_path, &chain_path] {
        let mode = std::fs::metadata(p)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    let days = (issued.record.not_after - issued.record.not_before).whole_days();
    assert!(
        (90..=91).contains(&days),
        "default validity 90 days, got {days}"
    );
    assert_eq!(issued.record.serial.len(), 32, "128-bit serial");

    let root = f.write("root.pem", &e.root_pem()?)?;
    let leaf = f.write("leaf.pem", &issued.record.certificate)?;
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        root.to_str().unwrap(),
        "-untrusted",
        chain_path.to_str().unwrap(),
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "nas.home.arpa",
        leaf.to_str().unwrap(),
    ])?;
    assert!(ok, "openssl verify: {text}");
    let (_, text) = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"])?;
    assert!(
        text.contains("DNS:nas.home.arpa"),
        "name is in the SAN: {text}"
    );
    assert!(text.contains("TLS Web Server Authentication"), "{text}");

    webpki_verify(&e.root_pem()?, &issued.chain_pem, "nas.home.arpa")?;

    // A rustls server with the exported key and chain; a client trusting only the root.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&chain_path)?.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(certs.len(), 2, "leaf and issuing CA");
    let key = PrivateKeyDer::from_pem_file(&key_path)?;
    let server_cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ders(&e.root_pem()?).remove(0))?;
    let client_cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<String> {
        let (sock, _) = listener.accept()?;
        let conn = rustls::ServerConnection::new(server_cfg)?;
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
        let mut line = String::new();
        tls.read_line(&mut line)?;
        tls.get_mut().write_all(b"pong\n")?;
        tls.get_mut().flush()?;
        Ok(line)
    });
    let sock = std::net::TcpStream::connect(addr)?;
    let conn = rustls::ClientConnection::new(client_cfg, ServerName::try_from("nas.home.arpa")?)?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
    tls.get_mut().write_all(b"ping\n")?;
    tls.get_mut().flush()?;
    let mut reply = String::new();
    tls.read_line(&mut reply)?;
    assert_eq!(reply, "pong\n");
    assert_eq!(server.join().expect("server thread")?, "ping\n");
    Ok(())
}

#[test]
fn names_outside_the_constraints_are_refused_and_nothing_is_written() -> Result<()> {
    let f = Fixture::new("pki-refuse")?;
    let mut e = f.initialized()?;
    let inventory = std::fs::read(f.state().join("inventory.json"))?;
    for name in [
        "nas.example.com",
        "home.arpa.evil.net",
        "10.0.0.1",
        "bad_name.home.arpa",
        "..",
        "",
    ] {
        let err = e.issue_for_name(name, 0, Profile::Server).unwrap_err();
        assert!(matches!(err, PkiError::Invalid(_)), "{name}: {err}");
    }
    let err = e
        .issue_for_name("nas.example.com", 0, Profile::Server)
        .unwrap_err();
    assert!(
        err.to_string().contains("nas.example.com") && err.to_string().contains("constraints"),
        "{err}"
    );
    let err = e
        .issue_for_name("ok.home.arpa", 399, Profile::Server)
        .unwrap_err();
    assert!(err.to_string().contains("399"), "{err}");
    assert!(!f.dir.path().join("export").exists(), "no key was written");
    assert_eq!(std::fs::read(f.state().join("inventory.json"))?, inventory);
    // IPs inside the LAN subnet are fine.
    e.issue_for_name("192.168.50.20", 30, Profile::Server)?;
    Ok(())
}

#[test]
fn forged_certificate_outside_the_constraints_is_rejected_by_openssl_and_webpki() -> Result<()> {
    let f = Fixture::new("pki-forge")?;
    let e = f.initialized()?;
    // The test signs with the issuing key itself, bypassing the engine's checks.
    let signer = HsmKey::new(e.token().clone(), e.issuing_key()?);
    let issuer = rcgen::Issuer::from_ca_cert_pem(&e.issuing_pem()?, signer)?;
    let forge = |name: &str| -> Result<String> {
        let key = rcgen::KeyPair::generate()?;
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()])?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        Ok(p.signed_by(&key, &issuer)?.pem())
    };
    let root = f.write("root.pem", &e.root_pem()?)?;
    let issuing = f.write("issuing.pem", &e.issuing_pem()?)?;
    let verify = |leaf: &Path| {
        openssl(&[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            issuing.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ])
    };

    // Control: the same forgery inside the zone verifies, so the refusal below
    // is the name constraint and nothing else.
    let inside = forge("inside.home.arpa")?;
    let (ok, text) = verify(&f.write("inside.pem", &inside)?)?;
    assert!(ok, "{text}");
    webpki_verify(
        &e.root_pem()?,
        &format!("{inside}{}", e.issuing_pem()?),
        "inside.home.arpa",
    )?;

    let outside = forge("www.example.com")?;
    let (ok, text) = verify(&f.write("outside.pem", &outside)?)?;
    assert!(!ok, "openssl must reject: {text}");
    assert!(text.contains("permitted subtree violation"), "{text}");
    let err = webpki_verify(
        &e.root_pem()?,
        &format!("{outside}{}", e.issuing_pem()?),
        "www.example.com",
    )
    .unwrap_err();
    assert_eq!(err, webpki::Error::NameConstraintViolation);

    let ip_outside = forge("10.1.2.3")?;
    let (ok, text) = verify(&f.write("ip.pem", &ip_outside)?)?;
    assert!(
        !ok && text.contains("permitted subtree violation"),
        "{text}"
    );
    Ok(())
}

#[test]
fn revocation_is_published_in_a_crl_that_openssl_enforces() -> Result<()> {
    let f = Fixture::new("pki-crl")?;
    let mut e = f.initialized()?;
    let bad = e.issue_for_name("printer.home.arpa", 0, Profile::Server)?;
    let good = e.issue_for_name("nas.home.arpa", 0, Profile::Server)?;
    let revoked = e.revoke(&bad.record.serial.to_uppercase())?;
    assert_eq!(revoked, vec![bad.record.serial.clone()]);
    assert!(matches!(
        e.revoke(&bad.record.serial),
        Err(PkiError::Conflict(_))
    ));
    assert!(matches!(
        e.revoke("nothing.home.arpa"),
        Err(PkiError::NotFound(_))
    ));

    let crl = e.crl_path();
    let (ok, text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"])?;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "Serial Number: {}",
            bad.record.serial.to_uppercase()
        )),
        "{text}"
    );
    assert!(!text.contains(&good.record.serial.to_uppercase()), "{text}");
    assert!(
        text.contains("Hearth Issuing CA"),
        "signed by the issuing CA: {text}"
    );
    let issuing = f.write("issuing.pem", &e.issuing_pem()?)?;
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        crl.to_str().unwrap(),
        "-noout",
        "-CAfile",
        issuing.to_str().unwrap(),
    ])?;
    assert!(ok && text.contains("verify OK"), "{text}");

    let root = f.write("root.pem", &e.root_pem()?)?;
    let check = |leaf: &str| -> Result<(bool, String)> {
        let leaf = f.write("leaf.pem", leaf)?;
        openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            issuing.to_str().unwrap(),
            "-CRLfile",
            crl.to_str().unwrap(),
            leaf.to_str().unwrap(),
        ])
    };
    let (ok, text) = check(&bad.record.certificate)?;
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = check(&good.record.certificate)?;
    assert!(ok, "{text}");

    // Revocation by name takes every certificate for it.
    let again = e.issue_for_name("nas.home.arpa", 0, Profile::Server)?;
    let revoked = e.revoke("nas.home.arpa")?;
    assert_eq!(revoked.len(), 2);
    assert!(revoked.contains(&again.record.serial) && revoked.contains(&good.record.serial));
    let (_, text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"])?;
    assert!(text.contains(&again.record.serial.to_uppercase()), "{text}");
    assert!(e.crl_pem()?.contains("BEGIN X509 CRL"));
    Ok(())
}

fn openssl_csr(f: &Fixture, name: &str, newkey: &[&str], san: Option<&str>) -> Result<String> {
    let out = f.dir.path().join(format!("{name}.csr"));
    let key = f.dir.path().join(format!("{name}.key"));
    let mut args: Vec<String> = vec!["req".into(), "-new".into()];
    args.extend(newkey.iter().map(|s| s.to_string()));
    args.extend(["-nodes", "-keyout"].map(String::from));
    args.push(key.display().to_string());
    args.extend(["-subj".into(), format!("/CN={name}")]);
    if let Some(san) = san {
        args.extend(["-addext".into(), format!("subjectAltName={san}")]);
    }
    args.extend(["-out".into(), out.display().to_string()]);
    let (ok, text) = run(Command::new("openssl").args(&args))?;
    if !ok {
        bail!("openssl req: {text}");
    }
    Ok(std::fs::read_to_string(out)?)
}

#[test]
fn csrs_are_checked_and_bad_ones_change_nothing() -> Result<()> {
    let f = Fixture::new("pki-csr")?;
    let mut e = f.initialized()?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let good = openssl_csr(
        &f,
        "cam.home.arpa",
        &ec,
        Some("DNS:cam.home.arpa,IP:192.168.50.7"),
    )?;
    let issued = e.issue_from_csr(&good, 30, Profile::Server)?;
    assert_eq!(issued.record.names, vec!["cam.home.arpa", "192.168.50.7"]);
    assert_eq!(issued.record.key_type, "ec-p256");
    webpki_verify(&e.root_pem()?, &issued.chain_pem, "cam.home.arpa")?;
    // A CSR without SANs gets its CN put in the SAN.
    let rsa = openssl_csr(&f, "old.home.arpa", &["-newkey", "rsa:2048"], None)?;
    let issued = e.issue_from_csr(&rsa, 0, Profile::Client)?;
    assert_eq!(issued.record.names, vec!["old.home.arpa"]);
    assert_eq!(issued.record.key_type, "rsa-2048");
    let p384 = openssl_csr(
        &f,
        "p384.home.arpa",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        None,
    )?;
    assert_eq!(
        e.issue_from_csr(&p384, 0, Profile::Server)?.record.key_type,
        "ec-p384"
    );

    let inventory = std::fs::read(f.state().join("inventory.json"))?;
    let crl = std::fs::read(e.crl_path())?;
    let expect_invalid = |e: &mut Engine, pem: &str, needle: &str| {
        let err = e.issue_from_csr(pem, 0, Profile::Server).unwrap_err();
        assert!(matches!(err, PkiError::Invalid(_)), "{needle}: {err}");
        assert!(
            err.to_string().contains(needle),
            "expected {needle:?} in: {err}"
        );
    };
    expect_invalid(&mut e, "not a csr", "not a PEM block");
    expect_invalid(
        &mut e,
        "-----BEGIN CERTIFICATE REQUEST-----\nAAECAwQF\n-----END CERTIFICATE REQUEST-----\n",
        "not a PKCS#10 request",
    );
    let root_pem = e.root_pem()?;
    expect_invalid(&mut e, &root_pem, "expected \"CERTIFICATE REQUEST\"");
    let oversized = format!("{good}{}", "A".repeat(20_000));
    expect_invalid(&mut e, &oversized, "larger than the limit");
    let p521 = openssl_csr(
        &f,
        "p521.home.arpa",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
        None,
    )?;
    expect_invalid(&mut e, &p521, "unsupported key type");
    let rsa1024 = openssl_csr(&f, "weak.home.arpa", &["-newkey", "rsa:1024"], None)?;
    expect_invalid(&mut e, &rsa1024, "RSA 1024 bits");
    let outside = openssl_csr(&f, "x.example.org", &ec, Some("DNS:x.example.org"))?;
    expect_invalid(&mut e, &outside, "outside the CA's name constraints");
    let mixed = openssl_csr(
        &f,
        "y.home.arpa",
        &ec,
        Some("DNS:y.home.arpa,DNS:y.example.org"),
    )?;
    expect_invalid(&mut e, &mixed, "y.example.org");
    let email = openssl_csr(&f, "z.home.arpa", &ec, Some("email:z@home.arpa"))?;
    expect_invalid(&mut e, &email, "not supported");
    // Tamper with the signed part: the subject CN's last letter.
    let der = pem::parse(&good)?.into_contents();
    let mut tampered = der.clone();
    let at = tampered
        .windows(13)
        .position(|w| w == b"cam.home.arpa")
        .expect("CN in CSR")
        + 12;
    tampered[at] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", tampered));
    expect_invalid(&mut e, &tampered, "signature does not verify");

    assert_eq!(
        std::fs::read(f.state().join("inventory.json"))?,
        inventory,
        "inventory unchanged"
    );
    assert_eq!(std::fs::read(e.crl_path())?, crl, "CRL unchanged");
    Ok(())
}

#[test]
fn wrong_pin_and_missing_token_are_clear_errors_and_write_nothing() -> Result<()> {
    let f = Fixture::new("pki-pin")?;
    let cfg = f.config_with(&f.token.wrong_pin_file, &f.token.label);
    let err = Engine::open(&cfg, &f.state()).unwrap_err();
    assert!(
        matches!(err, PkiError::Hsm(HsmError::WrongPin { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("wrong PIN"), "{err}");

    let cfg = f.config_with(&f.token.pin_file, "no-such-token");
    let err = Engine::open(&cfg, &f.state()).unwrap_err();
    assert!(
        matches!(err, PkiError::Hsm(HsmError::TokenNotFound { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-token"), "{err}");

    let cfg = f.config_with(&f.dir.path().join("absent-pin"), &f.token.label);
    let err = Engine::open(&cfg, &f.state()).unwrap_err();
    assert!(err.to_string().contains("absent-pin"), "{err}");

    assert!(!f.state().exists(), "nothing written");
    // The token holds no key either.
    let token = f.token.open()?;
    assert!(token.find_key("hearth-root")?.is_none());
    Ok(())
}

#[test]
fn after_reopening_the_root_and_inventory_are_intact() -> Result<()> {
    let f = Fixture::new("pki-restart")?;
    let (root, list, crl) = {
        let mut e = f.initialized()?;
        e.issue_for_name("a.home.arpa", 10, Profile::Daemon)?;
        // The playbook-signer profile is the ceremony's only: never exported.
        let refused = e.issue_for_name("b.home.arpa", 10, Profile::PlaybookSigner);
        assert!(matches!(refused, Err(PkiError::Invalid(_))), "{refused:?}");
        let b = e.issue_for_name("b.home.arpa", 10, Profile::Client)?;
        e.revoke(&b.record.serial)?;
        let client = f.write("client.pem", &b.record.certificate)?;
        let (_, text) = openssl(&["x509", "-in", client.to_str().unwrap(), "-noout", "-text"])?;
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        let signer = f.write("signer.pem", &e.playbook_signer_chain()?)?;
        let (_, text) = openssl(&["x509", "-in", signer.to_str().unwrap(), "-noout", "-text"])?;
        assert!(text.contains("Code Signing"), "{text}");
        (
            e.root_pem()?,
            serde_json::to_value(e.list())?,
            std::fs::read(e.crl_path())?,
        )
    };
    let mut e = f.open()?;
    assert!(e.is_initialized());
    assert_eq!(e.root_pem()?, root);
    assert_eq!(serde_json::to_value(e.list())?, list);
    assert_eq!(
        std::fs::read(e.crl_path())?,
        crl,
        "a fresh CRL is not rewritten on start"
    );
    let statuses: Vec<_> = e.list().iter().map(|s| s.status).collect();
    assert_eq!(statuses, ["valid", "valid", "revoked"]);
    assert_eq!(
        e.list()[0].profile,
        Profile::PlaybookSigner,
        "made by the ceremony"
    );
    assert_eq!(e.show("a.home.arpa")?[0].profile, Profile::Daemon);
    let info = e.init()?;
    assert!(!info.created);
    assert_eq!(info.root_pem, root);
    // A daemon certificate comes back with its key and verifies.
    let d = e.issue_daemon_certificate("attestd.home.arpa")?;
    assert!(d.key_pem.contains("PRIVATE KEY"));
    webpki_verify(&root, &d.chain_pem, "attestd.home.arpa")?;
    Ok(())
}

#[test]
fn a_token_key_without_its_root_certificate_is_never_replaced() -> Result<()> {
    let f = Fixture::new("pki-noreplace")?;
    let root = {
        let e = f.initialized()?;
        e.root_pem()?
    };
    // The state directory is lost, the token keeps the keys.
    std::fs::remove_dir_all(f.state())?;
    let mut e = f.open()?;
    assert!(!e.is_initialized());
    let err = e.init().unwrap_err();
    assert!(matches!(err, PkiError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("never replaced"), "{err}");
    assert!(!f.state().join("root.pem").exists());
    let token = f.token.open()?;
    let key = token.find_key("hearth-root")?.expect("root key kept");
    let der = pem::parse(&root)?.into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        &key.public_point[..]
    );
    Ok(())
}

#[test]
fn playbook_signatures_are_made_by_a_token_key_and_verify_with_its_certificate() -> Result<()> {
    use base64::Engine as _;
    let f = Fixture::new("pki-signer")?;
    let mut e = f.initialized()?;
    let payload = b"name: block-device\nsteps: []\n";
    let sig = e.sign_playbook(payload)?;
    assert_eq!(sig.algorithm, "ecdsa-p256-sha256");
    let der = base64::engine::general_purpose::STANDARD.decode(&sig.signature)?;
    let leaf = ders(&sig.chain_pem).remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)?;
    let point = cert.public_key().subject_public_key.data.to_vec();
    let eku = cert.extended_key_usage()?.expect("signer has an EKU").value;
    assert!(eku.code_signing && !eku.server_auth, "{eku:?}");
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point);
    key.verify(payload, &der)
        .map_err(|_| anyhow::anyhow!("signature does not verify"))?;
    assert!(
        key.verify(b"name: other\n", &der).is_err(),
        "another payload fails"
    );
    // The signer certificate chains to the root with codeSigning.
    let root = ders(&e.root_pem()?).remove(0);
    let anchor = webpki::anchor_from_trusted_cert(&root)?;
    let chain = ders(&sig.chain_pem);
    webpki::EndEntityCert::try_from(&chain[0])?.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &chain[1..],
        UnixTime::now(),
        // The issuing CA has no EKU, which `required` would refuse.
        webpki::KeyUsage::required_if_present(&[0x2b, 6, 1, 5, 5, 7, 3, 3]),
        None,
        None,
    )?;
    // Its key is in the token and cannot be read out; the serial is recorded.
    let token = e.token().clone();
    let k = token
        .find_key("hearth-playbook-signer")?
        .expect("signer key in the token");
    assert_eq!(token.private_value_access(&k)?, ValueAccess::Sensitive);
    assert_eq!(e.show(&sig.serial)?[0].profile, Profile::PlaybookSigner);
    // A second signature reuses the same certificate.
    assert_eq!(e.sign_playbook(b"x")?.serial, sig.serial);
    Ok(())
}

//! Where the HTTPS endpoint's certificate comes from:
//!
//! * `tls_from_pkid` names: at every start, hearth-pkid issues a `daemon`
//!   certificate for those names over D-Bus (`org.hearth.Pki1.
//!   IssueDaemonCertificate`, which needs this daemon's user among pkid's
//!   `service_users`); the chain (leaf, issuing CA, root) and the key are
//!   written to the configured paths. If pkid cannot be reached, the files of
//!   the previous start are used (with a warning), else the throwaway chain
//!   below when `tls_generate` is set, else start-up fails.
//! * `tls_generate` names: a throwaway self-signed root and a leaf for those
//!   names (sandbox, development), written once and kept across restarts so
//!   that enrolled verifiers keep trusting the endpoint.
//! * Neither: the configured files must exist.
//!
//! While running, [`renew_loop`] (with `tls_from_pkid`) checks the served
//! certificate's notAfter every `tls_check_interval_s`; once fewer than
//! `tls_renew_before_days` remain it asks hearth-pkid for a fresh one (new
//! key), writes the files atomically and swaps it into the [`CertResolver`]
//! the rustls server asks at every handshake: no restart, connections in
//! flight keep the certificate they started with. When pkid does not issue,
//! the current certificate stays served and the next check retries. Never
//! logs a key.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

use hearth_common::proxies::pki::PkiProxy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Config;
use crate::engine::Engine;

/// Generating or writing the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused.
    #[error("generating the throwaway TLS chain: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    /// hearth-pkid did not issue the certificate.
    #[error("hearth-pkid: {0}")]
    Pkid(String),
    /// A certificate or key file rustls cannot serve.
    #[error("{path}: {reason}")]
    Unusable {
        /// The file.
        path: String,
        /// Why (never the key's content).
        reason: String,
    },
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

fn key() -> Result<PKey<Private>, TlsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    names: &[String],
) -> Result<X509, TlsError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name))?;
    b.set_pubkey(key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    if issuer.is_none() {
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
    } else {
        b.append_extension(BasicConstraints::new().critical().build()?)?;
        b.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        let mut san = SubjectAlternativeName::new();
        for n in names {
            if n.parse::<IpAddr>().is_ok() {
                san.ip(n);
            } else {
                san.dns(n);
            }
        }
        let ext = san.build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))?;
        b.append_extension(ext)?;
    }
    b.sign(
        issuer.map(|(_, k)| k).unwrap_or(key),
        MessageDigest::sha256(),
    )?;
    Ok(b.build())
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    hearth_common::fsutil::write_atomic(path, data, mode).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// When `tls_generate` names are configured and the certificate files do not
/// exist yet, makes the throwaway chain there. Returns whether it did.
pub fn ensure_throwaway_chain(cfg: &Config) -> Result<bool, TlsError> {
    if cfg.tls_generate.is_empty()
        || (cfg.tls_cert.exists() && cfg.tls_key.exists() && cfg.root_ca.exists())
    {
        return Ok(false);
    }
    let root_key = key()?;
    let root = cert("Hearth appliance (throwaway) root", &root_key, None, &[])?;
    let leaf_key = key()?;
    let leaf = cert(
        "hearth-attestd",
        &leaf_key,
        Some((&root, &root_key)),
        &cfg.tls_generate,
    )?;
    let root_pem = root.to_pem()?;
    let mut chain = leaf.to_pem()?;
    chain.extend_from_slice(&root_pem);
    write(&cfg.tls_key, &leaf_key.private_key_to_pem_pkcs8()?, 0o600)?;
    write(&cfg.tls_cert, &chain, 0o644)?;
    write(&cfg.root_ca, &root_pem, 0o644)?;
    Ok(true)
}

/// pkid's answer to `IssueDaemonCertificate`, with the files made of it.
struct DaemonCertificate(hearth_common::contract::pki::DaemonCertificate);

/// Asks hearth-pkid (`IssueDaemonCertificate`) for a certificate for
/// `names` with a fresh key. The error text never holds key material (a
/// decoding error names a position and the type, never the content).
async fn issue(conn: &zbus::Connection, names: &str) -> Result<DaemonCertificate, String> {
    let pki = PkiProxy::new(conn).await.map_err(|e| e.to_string())?;
    let cert = hearth_common::contract::pki::issue_daemon_certificate(&pki, names)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("hearth-pkid: {cert}");
    Ok(DaemonCertificate(cert))
}

impl DaemonCertificate {
    /// Leaf, issuing CA, then the root: what `tls_cert` holds.
    fn full_chain(&self) -> String {
        let mut chain = self.0.chain_pem.trim_end().to_string();
        chain.push('\n');
        chain.push_str(self.0.root_pem.trim_end());
        chain.push('\n');
        chain
    }

    /// Writes key (0600), chain and root, each atomically.
    fn write(&self, cfg: &Config) -> Result<(), TlsError> {
        write(&cfg.tls_key, self.0.key_pem.as_bytes(), 0o600)?;
        write(&cfg.tls_cert, self.full_chain().as_bytes(), 0o644)?;
        write(&cfg.root_ca, self.0.root_pem.as_bytes(), 0o644)
    }
}

/// When `tls_from_pkid` names are configured, asks hearth-pkid for the
/// endpoint's certificate and writes it to the configured paths. Returns
/// whether a new certificate was written.
pub async fn fetch_from_pkid(conn: &zbus::Connection, cfg: &Config) -> Result<bool, TlsError> {
    if cfg.tls_from_pkid.is_empty() {
        return Ok(false);
    }
    let names = cfg.tls_from_pkid.join(",");
    match issue(conn, &names).await {
        Ok(c) => {
            c.write(cfg)?;
            Ok(true)
        }
        Err(e) if cfg.tls_cert.exists() && cfg.tls_key.exists() && cfg.root_ca.exists() => {
            tracing::warn!(
                "hearth-pkid did not issue the endpoint certificate ({e}); \
                 serving the one from the previous start"
            );
            Ok(false)
        }
        Err(e) if !cfg.tls_generate.is_empty() => {
            tracing::warn!(
                "hearth-pkid did not issue the endpoint certificate ({e}); \
                 falling back to a throwaway chain (tls_generate)"
            );
            Ok(false)
        }
        Err(e) => Err(TlsError::Pkid(format!(
            "IssueDaemonCertificate({names:?}) failed and no earlier certificate exists: {e}"
        ))),
    }
}

/// The served certificate, as status shows it (the contract's type).
pub use hearth_common::contract::attestation::TlsCertificate as CertInfo;

/// A PEM chain and key that rustls can serve, checked to belong together.
fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<(CertifiedKey, CertInfo), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err("certificate chain: no certificate".into());
    };
    let info = cert_info(leaf).map_err(|e| format!("certificate: {e}"))?;
    // The key's PEM never goes into an error or a log: only rustls' reason.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("private key: {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("certificate and key: {e}"))?;
    Ok((ck, info))
}

fn cert_info(leaf: &CertificateDer<'_>) -> Result<CertInfo, openssl::error::ErrorStack> {
    let x = X509::from_der(leaf)?;
    let serial = x.serial_number().to_bn()?.to_hex_str()?.to_lowercase();
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(x.not_after())?;
    Ok(CertInfo {
        serial,
        not_after: x.not_after().to_string(),
        not_after_unix: i64::from(d.days) * 86_400 + i64::from(d.secs),
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What rustls asks for the certificate at every handshake: the current
/// one, swapped in place by [`renew_loop`].
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<(Arc<CertifiedKey>, CertInfo)>,
}

impl CertResolver {
    /// From the PEM files (`tls_cert`, `tls_key`). The error names the file.
    pub fn from_files(cert: &Path, key: &Path) -> Result<CertResolver, TlsError> {
        let unusable = |path: &Path, reason: String| TlsError::Unusable {
            path: path.display().to_string(),
            reason,
        };
        let chain_pem = std::fs::read(cert).map_err(|e| unusable(cert, e.to_string()))?;
        let key_pem = std::fs::read(key).map_err(|e| unusable(key, e.to_string()))?;
        let (ck, info) = certified_key(&chain_pem, &key_pem).map_err(|e| {
            let path = if e.starts_with("private key") {
                key
            } else {
                cert
            };
            unusable(path, e)
        })?;
        Ok(CertResolver {
            current: RwLock::new((Arc::new(ck), info)),
        })
    }

    /// The certificate served now.
    pub fn info(&self) -> CertInfo {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn swap(&self, ck: CertifiedKey, info: CertInfo) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (Arc::new(ck), info);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// One renewal check: when fewer than `tls_renew_before_days` of the served
/// certificate remain, asks pkid for a new one, writes the files and swaps
/// it in. Returns the new certificate, or None when none was due.
pub async fn renew_if_due(
    conn: &zbus::Connection,
    cfg: &Config,
    resolver: &CertResolver,
) -> Result<Option<CertInfo>, TlsError> {
    let served = resolver.info();
    let margin = i64::from(cfg.tls_renew_before_days) * 86_400;
    if served.not_after_unix - now_unix() > margin {
        return Ok(None);
    }
    let issued = issue(conn, &cfg.tls_from_pkid.join(","))
        .await
        .map_err(TlsError::Pkid)?;
    let (ck, info) = certified_key(issued.full_chain().as_bytes(), issued.0.key_pem.as_bytes())
        .map_err(|e| TlsError::Pkid(format!("unusable certificate: {e}")))?;
    // On disk first: a restart serves what is served now.
    issued.write(cfg)?;
    resolver.swap(ck, info.clone());
    Ok(Some(info))
}

/// Checks every `tls_check_interval_s` and renews when due (see
/// [`renew_if_due`]); on failure keeps serving the current certificate,
/// warns, and tries again at the next check. Runs until dropped.
pub async fn renew_loop(
    conn: zbus::Connection,
    cfg: Config,
    resolver: Arc<CertResolver>,
    engine: Arc<Engine>,
) {
    let interval = Duration::from_secs(cfg.tls_check_interval_s.max(1));
    loop {
        tokio::time::sleep(interval).await;
        match renew_if_due(&conn, &cfg, &resolver).await {
            Ok(Some(info)) => {
                tracing::info!(
                    serial = %info.serial,
                    not_after = %info.not_after,
                    "endpoint certificate renewed by hearth-pkid; serving it from now on"
                );
                engine.set_tls(info);
            }
            Ok(None) => {}
            Err(e) => {
                let served = resolver.info();
                tracing::warn!(
                    serial = %served.serial,
                    not_after = %served.not_after,
                    "renewing the endpoint certificate failed ({e}); still serving the \
                     current one, retrying in {} s",
                    interval.as_secs()
                );
            }
        }
    }
}

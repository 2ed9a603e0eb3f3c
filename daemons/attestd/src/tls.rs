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

use std::net::IpAddr;
use std::path::Path;

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

use crate::config::Config;

/// Generating or writing the chain failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// OpenSSL refused.
    #[error("generating the throwaway TLS chain: {0}")]
    Ssl(#[from] openssl::error::ErrorStack),
    /// hearth-pkid did not issue the certificate.
    #[error("hearth-pkid: {0}")]
    Pkid(String),
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

/// The part of pkid's `DaemonCertificate` document used here.
#[derive(serde::Deserialize)]
struct DaemonCertificate {
    chain_pem: String,
    key_pem: String,
    root_pem: String,
}

/// When `tls_from_pkid` names are configured, asks hearth-pkid for the
/// endpoint's certificate and writes it to the configured paths. Returns
/// whether a new certificate was written.
pub async fn fetch_from_pkid(conn: &zbus::Connection, cfg: &Config) -> Result<bool, TlsError> {
    if cfg.tls_from_pkid.is_empty() {
        return Ok(false);
    }
    let pki = hearth_common::names::PKI;
    let names = cfg.tls_from_pkid.join(",");
    let issued = async {
        let reply = conn
            .call_method(
                Some(pki.bus_name),
                pki.path,
                Some(pki.bus_name),
                "IssueDaemonCertificate",
                &(names.as_str(),),
            )
            .await
            .map_err(|e| e.to_string())?;
        let doc: String = reply.body().deserialize().map_err(|e| e.to_string())?;
        serde_json::from_str::<DaemonCertificate>(&doc).map_err(|e| e.to_string())
    }
    .await;
    match issued {
        Ok(c) => {
            let mut chain = c.chain_pem.trim_end().to_string();
            chain.push('\n');
            chain.push_str(c.root_pem.trim_end());
            chain.push('\n');
            write(&cfg.tls_key, c.key_pem.as_bytes(), 0o600)?;
            write(&cfg.tls_cert, chain.as_bytes(), 0o644)?;
            write(&cfg.root_ca, c.root_pem.as_bytes(), 0o644)?;
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

//! Verifying signed playbooks: trust anchors, chain, codeSigning EKU,
//! validity, CRL revocation, and anti-rollback.
//!
//! The chain is checked by rustls-webpki (path building to a configured
//! anchor, basic constraints, key usage, validity at the given time, EKU
//! required on the signer, revocation of every certificate in the path by the
//! configured CRLs when one covers its issuer; a CRL is itself verified with
//! its issuer's key). The DSSE signature is then checked with the signer
//! certificate's key. Anchors are a vendor root shipped with the image and
//! the appliance's own CA.
//!
//! A refusal names the file and the reason; nothing partial is ever accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use serde::{Deserialize, Serialize};
use webpki::{
    EndEntityCert, KeyUsage, OwnedCertRevocationList, RevocationCheckDepth,
    RevocationOptionsBuilder, UnknownStatusPolicy,
};

use crate::dsse::{self, Envelope, PAYLOAD_TYPE};
use crate::format::Playbook;

/// id-kp-codeSigning (1.3.6.1.5.5.7.3.3), DER content octets.
pub const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// The kind of a refusal, stable for logs, JSON and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// Not a readable envelope (or not JSON at all).
    Malformed,
    /// No signature, or a bare TOML file.
    Unsigned,
    /// The signature does not match the payload (tampered, or another key).
    Tampered,
    /// The chain does not lead to a configured trust anchor.
    UntrustedSigner,
    /// The signer lacks the codeSigning extended key usage.
    NotCodeSigning,
    /// A certificate of the chain is outside its validity window.
    Expired,
    /// A certificate of the chain is revoked by a configured CRL.
    Revoked,
    /// Any other chain problem.
    BadChain,
    /// The payload type is not the one expected (a playbook, or the
    /// language file for its own file name).
    WrongPayloadType,
    /// The payload is not a valid playbook.
    BadPlaybook,
    /// The file name does not match the playbook's id.
    WrongName,
    /// Older than (or different at the same version from) an accepted one.
    RolledBack,
    /// The payload of the signed language file is not UTF-8 TOML.
    BadLanguage,
}

impl RefusalKind {
    /// The kebab-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalKind::Malformed => "malformed",
            RefusalKind::Unsigned => "unsigned",
            RefusalKind::Tampered => "tampered",
            RefusalKind::UntrustedSigner => "untrusted-signer",
            RefusalKind::NotCodeSigning => "not-code-signing",
            RefusalKind::Expired => "expired",
            RefusalKind::Revoked => "revoked",
            RefusalKind::BadChain => "bad-chain",
            RefusalKind::WrongPayloadType => "wrong-payload-type",
            RefusalKind::BadPlaybook => "bad-playbook",
            RefusalKind::WrongName => "wrong-name",
            RefusalKind::RolledBack => "rolled-back",
            RefusalKind::BadLanguage => "bad-language",
        }
    }
}

/// A playbook file that was refused: which file, what kind, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The file.
    pub file: PathBuf,
    /// The kind.
    pub kind: RefusalKind,
    /// The details.
    pub reason: String,
}

impl std::error::Error for Refusal {}

/// The refusal as the bus contract lists it (`Catalog`'s `refused`): the
/// file as text, the kind's stable name.
impl From<&Refusal> for hearth_common::contract::intent::Refusal {
    fn from(r: &Refusal) -> Self {
        hearth_common::contract::intent::Refusal {
            file: r.file.display().to_string(),
            kind: r.kind.as_str().to_string(),
            reason: r.reason.clone(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: refused ({}): {}",
            self.file.display(),
            self.kind.as_str(),
            self.reason
        )
    }
}

/// Trust configuration: where the anchors and CRLs are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// PEM files of vendor roots shipped with the image.
    #[serde(default)]
    pub vendor_roots: Vec<PathBuf>,
    /// PEM file of the appliance's own CA root (hearth-pkid's `root.pem`:
    /// the signer its ceremony made). Skipped only while the file does not
    /// exist yet; a file that exists but cannot be read is an error.
    #[serde(default)]
    pub appliance_ca: Option<PathBuf>,
    /// CRL files (PEM or DER). A configured CRL that cannot be read or
    /// parsed stops loading: revocation is never silently skipped.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// The appliance CA's CRL (hearth-pkid's `crl.pem`). Skipped, like
    /// `appliance_ca`, only while the file does not exist yet (no CA,
    /// nothing issued, nothing revoked). Once it exists it must be readable
    /// and parse: a CRL that cannot be reached (permissions of the file or
    /// of a directory above it), is a directory or does not parse stops
    /// loading, naming the file.
    #[serde(default)]
    pub appliance_crl: Option<PathBuf>,
}

/// Why the trust configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct TrustError {
    /// The file.
    pub file: PathBuf,
    /// Why.
    pub reason: String,
}

/// Whether an optional trust file is there. Only "it does not exist" means
/// absent; any other failure to look at it (permission denied on the file
/// or a directory above it, a path through a file) is an error naming it:
/// `Path::exists()` would call such a file absent and skip revocation.
fn present(file: &Path, what: &str) -> Result<bool, TrustError> {
    match std::fs::metadata(file) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(TrustError {
            file: file.into(),
            reason: format!(
                "{what} is configured but cannot be checked ({e}); refusing every playbook rather than skipping it"
            ),
        }),
    }
}

/// Anchors and CRLs, ready to verify envelopes.
#[derive(Debug)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<webpki::CertRevocationList<'static>>,
}

/// What a verified envelope of any payload type yields.
#[derive(Debug, Clone)]
pub struct VerifiedPayload {
    /// The payload bytes, as signed.
    pub payload: Vec<u8>,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

/// What a verified playbook envelope yields.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The playbook.
    pub playbook: Playbook,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

impl TrustStore {
    /// Loads anchors and CRLs from the files named in `cfg`.
    pub fn load(cfg: &TrustConfig) -> Result<Self, TrustError> {
        let mut anchors = Vec::new();
        let mut files: Vec<&Path> = cfg.vendor_roots.iter().map(|p| p.as_path()).collect();
        if let Some(ca) = &cfg.appliance_ca {
            if present(ca, "the appliance CA")? {
                files.push(ca);
            }
        }
        for f in files {
            let bytes = std::fs::read(f).map_err(|e| TrustError {
                file: f.into(),
                reason: format!("cannot read: {e}"),
            })?;
            let certs = dsse::read_certs(&bytes).map_err(|reason| TrustError {
                file: f.into(),
                reason,
            })?;
            if certs.is_empty() {
                return Err(TrustError {
                    file: f.into(),
                    reason: "no certificate".into(),
                });
            }
            anchors.extend(certs);
        }
        let mut crls = Vec::new();
        let mut crl_files: Vec<PathBuf> = cfg.crls.clone();
        if let Some(c) = &cfg.appliance_crl {
            if present(c, "the appliance CRL")? {
                crl_files.push(c.clone());
            }
        }
        for f in &crl_files {
            let bytes = std::fs::read(f).map_err(|e| TrustError {
                file: f.clone(),
                reason: format!("cannot read: {e}"),
            })?;
            crls.push(bytes);
        }
        Self::from_der(&anchors, &crls).map_err(|(i, reason)| TrustError {
            file: if i < anchors.len() {
                PathBuf::from("trust anchor")
            } else {
                crl_files
                    .get(i - anchors.len())
                    .cloned()
                    .unwrap_or_default()
            },
            reason,
        })
    }

    /// Builds a store from DER anchors and DER or PEM CRLs. The error gives
    /// the index (anchors first, then CRLs) and the reason.
    pub fn from_der(anchors: &[Vec<u8>], crls: &[Vec<u8>]) -> Result<Self, (usize, String)> {
        let mut out = Vec::new();
        for (i, a) in anchors.iter().enumerate() {
            let der = CertificateDer::from(a.as_slice());
            let ta = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| (i, format!("not a usable trust anchor: {e}")))?;
            out.push(ta.to_owned());
        }
        let mut lists = Vec::new();
        for (j, c) in crls.iter().enumerate() {
            let der = if c.starts_with(b"-----") {
                CertificateRevocationListDer::from_pem_slice(c)
                    .map_err(|e| (anchors.len() + j, format!("not a PEM CRL: {e:?}")))?
                    .to_vec()
            } else {
                c.clone()
            };
            let crl = OwnedCertRevocationList::from_der(&der)
                .map_err(|e| (anchors.len() + j, format!("not a CRL: {e}")))?;
            lists.push(webpki::CertRevocationList::Owned(crl));
        }
        Ok(TrustStore {
            anchors: out,
            crls: lists,
        })
    }

    /// Verifies an envelope file's bytes at time `now`: JSON, the payload
    /// type (`payload_type`, nothing else), the signature and the signer's
    /// chain. The payload itself is not interpreted.
    pub fn verify_envelope(
        &self,
        file: &Path,
        bytes: &[u8],
        payload_type: &str,
        now: UnixTime,
    ) -> Result<VerifiedPayload, Refusal> {
        let refuse = |kind: RefusalKind, reason: String| Refusal {
            file: file.to_path_buf(),
            kind,
            reason,
        };
        let env: Envelope = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                let looks_toml = std::str::from_utf8(bytes)
                    .map(|t| t.contains("id =") || t.contains("[[steps]]"))
                    .unwrap_or(false);
                return Err(if looks_toml {
                    refuse(
                        RefusalKind::Unsigned,
                        "a bare playbook, not a signed envelope".into(),
                    )
                } else {
                    refuse(RefusalKind::Malformed, format!("not a DSSE envelope: {e}"))
                });
            }
        };
        if env.payload_type != payload_type {
            return Err(refuse(
                RefusalKind::WrongPayloadType,
                format!(
                    "payload type {:?}, expected {payload_type}",
                    env.payload_type
                ),
            ));
        }
        let payload = env.payload_bytes().map_err(|e| {
            refuse(
                RefusalKind::Malformed,
                format!("payload is not base64: {e}"),
            )
        })?;
        if env.signatures.is_empty() {
            return Err(refuse(
                RefusalKind::Unsigned,
                "the envelope has no signature".into(),
            ));
        }
        let pae = dsse::pae(&env.payload_type, &payload);
        let mut worst: Option<Refusal> = None;
        let mut signer = None;
        for s in &env.signatures {
            match self.check_signature(s, &pae, now) {
                Ok(fp) => {
                    signer = Some(fp);
                    break;
                }
                Err((kind, reason)) => {
                    // Keep the first refusal: with one signature it is the one.
                    worst.get_or_insert(refuse(kind, reason));
                }
            }
        }
        let signer = match signer {
            Some(s) => s,
            None => {
                return Err(worst.unwrap_or_else(|| {
                    refuse(RefusalKind::Unsigned, "no usable signature".into())
                }))
            }
        };
        Ok(VerifiedPayload { payload, signer })
    }

    /// Verifies an envelope file's bytes at time `now` and parses its
    /// playbook. Anti-rollback is checked separately ([`RollbackState`]).
    pub fn verify(&self, file: &Path, bytes: &[u8], now: UnixTime) -> Result<Verified, Refusal> {
        let refuse = |kind: RefusalKind, reason: String| Refusal {
            file: file.to_path_buf(),
            kind,
            reason,
        };
        let VerifiedPayload { payload, signer } = self
            .verify_envelope(file, bytes, PAYLOAD_TYPE, now)
            .map_err(|mut r| {
                if r.kind == RefusalKind::WrongPayloadType
                    && r.reason.contains(dsse::LANGUAGE_PAYLOAD_TYPE)
                {
                    r.reason.push_str(&format!(
                        " (a signed language file, not a playbook: the catalog loads it as {})",
                        crate::catalog::LANGUAGE_FILE
                    ));
                }
                r
            })?;
        let playbook = Playbook::parse(&payload)
            .map_err(|e| refuse(RefusalKind::BadPlaybook, e.to_string()))?;
        if let Some(name) = file.file_name().and_then(|n| n.to_str()) {
            let expected = format!("{}.dsse.json", playbook.spec.id);
            if name.ends_with(".dsse.json") && name != expected {
                return Err(refuse(
                    RefusalKind::WrongName,
                    format!("holds playbook {} but is named {name}", playbook.spec.id),
                ));
            }
        }
        Ok(Verified { playbook, signer })
    }

    fn check_signature(
        &self,
        s: &dsse::Signature,
        pae: &[u8],
        now: UnixTime,
    ) -> Result<String, (RefusalKind, String)> {
        let mut chain = Vec::new();
        for (i, c) in s.cert_chain.iter().enumerate() {
            chain.push(dsse::b64(c).map_err(|e| {
                (
                    RefusalKind::Malformed,
                    format!("certificate {i} is not base64: {e}"),
                )
            })?);
        }
        let Some(leaf_der) = chain.first() else {
            return Err((
                RefusalKind::UntrustedSigner,
                "the signature carries no certificate".into(),
            ));
        };
        let sig = dsse::b64(&s.sig).map_err(|e| {
            (
                RefusalKind::Malformed,
                format!("signature is not base64: {e}"),
            )
        })?;
        let leaf_cert = CertificateDer::from(leaf_der.as_slice());
        let ee = EndEntityCert::try_from(&leaf_cert)
            .map_err(|e| (RefusalKind::BadChain, format!("signer certificate: {e}")))?;
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        });
        // The chain may hold P-384 CAs (hearth-pkid's root is P-384, signing
        // its issuing CA with ecdsa-with-SHA384); the envelope's own
        // signature stays ECDSA P-256 over SHA-256, checked below.
        let algs: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
            webpki::ring::ECDSA_P256_SHA256,
            webpki::ring::ECDSA_P256_SHA384,
            webpki::ring::ECDSA_P384_SHA256,
            webpki::ring::ECDSA_P384_SHA384,
        ];
        ee.verify_for_usage(
            algs,
            &self.anchors,
            &intermediates,
            now,
            SignerEku::default(),
            revocation,
            None,
        )
        .map_err(map_webpki)?;
        ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, pae, &sig)
            .map_err(|e| {
                (
                    RefusalKind::Tampered,
                    format!("the signature does not match the payload ({e})"),
                )
            })?;
        Ok(dsse::sha256_hex(leaf_der))
    }
}

/// The EKU rule for playbook signers: the signer (end-entity) certificate
/// MUST carry codeSigning; a CA certificate in the path may carry no EKU at
/// all, and when it carries one it must include codeSigning.
///
/// webpki calls the validator for each certificate as it builds the path,
/// the end entity first (`build_chain_inner` checks the path's head before
/// looking for its issuer), so the first call is the signer's.
#[derive(Default)]
struct SignerEku {
    calls: std::cell::Cell<usize>,
}

impl webpki::ExtendedKeyUsageValidator for SignerEku {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let n = self.calls.get();
        self.calls.set(n + 1);
        if n == 0 {
            KeyUsage::required(EKU_CODE_SIGNING).validate(iter)
        } else {
            KeyUsage::required_if_present(EKU_CODE_SIGNING).validate(iter)
        }
    }
}

#[allow(deprecated)]
fn map_webpki(e: webpki::Error) -> (RefusalKind, String) {
    use webpki::Error as E;
    let kind = match &e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            RefusalKind::Expired
        }
        E::CertRevoked => RefusalKind::Revoked,
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
            RefusalKind::NotCodeSigning
        }
        E::UnknownIssuer => RefusalKind::UntrustedSigner,
        _ => RefusalKind::BadChain,
    };
    let reason = match kind {
        RefusalKind::Expired => format!("a certificate of the chain is not valid now ({e})"),
        RefusalKind::Revoked => {
            "the signer's certificate (or its issuer) is revoked by the CRL".into()
        }
        RefusalKind::NotCodeSigning => {
            format!("the signer certificate lacks the codeSigning extended key usage ({e})")
        }
        RefusalKind::UntrustedSigner => {
            "the signer's chain does not lead to a configured trust anchor".into()
        }
        _ => format!("certificate chain: {e}"),
    };
    (kind, reason)
}

/// The highest accepted version (and its digest) of each playbook id,
/// persisted atomically. A validly signed older version never replaces a
/// newer one; the same version with other bytes is refused too.
#[derive(Debug, Default)]
pub struct RollbackState {
    path: Option<PathBuf>,
    seen: BTreeMap<String, Seen>,
}

/// One entry of the anti-rollback state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Highest accepted version.
    pub version: u64,
    /// Digest of the playbook accepted at that version.
    pub digest: String,
}

impl RollbackState {
    /// Loads the state file (absent: empty).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let seen = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| TrustError {
                file: path.into(),
                reason: format!("corrupt anti-rollback state: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(TrustError {
                    file: path.into(),
                    reason: format!("cannot read: {e}"),
                })
            }
        };
        Ok(RollbackState {
            path: Some(path.into()),
            seen,
        })
    }

    /// An in-memory state (tests, `playbook verify` without a state).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The recorded entry for `id`.
    pub fn get(&self, id: &str) -> Option<&Seen> {
        self.seen.get(id)
    }

    /// Refuses a playbook older than the recorded one, or different at the
    /// same version.
    pub fn check(&self, file: &Path, pb: &Playbook) -> Result<(), Refusal> {
        let id = &pb.spec.id;
        match self.seen.get(id) {
            Some(s) if pb.spec.version < s.version => Err(Refusal {
                file: file.into(),
                kind: RefusalKind::RolledBack,
                reason: format!(
                    "{id} version {} is older than the accepted version {}",
                    pb.spec.version, s.version
                ),
            }),
            Some(s) if pb.spec.version == s.version && pb.digest != s.digest => Err(Refusal {
                file: file.into(),
                kind: RefusalKind::RolledBack,
                reason: format!(
                    "{id} version {} differs from the accepted playbook of the same version",
                    pb.spec.version
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Records an accepted playbook (after [`check`](Self::check)) and
    /// writes the state file atomically when it changed.
    pub fn record(&mut self, pb: &Playbook) -> std::io::Result<()> {
        let entry = Seen {
            version: pb.spec.version,
            digest: pb.digest.clone(),
        };
        if self.seen.get(&pb.spec.id) == Some(&entry) {
            return Ok(());
        }
        let previous = self.seen.insert(pb.spec.id.clone(), entry);
        if let Some(p) = &self.path {
            if let Err(e) = hearth_common::fsutil::write_json_atomic(p, &self.seen) {
                // Keep memory and disk in agreement.
                match previous {
                    Some(prev) => self.seen.insert(pb.spec.id.clone(), prev),
                    None => self.seen.remove(&pb.spec.id),
                };
                return Err(e);
            }
        }
        Ok(())
    }
}

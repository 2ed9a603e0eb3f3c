//! The CA engine: key ceremony, issuance, revocation, CRL, inventory.
//!
//! State directory layout (all written atomically):
//! * `root.pem`, `issuing.pem`: the CA certificates (public);
//! * `playbook-signer.pem`: the playbook signer's certificate (its key is
//!   `<prefix>-playbook-signer` in the token);
//! * `inventory.json` (0600): issued certificates and the CRL number;
//! * `crl.pem` unless `crl.path` says otherwise;
//! * `export/` unless `issue.export_dir` says otherwise: keys generated for
//!   LAN devices, with their chains (0600).
//!
//! The CA keys are `<prefix>-root` and `<prefix>-issuing` in the token.
//!
//! Here: [`Engine`], opening it and loading the CA from the state directory.
//! One idea per module: `ceremony` (the root and issuing keys and
//! certificates), `issuance` (leaves, names, lifetimes, the inventory),
//! `crl` (revocation and the CRL), `signer_key` (the playbook signer's key,
//! certificate and signatures).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_common::fsutil::write_atomic;
use hearth_hsm::{AuthPin, KeyRef, Token};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CidrSubnet,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, NameConstraints, PublicKeyData, RevokedCertParams, SerialNumber,
};
use serde::Serialize;
use sha2::Digest;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::config::{PkiConfig, MAX_LEAF_DAYS};
use crate::csr::{self, SanName};
use crate::inventory::{self, Inventory, KeySource, Profile, Record, Revocation};
use crate::signer::HsmKey;
use crate::PkiError;

mod ceremony;
mod crl;
mod issuance;
mod signer_key;

use signer_key::PlaybookSigner;

/// Subject CN of the root.
pub const ROOT_CN: &str = "Hearth Root CA";
/// Subject CN of the issuing intermediate.
pub const ISSUING_CN: &str = "Hearth Issuing CA";

/// The loaded CA: certificates and an issuer backed by the token.
struct Ca {
    root_pem: String,
    issuing_pem: String,
    issuing_not_after: OffsetDateTime,
    issuer: Issuer<'static, HsmKey>,
    signer: Option<PlaybookSigner>,
}

/// A playbook signature made in the token.
#[derive(Debug, Clone, Serialize)]
pub struct PlaybookSignature {
    /// Always `ecdsa-p256-sha256`.
    pub algorithm: &'static str,
    /// Base64 of the DER `ECDSA-Sig-Value` over the payload's bytes.
    pub signature: String,
    /// Serial of the signer certificate, hex.
    pub serial: String,
    /// Signer certificate then the issuing CA, PEM.
    pub chain_pem: String,
}

/// What `init` did and what the CA is.
#[derive(Debug, Clone, Serialize)]
pub struct CaInfo {
    /// True when this call created anything (false: the CA already existed).
    pub created: bool,
    /// SHA-256 fingerprint of the root certificate (hex).
    pub root_sha256: String,
    /// Root certificate, PEM.
    pub root_pem: String,
    /// Issuing certificate, PEM.
    pub issuing_pem: String,
    /// Permitted DNS zones.
    pub zones: Vec<String>,
    /// Permitted IP ranges.
    pub subnets: Vec<String>,
}

/// A certificate just issued.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The inventory record.
    #[serde(flatten)]
    pub record: Record,
    /// Leaf then issuing certificate, PEM.
    pub chain_pem: String,
    /// For keys generated here: where the key was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    /// For keys generated here: where the chain was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<PathBuf>,
}

/// A daemon certificate with its freshly generated key.
#[derive(Debug)]
pub struct DaemonCertificate {
    /// Serial number, hex.
    pub serial: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// PKCS#8 private key, PEM (zeroized on drop).
    pub key_pem: Zeroizing<String>,
    /// Leaf then issuing certificate, PEM.
    pub chain_pem: String,
}

/// One line of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Serial, hex.
    pub serial: String,
    /// Names.
    pub names: Vec<String>,
    /// Profile.
    pub profile: Profile,
    /// `valid`, `revoked` or `expired`.
    pub status: &'static str,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// A CA certificate loaded from the state directory with its token key:
/// (PEM, DER, key, notAfter).
type LoadedPair = (String, Vec<u8>, HsmKey, OffsetDateTime);

const KEY_TYPE_P256: &str = "ec-p256";

/// The appliance CA.
pub struct Engine {
    cfg: PkiConfig,
    state_dir: PathBuf,
    token: Arc<Token>,
    ca: Option<Ca>,
    inventory: Inventory,
    crl_next_update: Option<OffsetDateTime>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("state_dir", &self.state_dir)
            .field("token", &self.token.label())
            .field("initialized", &self.ca.is_some())
            .finish()
    }
}

fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

fn random_serial() -> Result<Vec<u8>, PkiError> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut b = [0u8; 16];
    // A non-zero first byte keeps the DER integer exactly 128 bits (plus a
    // sign byte when the top bit is set), so the hex we record is the serial
    // every tool prints.
    while b[0] == 0 {
        rng.fill(&mut b)
            .map_err(|_| PkiError::Invalid("system random generator failed".into()))?;
    }
    Ok(b.to_vec())
}

fn pem_cert(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn der_of_pem(path: &Path, text: &str) -> Result<Vec<u8>, PkiError> {
    let p = pem::parse(text).map_err(|e| PkiError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    Ok(p.into_contents())
}

/// The uncompressed EC point in a certificate's SubjectPublicKeyInfo.
fn cert_public_key(path: &Path, der: &[u8]) -> Result<(Vec<u8>, OffsetDateTime), PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let not_after = cert.validity().not_after.to_datetime();
    Ok((
        cert.public_key().subject_public_key.data.to_vec(),
        not_after,
    ))
}

/// A certificate's serial, lower-case hex as the inventory records it.
fn cert_serial(path: &Path, der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let raw = cert.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    Ok(hex::encode(&raw[start..]))
}

fn dn(org: &str, cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, org);
    d.push(DnType::CommonName, cn);
    d
}
impl Engine {
    /// Opens the CA: reads the PIN (systemd credential or `hsm.pin_file`),
    /// logs in to the token, loads the state in `state_dir`, and runs the
    /// ceremony when `init_on_start` asks for it.
    pub fn open(cfg: &PkiConfig, state_dir: &Path) -> Result<Engine, PkiError> {
        cfg.validate()?;
        let pin = hearth_hsm::pin::load(cfg.hsm.pin_file.as_deref())
            .map_err(hearth_hsm::HsmError::from)?;
        Self::open_with_pin(cfg, state_dir, &pin)
    }

    /// [`Engine::open`] with a PIN already read.
    pub fn open_with_pin(
        cfg: &PkiConfig,
        state_dir: &Path,
        pin: &AuthPin,
    ) -> Result<Engine, PkiError> {
        cfg.validate()?;
        let token = Arc::new(Token::open(&cfg.hsm.module, &cfg.hsm.token_label, pin)?);
        let inventory = Inventory::load(&inventory::path(state_dir))?;
        let mut engine = Engine {
            cfg: cfg.clone(),
            state_dir: state_dir.to_path_buf(),
            token,
            ca: None,
            inventory,
            crl_next_update: None,
        };
        engine.ca = engine.load_ca()?;
        if engine.ca.is_none() && cfg.init_on_start {
            engine.init()?;
        } else if engine.ca.is_some() {
            engine.refresh_crl_if_due()?;
        }
        Ok(engine)
    }

    fn root_path(&self) -> PathBuf {
        self.state_dir.join("root.pem")
    }

    fn issuing_path(&self) -> PathBuf {
        self.state_dir.join("issuing.pem")
    }

    fn root_label(&self) -> String {
        format!("{}-root", self.cfg.hsm.key_label_prefix)
    }

    fn issuing_label(&self) -> String {
        format!("{}-issuing", self.cfg.hsm.key_label_prefix)
    }

    /// Reads a CA certificate from `path` and finds its key (`label`) in the
    /// token; the two must match. `None` when the file does not exist.
    fn load_pair(&self, path: &Path, label: &str) -> Result<Option<LoadedPair>, PkiError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PkiError::io("cannot read", path)(e)),
        };
        let der = der_of_pem(path, &text)?;
        let (point, not_after) = cert_public_key(path, &der)?;
        let key = self.token.find_key(label)?.ok_or_else(|| {
            PkiError::Conflict(format!(
                "{} exists but token {:?} holds no key labelled {label:?}: wrong token, or the key was deleted",
                path.display(),
                self.token.label()
            ))
        })?;
        if key.public_point != point {
            return Err(PkiError::Conflict(format!(
                "the key {label:?} in token {:?} does not match {}",
                self.token.label(),
                path.display()
            )));
        }
        Ok(Some((
            text,
            der,
            HsmKey::new(self.token.clone(), key),
            not_after,
        )))
    }

    fn load_ca(&self) -> Result<Option<Ca>, PkiError> {
        if self
            .load_pair(&self.root_path(), &self.root_label())?
            .is_none()
        {
            return Ok(None);
        }
        let Some((root_pem, _, _, _)) = self.load_pair(&self.root_path(), &self.root_label())?
        else {
            return Ok(None);
        };
        let Some((issuing_pem, issuing_der, issuing_key, issuing_not_after)) =
            self.load_pair(&self.issuing_path(), &self.issuing_label())?
        else {
            return Ok(None);
        };
        let issuer = Issuer::from_ca_cert_der(&issuing_der.into(), issuing_key)?;
        let signer = self
            .load_pair(&self.signer_path(), &self.signer_label())?
            .map(|(pem, der, key, not_after)| {
                Ok::<_, PkiError>(PlaybookSigner {
                    serial: cert_serial(&self.signer_path(), &der)?,
                    pem,
                    not_after,
                    key,
                })
            })
            .transpose()?;
        Ok(Some(Ca {
            root_pem,
            issuing_pem,
            issuing_not_after,
            issuer,
            signer,
        }))
    }

    /// The configured scopes of the service users, by user name.
    pub fn services(&self) -> &std::collections::BTreeMap<String, crate::config::ServiceScope> {
        &self.cfg.services
    }

    fn ca(&self) -> Result<&Ca, PkiError> {
        self.ca.as_ref().ok_or_else(|| {
            PkiError::NotFound("the CA is not initialized (run `hearthctl pki init`)".into())
        })
    }

    /// The CA's certificates and constraints.
    pub fn info(&self) -> Result<CaInfo, PkiError> {
        let ca = self.ca()?;
        let root_der = der_of_pem(&self.root_path(), &ca.root_pem)?;
        Ok(CaInfo {
            created: false,
            root_sha256: hex::encode(sha2::Sha256::digest(&root_der)),
            root_pem: ca.root_pem.clone(),
            issuing_pem: ca.issuing_pem.clone(),
            zones: self.cfg.ca.zones.iter().map(|z| z.to_string()).collect(),
            subnets: self.cfg.ca.subnets.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> Result<String, PkiError> {
        Ok(self.ca()?.root_pem.clone())
    }

    /// The issuing certificate, PEM.
    pub fn issuing_pem(&self) -> Result<String, PkiError> {
        Ok(self.ca()?.issuing_pem.clone())
    }

    /// The token in use.
    pub fn token(&self) -> &Arc<Token> {
        &self.token
    }

    /// The key the token holds for the issuing CA (for tests and tools).
    pub fn issuing_key(&self) -> Result<KeyRef, PkiError> {
        Ok(self.ca()?.issuer.key().key().clone())
    }
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(PkiError::io("cannot create", dir))
}

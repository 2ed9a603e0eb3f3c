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

/// The playbook signer: a key in the token and its codeSigning certificate.
struct PlaybookSigner {
    pem: String,
    serial: String,
    not_after: OffsetDateTime,
    key: HsmKey,
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

/// Renew the playbook signer's certificate when fewer days than this remain.
const SIGNER_RENEW_DAYS: i64 = 30;

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

const KEY_TYPE_P256: &str = "ec-p256";

/// A leaf signed for a host-generated key, not yet recorded.
struct Leaf {
    names: Vec<SanName>,
    der: Vec<u8>,
    serial: String,
    window: (OffsetDateTime, OffsetDateTime),
    key: KeyPair,
}

/// A CA certificate loaded from the state directory with its token key:
/// (PEM, DER, key, notAfter).
type LoadedPair = (String, Vec<u8>, HsmKey, OffsetDateTime);

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

    fn signer_path(&self) -> PathBuf {
        self.state_dir.join("playbook-signer.pem")
    }
    fn signer_label(&self) -> String {
        format!("{}-playbook-signer", self.cfg.hsm.key_label_prefix)
    }

    /// The DNS name in the playbook signer's certificate.
    fn signer_name(&self) -> Result<SanName, PkiError> {
        let zone = self
            .cfg
            .ca
            .zones
            .first()
            .ok_or_else(|| PkiError::Invalid("ca.zones is empty".into()))?;
        SanName::parse("name", &format!("playbook-signer.{}", zone.as_str()))
    }

    /// Makes sure the playbook signer exists and its certificate is neither
    /// revoked nor about to expire: creates its key in the token when
    /// missing and (re-)certifies it. Returns whether anything was created.
    fn ensure_playbook_signer(&mut self) -> Result<bool, PkiError> {
        let ca = self.ca()?;
        if let Some(s) = &ca.signer {
            if self
                .inventory
                .find(&s.serial)
                .iter()
                .any(|r| r.revoked.is_some())
            {
                return Err(PkiError::Conflict(format!(
                    "the playbook signer's certificate {} is revoked; delete {} and the token key {:?} to make a new signer",
                    s.serial,
                    self.signer_path().display(),
                    self.signer_label()
                )));
            }
            if s.not_after - now() > Duration::days(SIGNER_RENEW_DAYS) {
                return Ok(false);
            }
        }
        let label = self.signer_label();
        let key = match self.token.find_key(&label)? {
            Some(k) => k,
            None => self
                .token
                .generate_ec_key(&label, hearth_hsm::Curve::P256)?,
        };
        if key.curve != hearth_hsm::Curve::P256 {
            return Err(PkiError::Conflict(format!(
                "token key {label:?} is not a P-256 key"
            )));
        }
        let key = HsmKey::new(self.token.clone(), key);
        let names = vec![self.signer_name()?];
        self.check_names(&names)?;
        let (der, serial, nb, na) =
            self.sign_leaf(&names, &key, false, MAX_LEAF_DAYS, Profile::PlaybookSigner)?;
        let path = self.signer_path();
        write_atomic(&path, pem_cert(&der).as_bytes(), 0o644)
            .map_err(PkiError::io("cannot write", &path))?;
        let record = self.record(
            &names,
            &der,
            serial,
            (nb, na),
            Profile::PlaybookSigner,
            KEY_TYPE_P256.into(),
            KeySource::Token,
        )?;
        let signer = PlaybookSigner {
            pem: record.certificate.clone(),
            serial: record.serial.clone(),
            not_after: record.not_after,
            key,
        };
        if let Some(ca) = self.ca.as_mut() {
            ca.signer = Some(signer);
        }
        tracing::info!(serial = %record.serial, "certified the playbook signer");
        Ok(true)
    }

    /// Signs `payload` (its bytes, exactly) with the playbook-signer key in
    /// the token: ECDSA P-256 over SHA-256, DER, base64. Creates or renews
    /// the signer's certificate first when needed.
    pub fn sign_playbook(&mut self, payload: &[u8]) -> Result<PlaybookSignature, PkiError> {
        use base64::Engine as _;
        self.ensure_playbook_signer()?;
        let ca = self.ca()?;
        let signer = ca
            .signer
            .as_ref()
            .ok_or_else(|| PkiError::NotFound("no playbook signer".into()))?;
        let der = self.token.sign(signer.key.key(), payload)?;
        Ok(PlaybookSignature {
            algorithm: "ecdsa-p256-sha256",
            signature: base64::engine::general_purpose::STANDARD.encode(der),
            serial: signer.serial.clone(),
            chain_pem: format!("{}{}", signer.pem, ca.issuing_pem),
        })
    }

    /// The playbook signer's certificate then the issuing CA (PEM), creating
    /// or renewing it first when needed.
    pub fn playbook_signer_chain(&mut self) -> Result<String, PkiError> {
        self.ensure_playbook_signer()?;
        let ca = self.ca()?;
        let signer = ca
            .signer
            .as_ref()
            .ok_or_else(|| PkiError::NotFound("no playbook signer".into()))?;
        Ok(format!("{}{}", signer.pem, ca.issuing_pem))
    }

    /// The configured scopes of the service users, by user name.
    pub fn services(&self) -> &std::collections::BTreeMap<String, crate::config::ServiceScope> {
        &self.cfg.services
    }

    /// True once the ceremony has completed.
    pub fn is_initialized(&self) -> bool {
        self.ca.is_some()
    }

    /// The key ceremony. Creates, as needed: the root key in the token and
    /// the self-signed root (pathlen 1, name constraints = configured zones
    /// and subnets), then the issuing key and its certificate signed by the
    /// root. Idempotent: an existing root is never replaced; a token key
    /// without its certificate is refused rather than re-certified.
    pub fn init(&mut self) -> Result<CaInfo, PkiError> {
        let mut created = false;
        std::fs::create_dir_all(&self.state_dir)
            .map_err(PkiError::io("cannot create", &self.state_dir))?;
        let root_path = self.root_path();
        let root_label = self.root_label();
        let (root_der, root_key) = match self.load_pair(&root_path, &root_label)? {
            Some((_, der, key, _)) => (der, key),
            None => {
                if self.token.find_key(&root_label)?.is_some() {
                    return Err(PkiError::Conflict(format!(
                        "token {:?} already holds a root key {root_label:?} but {} is missing; \
                         restore the state directory (the root is never replaced)",
                        self.token.label(),
                        root_path.display()
                    )));
                }
                let key = self
                    .token
                    .generate_ec_key(&root_label, self.cfg.ca.root_curve)?;
                let key = HsmKey::new(self.token.clone(), key);
                let cert = self.root_params()?.self_signed(&key)?;
                write_atomic(&root_path, pem_cert(cert.der()).as_bytes(), 0o644)
                    .map_err(PkiError::io("cannot write", &root_path))?;
                tracing::info!(path = %root_path.display(), "created the root CA");
                created = true;
                (cert.der().to_vec(), key)
            }
        };
        let issuing_path = self.issuing_path();
        let issuing_label = self.issuing_label();
        if self.load_pair(&issuing_path, &issuing_label)?.is_none() {
            let key = match self.token.find_key(&issuing_label)? {
                Some(k) => k,
                None => self
                    .token
                    .generate_ec_key(&issuing_label, self.cfg.ca.issuing_curve)?,
            };
            let key = HsmKey::new(self.token.clone(), key);
            let root_issuer = Issuer::from_ca_cert_der(&root_der.clone().into(), root_key)?;
            let cert = self.issuing_params()?.signed_by(&key, &root_issuer)?;
            write_atomic(&issuing_path, pem_cert(cert.der()).as_bytes(), 0o644)
                .map_err(PkiError::io("cannot write", &issuing_path))?;
            tracing::info!(path = %issuing_path.display(), "created the issuing CA");
            created = true;
        }
        self.ca = self.load_ca()?;
        created |= self.ensure_playbook_signer()?;
        if created || !self.crl_path().exists() {
            self.write_crl()?;
        }
        let mut info = self.info()?;
        info.created = created;
        Ok(info)
    }

    fn root_params(&self) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = t + Duration::days(self.cfg.ca.root_days.into());
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        p.distinguished_name = dn(&self.cfg.ca.organization, ROOT_CN);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut permitted: Vec<GeneralSubtree> = self
            .cfg
            .ca
            .zones
            .iter()
            .map(|z| GeneralSubtree::DnsName(z.as_str().to_owned()))
            .collect();
        permitted.extend(self.cfg.ca.subnets.iter().map(|c| {
            GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                c.net().network(),
                c.prefix_len(),
            ))
        }));
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: Vec::new(),
        });
        p.key_identifier_method = KeyIdMethod::Sha256;
        Ok(p)
    }

    fn issuing_params(&self) -> Result<CertificateParams, PkiError> {
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = t + Duration::days(self.cfg.ca.issuing_days.into());
        p.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        p.distinguished_name = dn(&self.cfg.ca.organization, ISSUING_CN);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        Ok(p)
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

    /// Refuses names outside the root's constraints.
    pub fn check_names(&self, names: &[SanName]) -> Result<(), PkiError> {
        for n in names {
            let ok = match n {
                SanName::Dns(d) => self.cfg.ca.zones.iter().any(|z| d.is_within(z)),
                SanName::Ip(ip) => self.cfg.ca.subnets.iter().any(|c| c.contains(ip)),
            };
            if !ok {
                let zones: Vec<_> = self.cfg.ca.zones.iter().map(|z| z.as_str()).collect();
                let subnets: Vec<_> = self.cfg.ca.subnets.iter().map(|s| s.to_string()).collect();
                return Err(PkiError::Invalid(format!(
                    "name {n} is outside the CA's name constraints (zones: {}; subnets: {})",
                    zones.join(", "),
                    if subnets.is_empty() {
                        "none".into()
                    } else {
                        subnets.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }

    fn days(&self, days: u32) -> Result<u32, PkiError> {
        match days {
            0 => Ok(self.cfg.issue.default_days),
            d if d > MAX_LEAF_DAYS => Err(PkiError::Invalid(format!(
                "invalid days {d}: at most {MAX_LEAF_DAYS}"
            ))),
            d => Ok(d),
        }
    }

    /// Builds and signs a leaf; records nothing.
    fn sign_leaf(
        &self,
        names: &[SanName],
        key: &impl PublicKeyData,
        is_rsa: bool,
        days: u32,
        profile: Profile,
    ) -> Result<(Vec<u8>, String, OffsetDateTime, OffsetDateTime), PkiError> {
        let ca = self.ca()?;
        let first = names
            .first()
            .ok_or_else(|| PkiError::Invalid("no name to certify".into()))?;
        let serial = random_serial()?;
        let mut p = CertificateParams::default();
        let t = now();
        p.not_before = t - Duration::minutes(5);
        p.not_after = (t + Duration::days(days.into())).min(ca.issuing_not_after);
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.distinguished_name = dn(&self.cfg.ca.organization, &first.to_string());
        p.subject_alt_names = names
            .iter()
            .map(SanName::to_san)
            .collect::<Result<_, _>>()?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if is_rsa && profile != Profile::PlaybookSigner {
            p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        p.extended_key_usages = match profile {
            Profile::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Profile::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Profile::Daemon => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Profile::PlaybookSigner => vec![ExtendedKeyUsagePurpose::CodeSigning],
        };
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.signed_by(key, &ca.issuer)?;
        Ok((
            cert.der().to_vec(),
            hex::encode(serial),
            p.not_before,
            p.not_after,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        names: &[SanName],
        der: &[u8],
        serial: String,
        window: (OffsetDateTime, OffsetDateTime),
        profile: Profile,
        key_type: String,
        key_source: KeySource,
    ) -> Result<Record, PkiError> {
        let record = Record {
            serial,
            names: names.iter().map(|n| n.to_string()).collect(),
            profile,
            key_type,
            key_source,
            not_before: window.0,
            not_after: window.1,
            revoked: None,
            certificate: pem_cert(der),
        };
        let mut inv = self.inventory.clone();
        inv.records.push(record.clone());
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        tracing::info!(serial = %record.serial, names = ?record.names, profile = %profile, "issued certificate");
        Ok(record)
    }

    fn chain(&self, leaf_pem: &str) -> Result<String, PkiError> {
        Ok(format!("{leaf_pem}{}", self.ca()?.issuing_pem))
    }

    /// Issues a certificate for a CSR: size limit, signature, key type, and
    /// every requested name within the constraints. `days` 0 means the
    /// default.
    pub fn issue_from_csr(
        &mut self,
        csr_pem: &str,
        days: u32,
        profile: Profile,
    ) -> Result<Issued, PkiError> {
        refuse_signer_profile(profile, "from a CSR")?;
        self.ca()?;
        let days = self.days(days)?;
        let req = csr::parse(csr_pem, self.cfg.issue.max_csr_bytes)?;
        self.check_names(&req.names)?;
        let (der, serial, nb, na) =
            self.sign_leaf(&req.names, &req.key, req.key.is_rsa, days, profile)?;
        let record = self.record(
            &req.names,
            &der,
            serial,
            (nb, na),
            profile,
            req.key.kind.clone(),
            KeySource::Csr,
        )?;
        let chain_pem = self.chain(&record.certificate)?;
        Ok(Issued {
            record,
            chain_pem,
            key_path: None,
            chain_path: None,
        })
    }

    /// Checks a name, generates a P-256 key on the host and signs a leaf for
    /// it; records nothing yet.
    fn generate_leaf(&self, name: &str, days: u32, profile: Profile) -> Result<Leaf, PkiError> {
        self.ca()?;
        let days = self.days(days)?;
        let names = parse_names(name)?;
        self.check_names(&names)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (der, serial, nb, na) = self.sign_leaf(&names, &key, false, days, profile)?;
        Ok(Leaf {
            names,
            der,
            serial,
            window: (nb, na),
            key,
        })
    }

    /// Issues a certificate for a LAN device that cannot make a CSR: a P-256
    /// key is generated here and written with the chain (mode 0600,
    /// atomically) to the export directory as `<name>.key.pem` and
    /// `<name>.pem`.
    pub fn issue_for_name(
        &mut self,
        name: &str,
        days: u32,
        profile: Profile,
    ) -> Result<Issued, PkiError> {
        refuse_signer_profile(profile, "with an exported key")?;
        let leaf = self.generate_leaf(name, days, profile)?;
        let chain_pem = self.chain(&pem_cert(&leaf.der))?;
        let dir = self.cfg.export_dir(&self.state_dir);
        create_private_dir(&dir)?;
        let stem = leaf.names[0].to_string();
        let key_path = dir.join(format!("{stem}.key.pem"));
        let chain_path = dir.join(format!("{stem}.pem"));
        // Key files first: a record is only made for a certificate whose key
        // reached its owner.
        let key_pem = Zeroizing::new(leaf.key.serialize_pem());
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(PkiError::io("cannot write", &key_path))?;
        write_atomic(&chain_path, chain_pem.as_bytes(), 0o600)
            .map_err(PkiError::io("cannot write", &chain_path))?;
        let record = self.record(
            &leaf.names,
            &leaf.der,
            leaf.serial,
            leaf.window,
            profile,
            KEY_TYPE_P256.into(),
            KeySource::Export,
        )?;
        Ok(Issued {
            record,
            chain_pem,
            key_path: Some(key_path),
            chain_path: Some(chain_path),
        })
    }

    /// Issues a `daemon` certificate for a Hearth daemon: the key is
    /// generated here and returned (never written to disk by the CA).
    pub fn issue_daemon_certificate(&mut self, name: &str) -> Result<DaemonCertificate, PkiError> {
        let leaf = self.generate_leaf(name, 0, Profile::Daemon)?;
        let record = self.record(
            &leaf.names,
            &leaf.der,
            leaf.serial,
            leaf.window,
            Profile::Daemon,
            KEY_TYPE_P256.into(),
            KeySource::Daemon,
        )?;
        Ok(DaemonCertificate {
            chain_pem: self.chain(&record.certificate)?,
            serial: record.serial,
            not_after: record.not_after,
            key_pem: Zeroizing::new(leaf.key.serialize_pem()),
        })
    }

    /// Revokes by serial (hex) or by name (every unrevoked certificate for
    /// it), then publishes a new CRL. Returns the serials revoked.
    pub fn revoke(&mut self, serial_or_name: &str) -> Result<Vec<String>, PkiError> {
        self.ca()?;
        let matches: Vec<String> = self
            .inventory
            .find(serial_or_name)
            .into_iter()
            .map(|r| r.serial.clone())
            .collect();
        if matches.is_empty() {
            return Err(PkiError::NotFound(format!(
                "no certificate with serial or name {serial_or_name:?}"
            )));
        }
        let mut inv = self.inventory.clone();
        let at = now();
        let mut revoked = Vec::new();
        for r in inv.records.iter_mut() {
            if matches.contains(&r.serial) && r.revoked.is_none() {
                r.revoked = Some(Revocation { at });
                revoked.push(r.serial.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::Conflict(format!(
                "every certificate matching {serial_or_name:?} is already revoked"
            )));
        }
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        tracing::info!(serials = ?revoked, "revoked");
        self.write_crl()?;
        Ok(revoked)
    }

    /// The inventory's records, oldest first: the state a change's diff is
    /// computed from.
    pub fn certificates(&self) -> &[Record] {
        &self.inventory.records
    }

    /// All issued certificates, oldest first.
    pub fn list(&self) -> Vec<Summary> {
        let t = now();
        self.inventory
            .records
            .iter()
            .map(|r| Summary {
                serial: r.serial.clone(),
                names: r.names.clone(),
                profile: r.profile,
                status: if r.revoked.is_some() {
                    "revoked"
                } else if r.not_after < t {
                    "expired"
                } else {
                    "valid"
                },
                not_after: r.not_after,
            })
            .collect()
    }

    /// The records for a serial or a name.
    pub fn show(&self, serial_or_name: &str) -> Result<Vec<Record>, PkiError> {
        let found: Vec<Record> = self
            .inventory
            .find(serial_or_name)
            .into_iter()
            .cloned()
            .collect();
        if found.is_empty() {
            return Err(PkiError::NotFound(format!(
                "no certificate with serial or name {serial_or_name:?}"
            )));
        }
        Ok(found)
    }

    /// Where the CRL is written.
    pub fn crl_path(&self) -> PathBuf {
        self.cfg.crl_path(&self.state_dir)
    }

    /// The current CRL (PEM), regenerated first if it is due.
    pub fn crl_pem(&mut self) -> Result<String, PkiError> {
        self.ca()?;
        self.refresh_crl_if_due()?;
        let path = self.crl_path();
        std::fs::read_to_string(&path).map_err(PkiError::io("cannot read", &path))
    }

    /// Regenerates the CRL when it is missing, unreadable, or expires within
    /// `crl.refresh_before_hours`. Returns whether it was regenerated.
    pub fn refresh_crl_if_due(&mut self) -> Result<bool, PkiError> {
        if self.ca.is_none() {
            return Ok(false);
        }
        let next = match self.crl_next_update {
            Some(n) => Some(n),
            None => std::fs::read_to_string(self.crl_path())
                .ok()
                .and_then(|t| pem::parse(t).ok())
                .and_then(|p| {
                    x509_parser::parse_x509_crl(p.contents())
                        .ok()
                        .and_then(|(_, crl)| crl.next_update().map(|n| n.to_datetime()))
                }),
        };
        let due = next
            .is_none_or(|n| n - now() < Duration::hours(self.cfg.crl.refresh_before_hours.into()));
        if due {
            self.write_crl()?;
        } else {
            self.crl_next_update = next;
        }
        Ok(due)
    }

    fn write_crl(&mut self) -> Result<(), PkiError> {
        let ca = self.ca()?;
        let t = now();
        let next = t + Duration::hours(self.cfg.crl.validity_hours.into());
        let number = self.inventory.crl_number + 1;
        let revoked = self
            .inventory
            .records
            .iter()
            .filter_map(|r| {
                r.revoked.as_ref().map(|rev| {
                    Ok(RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&hex::decode(&r.serial).map_err(
                            |_| PkiError::Corrupt {
                                path: inventory::path(&self.state_dir),
                                why: format!("serial {:?} is not hex", r.serial),
                            },
                        )?),
                        revocation_time: rev.at,
                        reason_code: None,
                        invalidity_date: None,
                    })
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: t,
            next_update: next,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&ca.issuer)?;
        let pem_text = crl.pem()?;
        let mut inv = self.inventory.clone();
        inv.crl_number = number;
        inv.save(&inventory::path(&self.state_dir))?;
        self.inventory = inv;
        let path = self.crl_path();
        write_atomic(&path, pem_text.as_bytes(), 0o644)
            .map_err(PkiError::io("cannot write", &path))?;
        self.crl_next_update = Some(next);
        tracing::info!(number, path = %path.display(), "published CRL");
        Ok(())
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

/// Parses `name`: one name, or several separated by commas (the first is
/// the subject CN and the export file name), e.g. `attest.home.arpa,127.0.0.1`.
fn parse_names(name: &str) -> Result<Vec<SanName>, PkiError> {
    let mut names = Vec::new();
    for part in name.split(',') {
        let n = SanName::parse("name", part.trim())?;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    if names.len() > 16 {
        return Err(PkiError::Invalid(format!(
            "invalid name {name:?}: at most 16 names"
        )));
    }
    Ok(names)
}

/// The playbook-signer profile is issued by the ceremony only, to the key
/// that lives in the token: a signer certificate for a CSR or an exported
/// key would let whoever holds that key sign playbooks the gate installs.
fn refuse_signer_profile(profile: Profile, how: &str) -> Result<(), PkiError> {
    if profile == Profile::PlaybookSigner {
        return Err(PkiError::Invalid(format!(
            "profile playbook-signer is never issued {how}: the only playbook signer is the key the ceremony made in the token (SignPlaybook)"
        )));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(PkiError::io("cannot create", dir))
}

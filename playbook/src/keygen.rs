//! Build and test signing PKI: a root CA, playbook-signer certificates
//! (codeSigning EKU) and CRLs, with ECDSA P-256 keys.
//!
//! Used by `hearth-playbook gen-build-keys` (the build/test vendor root that
//! scripts/sign-catalog creates once in the git-ignored `.build-keys/`) and
//! by tests. A production vendor root is made offline; the appliance's own
//! signers come from hearth-pkid.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

/// A key generation or certificate error.
#[derive(Debug, thiserror::Error)]
#[error("certificate generation: {0}")]
pub struct KeygenError(String);

fn e(x: impl std::fmt::Display) -> KeygenError {
    KeygenError(x.to_string())
}

/// A certificate authority that can issue signers and CRLs.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate, DER.
    pub cert_der: Vec<u8>,
}

/// A key and its certificate.
pub struct Issued {
    /// PKCS#8 PEM private key.
    pub key_pem: String,
    /// Certificate DER.
    pub cert_der: Vec<u8>,
    /// Serial number bytes.
    pub serial: Vec<u8>,
}

/// Options of a playbook-signer certificate.
#[derive(Debug, Clone)]
pub struct SignerOptions {
    /// Common name.
    pub common_name: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Include the codeSigning EKU (false only to test its refusal).
    pub code_signing: bool,
}

impl SignerOptions {
    /// A signer valid from a day ago for `days` days.
    pub fn valid_for(common_name: &str, days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        SignerOptions {
            common_name: common_name.into(),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(days),
            code_signing: true,
        }
    }
}

fn serial() -> Result<Vec<u8>, KeygenError> {
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).map_err(e)?;
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(b.to_vec())
}

fn minimal(b: &[u8]) -> &[u8] {
    let skip = b.iter().take_while(|x| **x == 0).count().min(b.len() - 1);
    &b[skip..]
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Hearth");
    d.push(DnType::CommonName, cn);
    d
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM of a certificate.
pub fn cert_pem(der: &[u8]) -> String {
    pem("CERTIFICATE", der)
}

/// PEM of a CRL.
pub fn crl_pem(der: &[u8]) -> String {
    pem("X509 CRL", der)
}

impl Authority {
    /// A new self-signed root valid for `years` years.
    pub fn new_root(common_name: &str, years: i64) -> Result<Self, KeygenError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(e)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.serial_number = Some(SerialNumber::from_slice(&serial()?));
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365 * years);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key).map_err(e)?;
        Ok(Authority {
            cert_der: cert.der().to_vec(),
            params,
            key,
        })
    }

    /// An intermediate CA issued by this one.
    pub fn new_intermediate(&self, common_name: &str) -> Result<Authority, KeygenError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(e)?;
        let mut params = self.params.clone();
        params.distinguished_name = dn(common_name);
        params.serial_number = Some(SerialNumber::from_slice(&serial()?));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
        Ok(Authority {
            cert_der: cert.der().to_vec(),
            params,
            key,
        })
    }

    /// A playbook-signer certificate issued by this authority.
    pub fn issue_signer(&self, opts: &SignerOptions) -> Result<Issued, KeygenError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(e)?;
        let serial = serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&opts.common_name);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = opts.not_before;
        params.not_after = opts.not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if opts.code_signing {
            vec![ExtendedKeyUsagePurpose::CodeSigning]
        } else {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        };
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(e)?;
        Ok(Issued {
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            serial,
        })
    }

    /// A CRL signed by this authority revoking `serials`, valid 30 days.
    pub fn crl(&self, number: u64, serials: &[Vec<u8>]) -> Result<Vec<u8>, KeygenError> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from_slice(minimal(&number.max(1).to_be_bytes())),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let crl = params.signed_by(&issuer).map_err(e)?;
        Ok(crl.der().to_vec())
    }

    /// The authority's PKCS#8 PEM key.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

//! `org.hearth.Pki1` results (hearth-pkid, the appliance CA). See
//! `docs/dbus/pki.md`.
//!
//! The issuing methods answer with the certificate the CA's inventory gained
//! ([`Issued`], [`DaemonCertificate`]), `RevokeCertificate` with a
//! [`CertificateDiff`]; hearth-pkid computes both from its inventory before
//! and after the call. Times are RFC 3339 text in UTC
//! (`2027-02-21T10:05:00Z`); serials are lower-case hex.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::decode;
use crate::proxies::pki::PkiProxy;
use crate::types::{Address, Cidr, DnsName};
use crate::HearthError;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
    /// A Hearth daemon's endpoint (serverAuth and clientAuth).
    Daemon,
    /// Signs playbooks (codeSigning).
    PlaybookSigner,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Server,
        Profile::Client,
        Profile::Daemon,
        Profile::PlaybookSigner,
    ];

    /// The name used on the bus and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
            Profile::Daemon => "daemon",
            Profile::PlaybookSigner => "playbook-signer",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a certificate's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    /// The requester sent a CSR.
    Csr,
    /// Generated on the appliance and written to the export directory.
    Export,
    /// Generated on the appliance and handed to a daemon over the bus.
    Daemon,
    /// A key that lives in the token (the playbook signer).
    Token,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySource::Csr => "csr",
            KeySource::Export => "export",
            KeySource::Daemon => "daemon",
            KeySource::Token => "token",
        })
    }
}

/// A name a certificate is for (in its subjectAltName): an IP address or a
/// DNS name, written as plain text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CertName {
    /// An IP address (tried first: `127.0.0.1` is also a well-formed DNS name).
    Address(Address),
    /// A DNS name.
    Dns(DnsName),
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertName::Address(a) => a.fmt(f),
            CertName::Dns(d) => d.fmt(f),
        }
    }
}

/// The names of a certificate joined with commas, as the command line takes them.
pub fn names_text(names: &[CertName]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// When the CA processed it (RFC 3339).
    pub at: String,
}

/// One issued certificate as the CA's inventory holds it (`ShowCertificate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The names certified (subjectAltName); the first is also the subject CN.
    pub names: Vec<CertName>,
    /// The profile.
    pub profile: Profile,
    /// The subject key's type (`ec-p256`, `rsa-3072`, …).
    pub key_type: String,
    /// Where the key came from.
    pub key_source: KeySource,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Set once revoked.
    pub revoked: Option<Revocation>,
    /// The certificate, PEM.
    pub certificate: String,
}

/// Whether a certificate can be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertificateStatus {
    /// Neither revoked nor expired.
    Valid,
    /// Revoked.
    Revoked,
    /// Past its notAfter.
    Expired,
}

impl fmt::Display for CertificateStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertificateStatus::Valid => "valid",
            CertificateStatus::Revoked => "revoked",
            CertificateStatus::Expired => "expired",
        })
    }
}

/// One line of `ListCertificates` (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSummary {
    /// Serial, hex.
    pub serial: String,
    /// Names.
    pub names: Vec<CertName>,
    /// Profile.
    pub profile: Profile,
    /// Valid, revoked or expired, now.
    pub status: CertificateStatus,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

/// A certificate in a diff: which one, for what, valid when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateChange {
    /// Serial, hex.
    pub serial: String,
    /// Names.
    pub names: Vec<CertName>,
    /// Profile.
    pub profile: Profile,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

impl From<&Certificate> for CertificateChange {
    fn from(c: &Certificate) -> Self {
        CertificateChange {
            serial: c.serial.clone(),
            names: c.names.clone(),
            profile: c.profile,
            not_before: c.not_before.clone(),
            not_after: c.not_after.clone(),
        }
    }
}

/// A long hex serial shortened for a sentence: `3f0c…09a1`.
pub fn short_serial(serial: &str) -> String {
    let n = serial.chars().count();
    if n <= 12 {
        return serial.to_string();
    }
    let head: String = serial.chars().take(4).collect();
    let tail: String = serial.chars().skip(n - 4).collect();
    format!("{head}…{tail}")
}

impl CertificateChange {
    /// `certificate 3f0c…09a1 for nas.home.arpa (profile server, valid until
    /// 2027-03-03)`.
    fn phrase(&self) -> String {
        let until = self.not_after.get(..10).unwrap_or(&self.not_after);
        format!(
            "certificate {} for {} (profile {}, valid until {until})",
            short_serial(&self.serial),
            names_text(&self.names),
            self.profile
        )
    }
}

/// What a call did to the CA's inventory: certificates issued and revoked.
/// Computed by hearth-pkid from its inventory before and after the call
/// ([`CertificateDiff::between`]); empty when nothing changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateDiff {
    /// Certificates that appeared.
    pub issued: Vec<CertificateChange>,
    /// Certificates that became revoked.
    pub revoked: Vec<CertificateChange>,
}

impl CertificateDiff {
    /// The diff between two inventories (each oldest first): `issued` are
    /// the serials only `after` holds, `revoked` the certificates revoked in
    /// `after` but not in `before`.
    pub fn between(before: &[Certificate], after: &[Certificate]) -> CertificateDiff {
        let old = |serial: &str| before.iter().find(|c| c.serial == serial);
        let mut diff = CertificateDiff::default();
        for c in after {
            match old(&c.serial) {
                None => {
                    diff.issued.push(c.into());
                    if c.revoked.is_some() {
                        diff.revoked.push(c.into());
                    }
                }
                Some(b) if b.revoked.is_none() && c.revoked.is_some() => {
                    diff.revoked.push(c.into())
                }
                Some(_) => {}
            }
        }
        diff
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.issued.is_empty() && self.revoked.is_empty()
    }
}

impl fmt::Display for CertificateDiff {
    /// One plain line: `Issues certificate 3f0c…09a1 for nas.home.arpa
    /// (profile server, valid until 2027-03-03).`, `Revokes …`, or
    /// `Nothing changes.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("Nothing changes.");
        }
        let mut parts = Vec::new();
        for (verb, list) in [("issues", &self.issued), ("revokes", &self.revoked)] {
            if !list.is_empty() {
                let phrases: Vec<String> = list.iter().map(CertificateChange::phrase).collect();
                parts.push(format!("{verb} {}", phrases.join(", ")));
            }
        }
        let line = parts.join("; ");
        let mut chars = line.chars();
        let first = chars.next().map(|c| c.to_uppercase().to_string());
        write!(f, "{}{}.", first.unwrap_or_default(), chars.as_str())
    }
}

/// A certificate just issued (`IssueCertificate`, `IssueForName`,
/// `IssueFromCsr`): the certificate the inventory gained, with its chain and,
/// for a key generated on the appliance, where key and chain were written
/// (mode 0600). `serial` stays a top-level field: the playbook
/// `pki.issue_certificate` revokes `{result.serial}` to undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The names certified; the first is also the subject CN.
    pub names: Vec<CertName>,
    /// The profile.
    pub profile: Profile,
    /// The subject key's type.
    pub key_type: String,
    /// Where the key came from.
    pub key_source: KeySource,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// Leaf then issuing certificate, PEM.
    pub chain_pem: String,
    /// For a key generated here: where it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    /// For a key generated here: where the chain was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<String>,
}

impl Issued {
    /// The issuance as a diff.
    pub fn diff(&self) -> CertificateDiff {
        CertificateDiff {
            issued: vec![CertificateChange {
                serial: self.serial.clone(),
                names: self.names.clone(),
                profile: self.profile,
                not_before: self.not_before.clone(),
                not_after: self.not_after.clone(),
            }],
            revoked: vec![],
        }
    }
}

impl fmt::Display for Issued {
    /// The diff's line: `Issues certificate … for … (profile …, valid until …).`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diff().fmt(f)
    }
}

/// A `daemon` certificate with its freshly generated key
/// (`IssueDaemonCertificate`); the CA never writes the key anywhere.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonCertificate {
    /// Serial number, hex.
    pub serial: String,
    /// The names certified.
    pub names: Vec<CertName>,
    /// Always [`Profile::Daemon`].
    pub profile: Profile,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339); renew before it.
    pub not_after: String,
    /// Leaf then issuing certificate, PEM.
    pub chain_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The root certificate, PEM.
    pub root_pem: String,
}

impl DaemonCertificate {
    /// The issuance as a diff.
    pub fn diff(&self) -> CertificateDiff {
        CertificateDiff {
            issued: vec![CertificateChange {
                serial: self.serial.clone(),
                names: self.names.clone(),
                profile: self.profile,
                not_before: self.not_before.clone(),
                not_after: self.not_after.clone(),
            }],
            revoked: vec![],
        }
    }
}

impl fmt::Debug for DaemonCertificate {
    /// Everything but the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaemonCertificate")
            .field("serial", &self.serial)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DaemonCertificate {
    /// The diff's line (never the key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.diff().fmt(f)
    }
}

/// The CA (`Init`, `Info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaInfo {
    /// True when this call created anything (`Init`; always false from `Info`).
    pub created: bool,
    /// SHA-256 fingerprint of the root certificate, hex.
    pub root_sha256: String,
    /// Root certificate, PEM.
    pub root_pem: String,
    /// Issuing certificate, PEM.
    pub issuing_pem: String,
    /// Permitted DNS zones (the root's name constraints).
    pub zones: Vec<DnsName>,
    /// Permitted IP ranges.
    pub subnets: Vec<Cidr>,
}

/// A playbook signature made in the token (`SignPlaybook`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookSignature {
    /// Always `ecdsa-p256-sha256`.
    pub algorithm: String,
    /// Base64 of the DER `ECDSA-Sig-Value` over the payload's bytes.
    pub signature: String,
    /// Serial of the signer certificate, hex.
    pub serial: String,
    /// Signer certificate then the issuing CA, PEM.
    pub chain_pem: String,
}

/// `Init`: the key ceremony (idempotent).
pub async fn init(p: &PkiProxy<'_>) -> Result<CaInfo, HearthError> {
    decode("Pki1.Init", &p.init().await?)
}

/// `Info`: the CA's certificates and constraints.
pub async fn info(p: &PkiProxy<'_>) -> Result<CaInfo, HearthError> {
    decode("Pki1.Info", &p.info().await?)
}

/// `IssueCertificate`: a `server` certificate, key generated and exported.
pub async fn issue_certificate(
    p: &PkiProxy<'_>,
    name: &str,
    days: u32,
) -> Result<Issued, HearthError> {
    decode(
        "Pki1.IssueCertificate",
        &p.issue_certificate(name, days).await?,
    )
}

/// `IssueForName`: a certificate of `profile`, key generated and exported.
pub async fn issue_for_name(
    p: &PkiProxy<'_>,
    name: &str,
    profile: &str,
    days: u32,
) -> Result<Issued, HearthError> {
    decode(
        "Pki1.IssueForName",
        &p.issue_for_name(name, profile, days).await?,
    )
}

/// `IssueFromCsr`: a certificate for a PEM CSR.
pub async fn issue_from_csr(
    p: &PkiProxy<'_>,
    csr_pem: &str,
    profile: &str,
    days: u32,
) -> Result<Issued, HearthError> {
    decode(
        "Pki1.IssueFromCsr",
        &p.issue_from_csr(csr_pem, profile, days).await?,
    )
}

/// `IssueDaemonCertificate`: a `daemon` certificate with a fresh key.
pub async fn issue_daemon_certificate(
    p: &PkiProxy<'_>,
    name: &str,
) -> Result<DaemonCertificate, HearthError> {
    decode(
        "Pki1.IssueDaemonCertificate",
        &p.issue_daemon_certificate(name).await?,
    )
}

/// `RevokeCertificate`: revokes by serial or name.
pub async fn revoke_certificate(
    p: &PkiProxy<'_>,
    serial_or_name: &str,
) -> Result<CertificateDiff, HearthError> {
    decode(
        "Pki1.RevokeCertificate",
        &p.revoke_certificate(serial_or_name).await?,
    )
}

/// `ListCertificates`: every issued certificate, oldest first.
pub async fn certificates(p: &PkiProxy<'_>) -> Result<Vec<CertificateSummary>, HearthError> {
    decode("Pki1.ListCertificates", &p.list_certificates().await?)
}

/// `ShowCertificate`: the certificates for a serial or a name.
pub async fn certificate(
    p: &PkiProxy<'_>,
    serial_or_name: &str,
) -> Result<Vec<Certificate>, HearthError> {
    decode(
        "Pki1.ShowCertificate",
        &p.show_certificate(serial_or_name).await?,
    )
}

/// `SignPlaybook`: signs `payload` with the token's playbook-signer key.
pub async fn sign_playbook(
    p: &PkiProxy<'_>,
    payload: &str,
) -> Result<PlaybookSignature, HearthError> {
    decode("Pki1.SignPlaybook", &p.sign_playbook(payload).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::contract::encode;

    fn cert(serial: &str, revoked: bool) -> Certificate {
        Certificate {
            serial: serial.into(),
            names: vec![CertName::Dns(DnsName::parse("nas.home.arpa").unwrap())],
            profile: Profile::Server,
            key_type: "ec-p256".into(),
            key_source: KeySource::Export,
            not_before: "2026-12-03T09:55:00Z".into(),
            not_after: "2027-03-03T10:00:00Z".into(),
            revoked: revoked.then(|| Revocation {
                at: "2026-12-04T00:00:00Z".into(),
            }),
            certificate: String::new(),
        }
    }

    const SERIAL: &str = "3f0c5e7a9b1d2c4e6f8a0b1c2d3e09a1";

    #[test]
    fn diff_finds_issued_and_revoked() {
        let a = cert("0a", false);
        let b = cert(SERIAL, false);
        let d = CertificateDiff::between(std::slice::from_ref(&a), &[a.clone(), b.clone()]);
        assert_eq!(d.issued, vec![CertificateChange::from(&b)]);
        assert!(d.revoked.is_empty());
        let d = CertificateDiff::between(&[a.clone(), b.clone()], &[a.clone(), cert(SERIAL, true)]);
        assert!(d.issued.is_empty());
        assert_eq!(d.revoked[0].serial, SERIAL);
        // Already revoked before: no change.
        let r = cert("0b", true);
        let d = CertificateDiff::between(std::slice::from_ref(&r), std::slice::from_ref(&r));
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "Nothing changes.");
    }

    #[test]
    fn diffs_render_as_one_line() {
        let b = cert(SERIAL, false);
        let d = CertificateDiff::between(&[], std::slice::from_ref(&b));
        assert_eq!(
            d.to_string(),
            "Issues certificate 3f0c…09a1 for nas.home.arpa (profile server, valid until 2027-03-03)."
        );
        let d = CertificateDiff::between(
            &[b.clone(), cert("0a", false)],
            &[cert(SERIAL, true), cert("0a", true)],
        );
        assert_eq!(
            d.to_string(),
            "Revokes certificate 3f0c…09a1 for nas.home.arpa (profile server, valid until 2027-03-03), \
             certificate 0a for nas.home.arpa (profile server, valid until 2027-03-03)."
        );
    }

    #[test]
    fn issued_keeps_serial_on_top_and_names_as_text() {
        let text = r#"{"serial":"0a1b","names":["nas.home.arpa","192.168.1.20"],"profile":"server",
            "key_type":"ec-p256","key_source":"export","not_before":"2026-12-03T09:55:00Z",
            "not_after":"2027-03-03T10:00:00Z","certificate":"C","chain_pem":"CC",
            "key_path":"/k","chain_path":"/c"}"#;
        let i: Issued = decode("Pki1.IssueCertificate", text).unwrap();
        assert!(matches!(i.names[1], CertName::Address(_)));
        let v: serde_json::Value = serde_json::from_str(&encode(&i).unwrap()).unwrap();
        assert_eq!(v["serial"], "0a1b");
        assert_eq!(v["names"][1], "192.168.1.20");
        assert_eq!(
            i.to_string(),
            "Issues certificate 0a1b for nas.home.arpa,192.168.1.20 (profile server, valid until 2027-03-03)."
        );
    }

    #[test]
    fn daemon_certificate_debug_hides_the_key() {
        let d = DaemonCertificate {
            serial: "01".into(),
            names: vec![],
            profile: Profile::Daemon,
            not_before: String::new(),
            not_after: String::new(),
            chain_pem: String::new(),
            key_pem: "SECRET".into(),
            root_pem: String::new(),
        };
        assert!(!format!("{d:?}").contains("SECRET"));
        assert!(!d.to_string().contains("SECRET"));
    }
}

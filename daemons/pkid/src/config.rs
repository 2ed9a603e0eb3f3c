//! The daemon's configuration (`/etc/hearth/hearth-pkid.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hearth_common::types::{Cidr, DnsName};
use hearth_hsm::Curve;
use serde::Deserialize;

/// Longest validity a leaf may get (CA/Browser Forum limit).
pub const MAX_LEAF_DAYS: u32 = 398;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    /// The PKCS#11 token.
    pub hsm: HsmConfig,
    /// The CA's names and constraints.
    pub ca: CaConfig,
    /// Issuance policy.
    #[serde(default)]
    pub issue: IssueConfig,
    /// CRL publication.
    #[serde(default)]
    pub crl: CrlConfig,
    /// Run the key ceremony at start when the CA does not exist yet.
    #[serde(default)]
    pub init_on_start: bool,
    /// Who may read (operators) and who may issue and revoke (admins).
    #[serde(default)]
    pub access: hearth_runtime::AccessConfig,
    /// What each of `[access] service_users` may do, by user name. Here a
    /// service user is not an admin: it may read, and do what its scope
    /// grants; never the ceremony, playbook signing, or any other issuance
    /// or revocation. A service user without a scope may only read.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceScope>,
}

/// What one service user may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceScope {
    /// The names it may get a daemon certificate for
    /// (`IssueDaemonCertificate`): its own endpoint, e.g. hearth-attestd's
    /// `tls_from_pkid`. Every name asked must be one of these.
    #[serde(default)]
    pub daemon_certificate_names: Vec<String>,
    /// `IssueCertificate` (profile `server`, key exported) on a person's
    /// behalf: the gate (hearth-intentd), after its own approval policy.
    #[serde(default)]
    pub issue_server: bool,
    /// `RevokeCertificate` on a person's behalf: the gate, after its own
    /// approval policy.
    #[serde(default)]
    pub revoke: bool,
}

impl ServiceScope {
    /// Whether every name of a comma-separated `names` is one of
    /// `daemon_certificate_names` (compared without case or a final dot).
    pub fn allows_daemon_names(&self, names: &str) -> bool {
        let norm = |n: &str| n.trim().trim_end_matches('.').to_ascii_lowercase();
        let asked: Vec<String> = names.split(',').map(norm).collect();
        !asked.is_empty()
            && asked.iter().all(|a| {
                !a.is_empty()
                    && self
                        .daemon_certificate_names
                        .iter()
                        .any(|allowed| norm(allowed) == *a)
            })
    }
}

impl hearth_runtime::DaemonConfig for PkiConfig {
    fn access(&self) -> &hearth_runtime::AccessConfig {
        &self.access
    }
}

/// Where the keys live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token holding the CA keys.
    pub token_label: String,
    /// A file holding the user PIN (mode 0600/0400), used when the systemd
    /// credential `hsm-pin` is not present.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Prefix of the key labels in the token (`<prefix>-root`, `<prefix>-issuing`).
    #[serde(default = "default_key_prefix")]
    pub key_label_prefix: String,
}

fn default_key_prefix() -> String {
    "hearth".into()
}

/// The CA's identity and name constraints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Permitted DNS subtrees, e.g. `["home.arpa"]`. At least one.
    pub zones: Vec<DnsName>,
    /// Permitted IP ranges (the LAN subnets), e.g. `["192.168.1.0/24"]`.
    #[serde(default)]
    pub subnets: Vec<Cidr>,
    /// Organization name in the CA subjects.
    #[serde(default = "default_org")]
    pub organization: String,
    /// Curve of the root key.
    #[serde(default = "default_root_curve", deserialize_with = "de_curve")]
    pub root_curve: Curve,
    /// Curve of the issuing key.
    #[serde(default = "default_issuing_curve", deserialize_with = "de_curve")]
    pub issuing_curve: Curve,
    /// Validity of the root certificate, in days.
    #[serde(default = "default_root_days")]
    pub root_days: u32,
    /// Validity of the issuing certificate, in days.
    #[serde(default = "default_issuing_days")]
    pub issuing_days: u32,
}

fn default_org() -> String {
    "Hearth".into()
}
fn default_root_curve() -> Curve {
    Curve::P384
}
fn default_issuing_curve() -> Curve {
    Curve::P256
}
fn default_root_days() -> u32 {
    3650
}
fn default_issuing_days() -> u32 {
    1825
}

fn de_curve<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Curve, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// Issuance policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueConfig {
    /// Where keys generated for LAN devices are written (with their chain).
    #[serde(default)]
    pub export_dir: Option<PathBuf>,
    /// Validity when the caller gives none (days).
    #[serde(default = "default_days")]
    pub default_days: u32,
    /// Largest CSR accepted, in bytes of PEM.
    #[serde(default = "default_max_csr")]
    pub max_csr_bytes: usize,
}

fn default_days() -> u32 {
    90
}
fn default_max_csr() -> usize {
    16 * 1024
}

impl Default for IssueConfig {
    fn default() -> Self {
        IssueConfig {
            export_dir: None,
            default_days: default_days(),
            max_csr_bytes: default_max_csr(),
        }
    }
}

/// CRL publication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlConfig {
    /// Where the PEM CRL is written (default `<state dir>/crl.pem`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// nextUpdate − thisUpdate, in hours.
    #[serde(default = "default_crl_hours")]
    pub validity_hours: u32,
    /// Regenerate when fewer than this many hours remain.
    #[serde(default = "default_crl_refresh")]
    pub refresh_before_hours: u32,
}

fn default_crl_hours() -> u32 {
    7 * 24
}
fn default_crl_refresh() -> u32 {
    48
}

impl Default for CrlConfig {
    fn default() -> Self {
        CrlConfig {
            path: None,
            validity_hours: default_crl_hours(),
            refresh_before_hours: default_crl_refresh(),
        }
    }
}

impl PkiConfig {
    /// Checks what serde cannot: at least one zone, sane durations.
    pub fn validate(&self) -> Result<(), crate::PkiError> {
        let bad = |m: String| Err(crate::PkiError::Invalid(m));
        if self.ca.zones.is_empty() {
            return bad("ca.zones: at least one permitted DNS zone is required".into());
        }
        if let Some(z) = self.ca.zones.iter().find(|z| z.as_str().contains('_')) {
            return bad(format!(
                "ca.zones: {z:?} holds '_', which certificates do not allow"
            ));
        }
        if self.hsm.token_label.is_empty() || self.hsm.token_label.len() > 32 {
            return bad(format!(
                "hsm.token_label {:?}: 1 to 32 characters",
                self.hsm.token_label
            ));
        }
        if self.issue.default_days == 0 || self.issue.default_days > MAX_LEAF_DAYS {
            return bad(format!(
                "issue.default_days {}: must be 1..={MAX_LEAF_DAYS}",
                self.issue.default_days
            ));
        }
        if self.crl.validity_hours <= self.crl.refresh_before_hours {
            return bad(format!(
                "crl.validity_hours {} must exceed crl.refresh_before_hours {}",
                self.crl.validity_hours, self.crl.refresh_before_hours
            ));
        }
        if self.ca.root_days == 0
            || self.ca.issuing_days == 0
            || self.ca.issuing_days > self.ca.root_days
        {
            return bad(format!(
                "ca.root_days {} / ca.issuing_days {}: both positive, issuing not longer than root",
                self.ca.root_days, self.ca.issuing_days
            ));
        }
        Ok(())
    }

    /// Where the CRL goes.
    pub fn crl_path(&self, state_dir: &Path) -> PathBuf {
        self.crl
            .path
            .clone()
            .unwrap_or_else(|| state_dir.join("crl.pem"))
    }

    /// Where host-generated keys go.
    pub fn export_dir(&self, state_dir: &Path) -> PathBuf {
        self.issue
            .export_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("export"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_production_example_parses_and_scopes_each_service_user() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("hearth-pkid.toml");
        std::fs::write(&p, include_str!("../hearth-pkid.example.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let cfg: PkiConfig = hearth_common::config::load(&p).unwrap_or_else(|e| panic!("{e:#}"));
        let attestd = &cfg.services["hearth-attestd"];
        assert!(!attestd.issue_server && !attestd.revoke);
        assert!(attestd.allows_daemon_names("hearth.home.arpa,192.168.1.1"));
        assert!(attestd.allows_daemon_names("HEARTH.home.arpa."));
        assert!(!attestd.allows_daemon_names("hearth.home.arpa,evil.home.arpa"));
        assert!(!attestd.allows_daemon_names(""));
        let gate = &cfg.services["hearth-intentd"];
        assert!(gate.issue_server && gate.revoke);
        assert!(!gate.allows_daemon_names("hearth.home.arpa"));
    }
}

//! The inventory of issued certificates, persisted atomically as JSON
//! (`<state dir>/inventory.json`, mode 0600) with
//! [`hearth_common::fsutil::write_json_atomic`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::PkiError;

/// What a certificate is for, and where the subject's key came from: the
/// contract's types, so that the inventory and the bus say the same.
pub use hearth_common::contract::pki::{KeySource, Profile};

/// Parses a profile name given for `field`; the empty string means `server`.
pub fn parse_profile(field: &str, s: &str) -> Result<Profile, PkiError> {
    if s.is_empty() {
        return Ok(Profile::Server);
    }
    Profile::ALL
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            PkiError::Invalid(format!(
                "invalid {field} {s:?}: expected one of server, client, daemon, playbook-signer"
            ))
        })
}

/// A revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When the CA processed it.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// The names certified (SANs), the first is also the subject CN.
    pub names: Vec<String>,
    /// The profile.
    pub profile: Profile,
    /// Key type of the subject (`ec-p256`, `rsa-3072`, …).
    pub key_type: String,
    /// Where the key came from.
    pub key_source: KeySource,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Set once revoked.
    #[serde(default)]
    pub revoked: Option<Revocation>,
    /// The certificate, PEM.
    pub certificate: String,
}

/// The inventory file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Format version (1).
    pub version: u32,
    /// Number of the last CRL published.
    pub crl_number: u64,
    /// Issued certificates, oldest first.
    pub records: Vec<Record>,
}

impl Inventory {
    /// Loads the inventory, or an empty one when the file does not exist.
    pub fn load(path: &Path) -> Result<Inventory, PkiError> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| PkiError::Corrupt {
                path: path.to_path_buf(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inventory {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(PkiError::io("cannot read", path)(e)),
        }
    }

    /// Writes the inventory atomically.
    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        hearth_common::fsutil::write_json_atomic(path, self)
            .map_err(PkiError::io("cannot write", path))
    }

    /// Finds records by serial (hex, case-insensitive, `:` allowed) or by name.
    pub fn find(&self, serial_or_name: &str) -> Vec<&Record> {
        let key = serial_or_name.trim().to_ascii_lowercase();
        let serial = key.replace(':', "");
        self.records
            .iter()
            .filter(|r| r.serial == serial || r.names.contains(&key))
            .collect()
    }
}

/// The inventory's path in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("inventory.json")
}

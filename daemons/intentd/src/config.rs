//! `/etc/hearth/hearth-intentd.toml`.
//!
//! ```toml
//! catalog_dir = "/var/lib/hearth-intentd/catalog"   # default: <state dir>/catalog
//! # audit_log = "/var/lib/hearth-intentd/audit.jsonl" # default: <state dir>/audit.jsonl
//! [trust]
//! vendor_roots = ["/usr/share/hearth/keys/vendor-root.pem"]
//! # hearth-pkid writes root.pem into its state directory and crl.pem where its
//! # [crl] path says. Both must be readable by hearth-intentd: a file that is
//! # absent is skipped (no CA yet), one that exists but cannot be reached, read
//! # or parsed refuses every playbook, naming the file.
//! appliance_ca = "/var/lib/hearth-pkid/root.pem"
//! crls = ["/usr/share/hearth/keys/vendor-root.crl.pem"]
//! appliance_crl = "/var/lib/hearth-pkid/crl.pem"
//! [policy]
//! pending_ttl_secs = 300
//! two_person = false
//! root_is_second_person = false   # uid 0 is not the second admin (sudo is one person)
//! max_pending = 64                # plans waiting for agreement, in all
//! max_pending_per_requester = 8   # and from one requester
//! [access]
//! admins_group = "hearth-admins"
//! ```

use std::path::{Path, PathBuf};

use hearth_playbook::TrustConfig;
use hearth_runtime::{AccessConfig, DaemonConfig};
use serde::Deserialize;

use crate::gate::Settings;
use crate::policy::PolicyConfig;

/// The daemon's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentConfig {
    /// Who may ask (operators) and approve (admins).
    #[serde(default)]
    pub access: AccessConfig,
    /// Directory of `<id>.dsse.json` envelopes (default `<state dir>/catalog`).
    #[serde(default)]
    pub catalog_dir: Option<PathBuf>,
    /// The audit log (default `<state dir>/audit.jsonl`).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// Trust anchors and CRLs.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Approval policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The models directory (`all-MiniLM-L6-v2/` and the interpreter's
    /// trained heads, `hearth-intent/`, made by scripts/train-intent).
    /// Absent: text requests are refused and only structured intents run.
    #[serde(default)]
    pub models_dir: Option<PathBuf>,
}

impl DaemonConfig for IntentConfig {
    fn access(&self) -> &AccessConfig {
        &self.access
    }
}

impl IntentConfig {
    /// The gate's settings, defaults resolved against `state_dir`.
    pub fn settings(&self, state_dir: &Path) -> Settings {
        Settings {
            catalog_dir: self
                .catalog_dir
                .clone()
                .unwrap_or_else(|| state_dir.join("catalog")),
            trust: self.trust.clone(),
            policy: self.policy.clone(),
            audit_log: self.audit_log.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_template_is_a_valid_config() {
        let text = include_str!("../sandbox.toml")
            .replace("@DIR@", "/tmp/sb")
            .replace("@REPO@", "/repo");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth-intentd.toml");
        std::fs::write(&p, text).unwrap();
        let cfg: IntentConfig = hearth_common::config::load(&p).unwrap();
        let s = cfg.settings(Path::new("/tmp/sb/state/hearth-intentd"));
        assert_eq!(s.catalog_dir, PathBuf::from("/repo/build/catalog"));
        assert_eq!(
            s.trust.vendor_roots,
            vec![PathBuf::from("/repo/build/catalog/vendor-root.pem")]
        );
        assert_eq!(s.policy.pending_ttl_secs, 300);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[policy]\ntwo_persons = true\n").unwrap();
        let e = hearth_common::config::load::<IntentConfig>(&p).unwrap_err();
        assert!(e.to_string().contains("two_persons"), "{e}");
    }
}

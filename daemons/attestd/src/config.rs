//! hearth-attestd's configuration (`/etc/hearth/hearth-attestd.toml`).

use std::path::PathBuf;

use serde::Deserialize;

fn default_listen() -> String {
    "0.0.0.0:8443".to_string()
}
fn default_ek_handle() -> u32 {
    0x8101_0001
}
fn default_ak_handle() -> u32 {
    0x8100_0A71
}
fn default_nv_index() -> u32 {
    0x0140_0A71
}
fn default_renew_before_days() -> u32 {
    30
}
fn default_check_interval_s() -> u64 {
    3600
}
fn default_quote_concurrency() -> usize {
    2
}
fn default_quote_burst() -> u32 {
    8
}
fn default_quote_per_minute() -> u32 {
    30
}

/// The daemon's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TCTI: `device:/dev/tpmrm0` in production, `swtpm:host=127.0.0.1,port=N` in tests.
    pub tcti: String,
    /// Persistent handle of the RSA EK (TCG: 0x81010001).
    #[serde(default = "default_ek_handle")]
    pub ek_handle: u32,
    /// Persistent handle of the AK.
    #[serde(default = "default_ak_handle")]
    pub ak_handle: u32,
    /// The measurement register (NV extend index).
    #[serde(default = "default_nv_index")]
    pub nv_index: u32,
    /// HTTPS listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// PEM certificate chain of the endpoint: leaf first, the appliance's
    /// root CA last (issued by hearth-pkid).
    pub tls_cert: PathBuf,
    /// PEM private key of the endpoint certificate.
    pub tls_key: PathBuf,
    /// PEM of the appliance's root CA certificate (served by /v1/identity).
    pub root_ca: PathBuf,
    /// Names (DNS names or IP addresses, within pkid's name constraints) of
    /// the endpoint certificate hearth-pkid issues at every start, written
    /// to `tls_cert`, `tls_key` and `root_ca`.
    #[serde(default)]
    pub tls_from_pkid: Vec<String>,
    /// With `tls_from_pkid`: while running, the daemon asks hearth-pkid for
    /// a fresh endpoint certificate (new key) once fewer than this many days
    /// of the served certificate's validity remain, writes it to `tls_cert`,
    /// `tls_key` (mode 0600) and `root_ca`, and serves it from the next TLS
    /// handshake on, without a restart. Default 30 (a third of pkid's
    /// 90-day daemon certificates).
    #[serde(default = "default_renew_before_days")]
    pub tls_renew_before_days: u32,
    /// With `tls_from_pkid`: seconds between two checks of the served
    /// certificate's expiry (and between retries when hearth-pkid does not
    /// issue; the current certificate is served meanwhile). Default 3600;
    /// at least 1.
    #[serde(default = "default_check_interval_s")]
    pub tls_check_interval_s: u64,
    /// Names (DNS names or IP addresses) for a throwaway self-signed chain,
    /// made at `tls_cert`, `tls_key` and `root_ca` when those files do not
    /// exist, until hearth-pkid issues the endpoint certificate. Empty (the
    /// default): the files must exist.
    #[serde(default)]
    pub tls_generate: Vec<String>,
    /// Users allowed to submit measurements over D-Bus (hearth-intentd's
    /// user), by name or numeric uid. Nobody else may, not even admins.
    #[serde(default)]
    pub measurement_users: Vec<String>,
    /// Executables measured when the daemon starts (every Hearth binary:
    /// production installs them under /usr/libexec/hearth and /usr/bin),
    /// logged as kind `binary` under the configured path
    /// (`/proc/self/exe`: under the running daemon's real path). A path
    /// that does not exist is skipped with a warning; any other read
    /// failure stops start-up.
    #[serde(default)]
    pub measure_binaries: Vec<PathBuf>,
    /// The firmware event log to include in quotes, when readable
    /// (production: /sys/kernel/security/tpm0/binary_bios_measurements).
    #[serde(default)]
    pub firmware_event_log: Option<PathBuf>,
    /// HTTPS requests using the TPM at the same time (quote, enroll,
    /// identity, status); more wait up to 2 s, then get 503. Default 2;
    /// at least 1. Measurements over D-Bus never wait behind more.
    #[serde(default = "default_quote_concurrency")]
    pub quote_concurrency: usize,
    /// Quotes and enrollments one client address may ask at once (then
    /// 429). Default 8; at least 1.
    #[serde(default = "default_quote_burst")]
    pub quote_burst: u32,
    /// Quotes and enrollments per minute per client address after
    /// `quote_burst` (then 429). Default 30; at least 1.
    #[serde(default = "default_quote_per_minute")]
    pub quote_per_minute: u32,
    /// Who may read status, log and PCRs over D-Bus.
    #[serde(default)]
    pub access: hearth_runtime::AccessConfig,
}

impl hearth_runtime::DaemonConfig for Config {
    fn access(&self) -> &hearth_runtime::AccessConfig {
        &self.access
    }
}

/// A configured measurement user that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("measurement_users: no such user {0:?}")]
pub struct UnknownUser(pub String);

/// A configuration value out of range.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason} (got {value})")]
pub struct InvalidValue {
    /// The key.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What it must be.
    pub reason: &'static str,
}

impl Config {
    /// Checks the values serde cannot: `tls_check_interval_s`,
    /// `quote_concurrency`, `quote_burst` and `quote_per_minute` at least 1.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if self.tls_check_interval_s == 0 {
            return Err(InvalidValue {
                field: "tls_check_interval_s",
                value: "0".into(),
                reason: "must be at least 1 second",
            });
        }
        for (field, v) in [
            ("quote_concurrency", self.quote_concurrency as u64),
            ("quote_burst", u64::from(self.quote_burst)),
            ("quote_per_minute", u64::from(self.quote_per_minute)),
        ] {
            if v == 0 {
                return Err(InvalidValue {
                    field,
                    value: "0".into(),
                    reason: "must be at least 1",
                });
            }
        }
        Ok(())
    }

    /// The endpoint's bounds from `quote_concurrency`, `quote_burst` and
    /// `quote_per_minute`.
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            concurrent: self.quote_concurrency,
            burst: self.quote_burst,
            per_minute: self.quote_per_minute,
            ..crate::server::Limits::default()
        }
    }

    /// The uids of `measurement_users` (names looked up in the system's
    /// user database; numbers taken as uids).
    pub fn measurement_uids(&self) -> Result<Vec<u32>, UnknownUser> {
        self.measurement_users
            .iter()
            .map(|u| {
                if let Ok(uid) = u.parse::<u32>() {
                    return Ok(uid);
                }
                match nix::unistd::User::from_name(u) {
                    Ok(Some(user)) => Ok(user.uid.as_raw()),
                    _ => Err(UnknownUser(u.clone())),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "tcti = \"device:/dev/tpmrm0\"\ntls_cert = \"/c\"\ntls_key = \"/k\"\nroot_ca = \"/r\"\n";

    #[test]
    fn renewal_keys_default_to_thirty_days_checked_hourly() {
        let cfg: Config = toml::from_str(BASE).unwrap();
        assert_eq!(cfg.tls_renew_before_days, 30);
        assert_eq!(cfg.tls_check_interval_s, 3600);
        assert_eq!(cfg.limits(), crate::server::Limits::default());
        cfg.validate().unwrap();
    }

    #[test]
    fn renewal_keys_are_read_and_a_zero_interval_is_refused_by_name() {
        let cfg: Config = toml::from_str(&format!(
            "{BASE}tls_renew_before_days = 45\ntls_check_interval_s = 0\n"
        ))
        .unwrap();
        assert_eq!(cfg.tls_renew_before_days, 45);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("tls_check_interval_s"), "{err}");
    }

    #[test]
    fn a_misspelt_renewal_key_is_refused() {
        let err = toml::from_str::<Config>(&format!("{BASE}tls_renew_before = \"30d\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls_renew_before"), "{err}");
    }
}

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
    /// Uids allowed to submit measurements (hearth-intentd's user).
    #[serde(default)]
    pub measurement_uids: Vec<u32>,
    /// Executables measured when the daemon starts (the Hearth binaries).
    #[serde(default)]
    pub measure_binaries: Vec<PathBuf>,
    /// The firmware event log to include in quotes, when readable
    /// (production: /sys/kernel/security/tpm0/binary_bios_measurements).
    #[serde(default)]
    pub firmware_event_log: Option<PathBuf>,
}

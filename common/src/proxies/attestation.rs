//! `org.hearth.Attestation1` (hearth-attestd): runtime measurements into the
//! TPM register, and their state. See docs/dbus/attestation.md; the JSON
//! results are types of [`crate::contract::attestation`].

use crate::HearthError;

/// hearth-attestd's interface.
#[zbus::proxy(
    interface = "org.hearth.Attestation1",
    default_service = "org.hearth.Attestation1",
    default_path = "/org/hearth/Attestation1",
    gen_blocking = false
)]
pub trait Attestation {
    /// Records a measurement and extends the TPM register; returns its record
    /// number. `kind`: binary, model, playbook-catalog, policy or action;
    /// `sha256`: 64 hex digits. Only the configured measurement users may.
    fn measure(&self, kind: &str, name: &str, sha256: &str) -> Result<u64, HearthError>;
    /// Log and register agreement -> `Status`.
    fn status(&self) -> Result<String, HearthError>;
    /// The runtime event log -> `[Event]`.
    fn log(&self) -> Result<String, HearthError>;
    /// The boot PCRs (SHA-256 bank) -> `Pcrs` (index -> hex).
    fn pcrs(&self) -> Result<String, HearthError>;
}

//! `org.hearth.Pki1`, served by hearth-pkid: the appliance CA. Structured
//! results are JSON of the types of [`crate::contract::pki`]; read them with
//! its typed calls.

use crate::HearthError;

/// The appliance CA over the bus.
#[zbus::proxy(
    interface = "org.hearth.Pki1",
    default_service = "org.hearth.Pki1",
    default_path = "/org/hearth/Pki1",
    gen_blocking = false
)]
pub trait Pki {
    /// Runs the key ceremony (idempotent); JSON `CaInfo`.
    fn init(&self) -> Result<String, HearthError>;
    /// The CA's certificates and constraints; JSON `CaInfo`.
    fn info(&self) -> Result<String, HearthError>;
    /// The root certificate, PEM.
    fn root_certificate(&self) -> Result<String, HearthError>;
    /// Issues a `server` certificate for a name, its key generated and
    /// exported; JSON `Issued`. `days` 0 = default.
    fn issue_certificate(&self, name: &str, days: u32) -> Result<String, HearthError>;
    /// Issues a certificate of `profile` for a name, key generated and
    /// exported; JSON `Issued`.
    fn issue_for_name(&self, name: &str, profile: &str, days: u32) -> Result<String, HearthError>;
    /// Issues a certificate for a PEM CSR; JSON `Issued`.
    fn issue_from_csr(
        &self,
        csr_pem: &str,
        profile: &str,
        days: u32,
    ) -> Result<String, HearthError>;
    /// Issues a `daemon` certificate with a fresh key; JSON `DaemonCertificate`.
    fn issue_daemon_certificate(&self, name: &str) -> Result<String, HearthError>;
    /// Revokes by serial or name; JSON `CertificateDiff`.
    fn revoke_certificate(&self, serial_or_name: &str) -> Result<String, HearthError>;
    /// Every issued certificate; JSON array of `CertificateSummary`.
    fn list_certificates(&self) -> Result<String, HearthError>;
    /// The records for a serial or name; JSON array of `Certificate`.
    fn show_certificate(&self, serial_or_name: &str) -> Result<String, HearthError>;
    /// The current CRL, PEM.
    fn crl(&self) -> Result<String, HearthError>;
    /// Signs a playbook with the token's playbook-signer key; JSON `PlaybookSignature`.
    fn sign_playbook(&self, payload: &str) -> Result<String, HearthError>;
    /// The playbook signer's certificate then the issuing CA, PEM.
    fn playbook_signer_certificate(&self) -> Result<String, HearthError>;
}

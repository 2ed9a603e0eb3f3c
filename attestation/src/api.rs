//! The JSON documents of the appliance's HTTPS endpoint (shared by
//! hearth-attestd and hearth-verify). Binary TPM structures travel as
//! lowercase hex of their exact marshalled bytes; certificates as PEM.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::eventlog::Event;

/// The PCRs every quote covers (boot chain: 0-7, and 11).
pub const BOOT_PCRS: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 11];

/// Nonce length a verifier sends (some TPMs reject more than 20 bytes).
pub const NONCE_LEN: usize = 20;

/// `GET /v1/identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The EK's TPMT_PUBLIC, hex.
    pub ek_public: String,
    /// The EK certificate from NV, PEM, when the TPM has one.
    pub ek_cert_pem: Option<String>,
    /// The AK's TPMT_PUBLIC, hex.
    pub ak_public: String,
    /// The measurement register's TPMS_NV_PUBLIC, hex.
    pub nv_public: String,
    /// The appliance's root CA certificate, PEM.
    pub root_ca_pem: String,
}

/// `POST /v1/enroll` request: the verifier's MakeCredential output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// TPM2B_ID_OBJECT contents (integrity HMAC + encrypted credential), hex.
    pub credential_blob: String,
    /// TPM2B_ENCRYPTED_SECRET contents (the seed encrypted to the EK), hex.
    pub secret: String,
}

/// `POST /v1/enroll` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The credential ActivateCredential recovered, hex.
    pub credential: String,
}

/// `POST /v1/quote` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// The verifier's fresh nonce, hex (at most 20 bytes).
    pub nonce: String,
}

/// A TPMS_ATTEST with its TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// Marshalled TPMS_ATTEST, hex (the signed bytes).
    pub attest: String,
    /// Marshalled TPMT_SIGNATURE, hex.
    pub signature: String,
}

/// `POST /v1/quote` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteResponse {
    /// TPM2_Quote of [`BOOT_PCRS`] (SHA-256 bank) with the nonce.
    pub quote: Signed,
    /// The SHA-256 PCR values the quote signed, by PCR index.
    pub pcrs: BTreeMap<u8, String>,
    /// TPM2_NV_Certify of the measurement register with the nonce.
    pub nv_certify: Signed,
    /// The register's TPMS_NV_PUBLIC, hex.
    pub nv_public: String,
    /// The runtime event log.
    pub event_log: Vec<Event>,
    /// The firmware (UEFI) event log, base16, when the kernel exposes one.
    pub firmware_event_log: Option<String>,
}

/// An error answer of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

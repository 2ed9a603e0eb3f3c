//! Remote attestation for Hearth with a TPM 2.0.
//!
//! * Appliance side ([`tpm`], the only module that touches the TPM):
//!   endorsement key from the TCG template and its certificate from NV, an
//!   attestation key (restricted ECC P-256 signing key) under it, the runtime
//!   measurement register (an NV index of type TPM_NT_EXTEND), quotes of the
//!   boot PCRs and NV certifications of the register, credential activation.
//! * Verifier side, pure software ([`wire`], [`crypto`], [`eventlog`],
//!   [`verify`], [`client`], [`flow`]): MakeCredential against the EK, checks
//!   of quote and certification signatures, nonces, PCR digests, event log
//!   replay, golden policies; [`tcglog`]: the firmware's TCG event log,
//!   parsed and replayed to PCRs 0-7.
//! * The endpoint's JSON documents ([`api`]) and its tiny HTTP/1.1 ([`http`]).
//!
//! Invariants: the verifier believes nothing it has not checked against a
//! signature of the enrolled AK, and talks only to a server whose certificate
//! chains to the pinned root CA. This crate never uses D-Bus and never logs
//! secrets (the register's authorization value stays with the caller).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod client;
pub mod crypto;
pub mod eventlog;
pub mod flow;
pub mod http;
#[cfg(feature = "swtpm")]
pub mod swtpm;
pub mod tcglog;
pub mod tpm;
pub mod verify;
pub mod wire;

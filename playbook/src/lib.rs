//! Hearth's signed playbooks.
//!
//! * [`methods`]: THE allow-list of daemon methods a step may call (one table).
//! * [`format`]: the playbook file (spec + steps + undo), parsed strictly, and
//!   rendering validated parameters into concrete calls.
//! * [`dsse`]: DSSE envelopes (PAE, ECDSA P-256 SHA-256) carrying the signer's
//!   certificate chain; signing with a key file (or any [`dsse::Signer`]).
//! * [`trust`]: verification against configured anchors (chain, codeSigning
//!   EKU, validity, CRL) and anti-rollback state.
//! * [`catalog`]: loading and installing a directory of envelopes.
//! * [`keygen`]: the build/test signing PKI.
//!
//! Invariants: a playbook can express only allow-listed calls with arguments
//! templated from its typed parameters, never a shell or an arbitrary
//! command; an envelope is used only after its whole chain, signature and
//! version check pass; every refusal names the file and the reason.
//! The library never calls the bus and never executes anything; the
//! `hearth-playbook` tool's `sign-pkid` calls hearth-pkid's `SignPlaybook`.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod dsse;
pub mod format;
pub mod keygen;
pub mod methods;
pub mod trust;

pub use format::{ArgValue, Call, Playbook, RenderedStep};
pub use trust::{Refusal, RefusalKind, RollbackState, TrustConfig, TrustStore};

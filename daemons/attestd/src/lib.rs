//! hearth-attestd: the appliance's attestation daemon.
//!
//! * [`engine`]: the append-only runtime event log mirrored into a TPM NV
//!   extend index, quotes, credential activation (all TPM work through
//!   `hearth_attestation::tpm`, on the blocking pool).
//! * [`server`]: the HTTPS JSON endpoint (rustls) for remote verifiers.
//! * [`dbus`]: `org.hearth.Attestation1`, a thin adapter over the engine.
//! * [`tls`]: the endpoint certificate from hearth-pkid (at start, and
//!   renewed before expiry while running, swapped into rustls without a
//!   restart), or a throwaway chain until pkid issues one.
//! * [`config`]: the configuration file.
//!
//! Must never: rewrite or drop logged events, extend the register with
//! anything not first logged, hide a log/register mismatch, log the
//! register's authorization value or a TLS private key, or accept
//! measurements from callers not listed in the configuration.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
pub mod dbus;
pub mod engine;
pub mod server;
pub mod tls;

pub use config::Config;
pub use engine::{Engine, EngineError, Status};

//! hearth-pkid: the appliance's certificate authority.
//!
//! The CA's keys live in a PKCS#11 token (through `hearth-hsm`) and never
//! leave it: a root (self-signed, pathlen 1, name constraints limited to the
//! configured DNS zones and LAN subnets) and an issuing intermediate. The
//! engine ([`Engine`]) runs the key ceremony, issues leaf certificates from
//! CSRs or for names (keys generated here for devices that cannot make a
//! CSR), revokes, publishes a CRL signed by the issuing CA, and keeps an
//! inventory, all persisted atomically. The D-Bus adapter is a thin layer
//! over the engine.
//!
//! Invariants:
//! * an existing root is never replaced; the ceremony is idempotent;
//! * every issued name is inside the root's constraints, and always in the
//!   subjectAltName (not only the CN);
//! * leaf validity is at most 398 days; serials are 128 random bits;
//! * a refused request writes nothing; the CRL is regenerated on every
//!   revocation and before it expires;
//! * the PIN comes from a systemd credential or a 0600 file, never argv/env.
#![forbid(unsafe_code)]

pub mod ca;
pub mod config;
pub mod csr;
pub mod dbus;
pub mod error;
pub mod inventory;
pub mod signer;

pub use ca::{CaInfo, DaemonCertificate, Engine, Issued, PlaybookSignature, Summary};
pub use config::PkiConfig;
pub use error::PkiError;
pub use inventory::{Profile, Record};

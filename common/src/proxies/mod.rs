//! Client proxies for every Hearth interface, shared by hearthctl, the gate
//! and the tests. Each returns [`crate::HearthError`], so a daemon's named
//! error reaches the client with its name.

pub mod attestation;
pub mod daemon;
pub mod dhcp;
pub mod dns;
pub mod intent;
pub mod network;
pub mod pki;

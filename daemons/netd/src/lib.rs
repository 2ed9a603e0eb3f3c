//! hearth-netd: network domains.
//!
//! A domain is a Linux bridge `hb-<name>` with an IPv4 gateway (and optional
//! ULA and VLAN), created and reconciled over rtnetlink ([`links`]). Isolation
//! between domains lives in one nftables table, `inet hearth`, replaced as a
//! whole in one netlink transaction ([`nft`]) and guarded against other
//! programs by a watcher on nftables notifications ([`watch`]). The
//! [`engine::Engine`] ties the validated [`model`] to the kernel and persists
//! run-time changes in the state directory.
//!
//! Invariants:
//! * never a moment without isolation: every change replaces the table in one
//!   transaction whose outcome is read back message by message;
//! * bad input changes nothing: every request is validated into a new model
//!   before the kernel or the disk is touched;
//! * only links named `hb-*`/`hv-*` and marked with our alias are ever deleted;
//! * nothing shells out (`ip`, `nft`): all kernel work is netlink.

pub mod config;
pub mod dbus;
pub mod engine;
pub mod error;
pub mod links;
pub mod model;
pub mod netlink;
pub mod nft;
pub mod watch;

pub use config::NetworkConfig;
pub use engine::Engine;
pub use error::NetError;
pub use model::Model;

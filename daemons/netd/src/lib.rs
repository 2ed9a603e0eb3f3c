//! hearth-netd: network domains.
//!
//! A domain is a Linux bridge `hb-<name>` with an IPv4 gateway (and optional
//! ULA and VLAN), created and reconciled over rtnetlink ([`links`]:
//! netlink-packet-route messages on a netlink-sys socket). Isolation
//! between domains lives in one nftables table, `inet hearth`, replaced as a
//! whole in one netlink transaction ([`nft`]) and guarded against other
//! programs by a watcher on nftables notifications ([`watch`]). The
//! [`engine::Engine`] ties the validated [`model`] to the kernel and persists
//! run-time changes in the state directory; [`dbus`] serves it as
//! `org.hearth.Network1` (docs/dbus/network.md). Hooks, priorities and why a
//! drop here holds: docs/decisions/010-netd-nftables.md.
//!
//! Invariants:
//! * never a moment without isolation: every change replaces the table in one
//!   transaction whose outcome is read back message by message;
//! * bad input changes nothing: every request is validated into a new model
//!   before the kernel or the disk is touched;
//! * only links named `hb-*`/`hv-*` and marked with our alias are ever deleted;
//! * nothing shells out (`ip`, `nft`): all kernel work is netlink;
//! * it must never delete or modify a link it does not own, nor touch any
//!   nftables table but `inet hearth`. `hb-`/`hv-` names are its namespace:
//!   an existing bridge named for a configured domain is adopted (the alias
//!   that marks ownership can only be set after creation, so a crash in
//!   between leaves such a bridge), any other kind of link in the way is
//!   refused, and an `hb-` link without the alias that is not configured is
//!   left alone.

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

//! hearth-dhcpd: a DHCPv4 server for every network domain of hearth-netd,
//! the lease names in hearth-dnsd and the device inventory
//! (`org.hearth.Dhcp1`). Packets are encoded and decoded by the maintained
//! `dhcproto` crate (docs/decisions/080-dhcp-server.md).
//!
//! * [`config`]: zone, lease times, optional per-domain ranges.
//! * [`engine`]: leases, offers, reservations, conflicts (DHCPDECLINE) and
//!   the inventory; the answer to each request; atomic persistence. No
//!   sockets, no bus.
//! * [`server`]: one socket per domain bound to its bridge, the follower of
//!   hearth-netd's domains over D-Bus, the sweep of ended leases.
//! * [`names`]: lease names in hearth-dnsd, through `org.hearth.Dns1`.
//! * [`oui`]: vendors by MAC prefix from Debian's `ieee-data`.
//! * [`dbus`]: the bus interface, `org.hearth.Dhcp1`.
//!
//! Invariants: an address still leased or offered to one client, or
//! reserved for one, is never given to another; every change is on disk
//! before the reply leaves; a name the owner made is never overwritten.
//! It holds no secrets.
#![forbid(unsafe_code)]

pub mod config;
pub mod dbus;
pub mod engine;
pub mod names;
pub mod oui;
pub mod server;

use std::sync::Arc;

use anyhow::Context as _;

pub use config::DhcpConfig;
pub use engine::Engine;

/// The daemon's start-up: load the leases, start following hearth-netd,
/// the name worker and the sweep; return the interface.
pub async fn start(
    ctx: hearth_runtime::Context,
    cfg: DhcpConfig,
) -> anyhow::Result<dbus::DhcpInterface> {
    cfg.validate()
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", ctx.config_path.display()))?;
    let engine = Engine::open(&cfg, &ctx.state_dir)?;
    let oui = oui::Oui::load(&cfg.oui_file);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(server::Shared::new(engine, tx, ctx.notifier.clone(), cfg));
    ctx.notifier.status("waiting for hearth-netd's domains");
    tokio::spawn(names::run(shared.clone(), ctx.connection.clone(), rx));
    tokio::spawn(server::follow(shared.clone(), ctx.connection.clone()));
    tokio::spawn(server::expire(shared.clone()));
    Ok(dbus::DhcpInterface::new(shared, ctx.access.clone(), oui))
}

//! hearth-netd: network domains (bridges over rtnetlink, isolation in
//! nftables), served as `org.hearth.Network1`. Thin binary over the
//! `hearth_netd` library: load the base configuration and the persisted
//! changes, reconcile the kernel, start the guard of the table, serve.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use hearth_netd::{dbus::NetworkInterface, Engine, NetworkConfig};

fn main() -> ExitCode {
    hearth_daemon::main::<NetworkConfig, _, _, _>(
        hearth_common::names::NETWORK,
        |ctx, cfg| async move {
            let engine = Engine::open(cfg, &ctx.state_dir)?;
            ctx.notifier
                .status("reconciling links and table inet hearth");
            let rep = engine.reconcile().context("reconcile")?;
            tracing::info!(
                changes = rep.changes(),
                report = %serde_json::to_string(&rep).unwrap_or_default(),
                "reconciled"
            );
            let watcher = engine.watch().context("cannot watch nftables")?;
            ctx.notifier.status(&format!(
                "guarding table inet hearth ({} domains)",
                engine.model().domains.len()
            ));
            Ok(NetworkInterface::new(
                engine,
                ctx.access.clone(),
                Some(watcher),
            ))
        },
    )
}

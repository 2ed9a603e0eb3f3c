//! hearth-netd: network domains (bridges over rtnetlink, isolation in
//! nftables), served as `org.hearth.Network1`. Thin binary over the
//! `hearth_netd` library: load the base configuration and the persisted
//! changes, reconcile the kernel, start the guard of the table, serve.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use hearth_netd::{dbus::NetworkInterface, Engine, NetworkConfig};
use zbus::object_server::SignalEmitter;

fn main() -> ExitCode {
    hearth_runtime::main::<NetworkConfig, _, _, _>(
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
            // Restores by the guard become Changed("restore", {"why", "generation"}).
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let watcher = engine
                .watch_with(Box::new(move |doc| {
                    let _ = tx.send(doc);
                }))
                .context("cannot watch nftables")?;
            let conn = ctx.connection.clone();
            tokio::spawn(async move {
                while let Some(doc) = rx.recv().await {
                    let sent = match SignalEmitter::new(&conn, ctx.service.path) {
                        Ok(em) => NetworkInterface::changed(&em, "restore", &doc).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        tracing::warn!("could not emit Changed(restore): {e}");
                    }
                }
            });
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

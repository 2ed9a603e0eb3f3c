//! Lease names in hearth-dnsd, through `org.hearth.Dns1` only.
//!
//! A bound lease whose client sent a host name becomes
//! `HOSTNAME.<domain>.<zone>` → its address. The name is made only when
//! hearth-dnsd holds no record for it: a name the owner made (or another
//! device already holds) is never overwritten; the clash is logged. The
//! record is removed when the lease ends (release, expiry, decline, forget,
//! domain deleted), and only the record this daemon made.

use std::sync::Arc;

use hearth_common::proxies::dns::DnsProxy;
use tokio::sync::mpsc::UnboundedReceiver;
use zbus::proxy::CacheProperties;

use crate::engine::NameChange;
use crate::server::Shared;

/// Applies name changes in order until the channel closes.
pub async fn run(
    shared: Arc<Shared>,
    conn: zbus::Connection,
    mut rx: UnboundedReceiver<NameChange>,
) {
    let dns = match DnsProxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("cannot make the hearth-dnsd proxy; lease names are off: {e}");
            return;
        }
    };
    while let Some(change) = rx.recv().await {
        apply(&shared, &dns, change).await;
    }
}

async fn apply(shared: &Shared, dns: &DnsProxy<'_>, change: NameChange) {
    match change {
        NameChange::Add { name, address, mac } => {
            if shared.engine().name_in_use(&name) {
                tracing::warn!(%name, %mac, "name already held by another device's lease; not made");
                return;
            }
            match hearth_common::contract::dns::name_records(dns, name.as_str()).await {
                Ok(r) => {
                    if r.fixed || !r.records.is_empty() {
                        tracing::warn!(%name, %mac, %address, "name exists in hearth-dnsd (made by the owner); not overwritten");
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(%name, "cannot ask hearth-dnsd about the name: {e}");
                    return;
                }
            }
            let addr = address.to_string();
            if let Err(e) = dns.add_record(name.as_str(), &addr, false).await {
                tracing::warn!(%name, %address, "hearth-dnsd refused the lease name: {e}");
                return;
            }
            if shared.engine().name_made(mac, address, &name) {
                tracing::info!(%name, %address, "lease name made");
            } else {
                // The lease ended meanwhile.
                let _ = dns.remove_record(name.as_str(), &addr, false).await;
            }
        }
        NameChange::Remove { name, address } => {
            match dns
                .remove_record(name.as_str(), &address.to_string(), false)
                .await
            {
                Ok(_) => tracing::info!(%name, %address, "lease name removed"),
                Err(hearth_common::HearthError::NotFound(_)) => {}
                Err(e) => tracing::warn!(%name, %address, "cannot remove the lease name: {e}"),
            }
        }
    }
}

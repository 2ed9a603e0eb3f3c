//! Answering on every domain's gateway: hearth-netd gives each domain's
//! bridge a gateway address, and hearth-dhcpd hands that address out as the
//! domain's DNS server. With `gateway_port` configured, hearth-dnsd follows
//! hearth-netd's domains over the bus (`ListDomains`, read again every
//! `gateway_poll_secs`) and serves the zones on `<gateway>:<gateway_port>`
//! (UDP and TCP) of each domain whose services include `dns`; a deleted
//! domain's listener is shut down. Nothing is shared through files: the
//! two daemons agree on the address through `org.hearth.Network1`.
//!
//! Kept apart from [`crate::server`]: it only starts and stops
//! [`DnsServer`]s over the same live [`ZoneView`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use hearth_common::contract::network::{self, Domain};
use hearth_common::proxies::network::NetworkProxy;
use zbus::proxy::CacheProperties;

use crate::engine::ZoneView;
use crate::server::DnsServer;

/// The gateways of the domains that offer DNS, from netd's `ListDomains`.
pub fn gateways(list: &[Domain]) -> Vec<(String, Ipv4Addr)> {
    list.iter()
        .filter(|d| d.services.iter().any(|s| s == "dns"))
        .map(|d| (d.name.to_string(), d.gateway.addr()))
        .collect()
}

/// Follows hearth-netd's domains forever, serving `view` on each gateway.
pub async fn follow(conn: zbus::Connection, view: ZoneView, port: u16, poll: Duration) {
    let mut running: BTreeMap<SocketAddr, (String, DnsServer)> = BTreeMap::new();
    loop {
        match domains(&conn).await {
            Ok(list) => {
                let want: BTreeMap<SocketAddr, String> = list
                    .into_iter()
                    .map(|(name, gw)| (SocketAddr::V4(SocketAddrV4::new(gw, port)), name))
                    .collect();
                let gone: Vec<SocketAddr> = running
                    .keys()
                    .filter(|a| !want.contains_key(a))
                    .copied()
                    .collect();
                for addr in gone {
                    if let Some((name, server)) = running.remove(&addr) {
                        server.shutdown().await;
                        tracing::info!(domain = %name, %addr, "domain gone: no longer answering on its gateway");
                    }
                }
                for (addr, name) in want {
                    if running.contains_key(&addr) {
                        continue;
                    }
                    match DnsServer::start(&[addr], view.clone()).await {
                        Ok(server) => {
                            tracing::info!(domain = %name, %addr, "answering on the domain's gateway");
                            running.insert(addr, (name, server));
                        }
                        Err(e) => {
                            tracing::warn!(domain = %name, "cannot answer on the gateway yet: {e}")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read hearth-netd's domains: {e}"),
        }
        tokio::time::sleep(poll).await;
    }
}

async fn domains(conn: &zbus::Connection) -> Result<Vec<(String, Ipv4Addr)>, String> {
    let net = NetworkProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let list = network::domains(&net).await.map_err(|e| e.to_string())?;
    Ok(gateways(&list))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_domains_offering_dns() {
        let doc = r#"[{"name":"lan","bridge":"hb-lan","subnet":"10.0.1.0/24","gateway":"10.0.1.1","ula":null,"vlan":null,"services":["dns","dhcp"],"admin":false},
                      {"name":"cams","bridge":"hb-cams","subnet":"10.0.2.0/24","gateway":"10.0.2.1","ula":null,"vlan":null,"services":["dhcp"],"admin":false}]"#;
        let list: Vec<Domain> = hearth_common::contract::decode("ListDomains", doc).unwrap();
        assert_eq!(
            gateways(&list),
            vec![("lan".to_string(), Ipv4Addr::new(10, 0, 1, 1))]
        );
    }
}

//! The sockets and the tasks: one UDP socket per served domain, bound to
//! port 67 on that domain's bridge only (SO_BINDTODEVICE), so a request is
//! answered from the pool of the link it came in on; the follower of
//! hearth-netd's domains (its `Changed` signal, and a poll as a backstop);
//! the sweep of ended leases.
//!
//! Replies go to the client port by broadcast on the bridge (the client has
//! no address yet) or, for a renewal, by unicast to the client's address.
//! No raw socket is used, so no capability beyond binding port 67 is needed.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use futures_util::StreamExt;
use hearth_common::proxies::network::NetworkProxy;
use hearth_common::types::DomainId;
use hearth_runtime::Notifier;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use zbus::proxy::CacheProperties;

use crate::config::DhcpConfig;
use crate::engine::{Destination, Domain, Engine, NameChange, PoolStatus};

/// The largest request read (a DHCP message fits in 576 octets; options
/// may make it longer, never past an Ethernet frame).
const MAX_PACKET: usize = 1500;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What every task shares.
pub struct Shared {
    engine: Mutex<Engine>,
    domains: Mutex<BTreeMap<DomainId, Domain>>,
    names: UnboundedSender<NameChange>,
    notifier: Notifier,
    cfg: DhcpConfig,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// Shares `engine`.
    pub fn new(
        engine: Engine,
        names: UnboundedSender<NameChange>,
        notifier: Notifier,
        cfg: DhcpConfig,
    ) -> Shared {
        Shared {
            engine: Mutex::new(engine),
            domains: Mutex::new(BTreeMap::new()),
            names,
            notifier,
            cfg,
        }
    }

    /// The engine (a std mutex, never held across an await).
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        match self.engine.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The domains served now.
    pub fn domains(&self) -> BTreeMap<DomainId, Domain> {
        match self.domains.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set_domains(&self, d: BTreeMap<DomainId, Domain>) {
        match self.domains.lock() {
            Ok(mut g) => *g = d,
            Err(p) => *p.into_inner() = d,
        }
    }

    /// Queues name changes for hearth-dnsd.
    pub fn send_names(&self, changes: Vec<NameChange>) {
        for c in changes {
            let _ = self.names.send(c);
        }
    }

    /// The pools of every served domain.
    pub fn pools(&self) -> Vec<PoolStatus> {
        let domains = self.domains();
        let engine = self.engine();
        let t = now();
        domains.values().map(|d| engine.pool_status(d, t)).collect()
    }

    /// Sets the status line from the pools.
    pub fn update_status(&self) {
        let pools = self.pools();
        let names: Vec<&str> = pools.iter().map(|p| p.domain.as_str()).collect();
        let full: Vec<&str> = pools
            .iter()
            .filter(|p| p.full)
            .map(|p| p.domain.as_str())
            .collect();
        let mut line = format!("serving {} domains ({})", pools.len(), names.join(", "));
        if !full.is_empty() {
            line.push_str(&format!("; pool full: {}", full.join(", ")));
        }
        self.notifier.status(&line);
    }

    /// The configuration.
    pub fn cfg(&self) -> &DhcpConfig {
        &self.cfg
    }
}

/// Binds the server port on `bridge` only.
pub fn bind(bridge: &str, port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain as SockDomain, Protocol, Socket, Type};
    let s = Socket::new(SockDomain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(bridge.as_bytes()))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())?;
    UdpSocket::from_std(s.into())
}

/// Decodes one datagram; `None` (and a debug line) for a malformed one.
///
/// dhcproto 0.14 checks some option lengths with `debug_assert!` (a Client
/// FQDN option shorter than 3 octets panics in a build with debug
/// assertions, and underflows a length without them): the decoder runs
/// under `catch_unwind`, so such a datagram is dropped like any other
/// malformed one instead of ending the domain's task.
pub fn decode(bytes: &[u8]) -> Option<dhcproto::v4::Message> {
    quiet_decoder_panics();
    let decoded =
        std::panic::catch_unwind(|| dhcproto::v4::Message::decode(&mut Decoder::new(bytes)));
    match decoded {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            tracing::debug!(len = bytes.len(), "malformed DHCP packet dropped: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(
                len = bytes.len(),
                "malformed DHCP packet dropped: the decoder refused it"
            );
            None
        }
    }
}

/// Installs (once) a panic hook that stays silent for panics raised inside
/// dhcproto (caught by [`decode`]: one line per junk datagram would let a
/// sender flood the log) and hands every other panic to the default hook.
fn quiet_decoder_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_decoder = info
                .location()
                .is_some_and(|l| l.file().contains("/dhcproto-"));
            if !in_decoder {
                default(info);
            }
        }));
    });
}

/// The packet path for one datagram, as a domain's task runs it but
/// without sockets (for the fuzz target and the benchmark's checks):
/// decode, the engine's answer, the reply encoded. `None` when nothing
/// would be sent.
pub fn packet_path(engine: &mut Engine, d: &Domain, bytes: &[u8], now: u64) -> Option<Vec<u8>> {
    let msg = decode(bytes)?;
    let (reply, _) = engine.handle(d, &msg, now).ok()?.reply?;
    let mut out = Vec::with_capacity(576);
    reply.encode(&mut Encoder::new(&mut out)).ok()?;
    Some(out)
}

/// Serves one domain until the task is aborted.
async fn serve(shared: Arc<Shared>, d: Domain, sock: UdpSocket) {
    let client_port = shared.cfg.port.saturating_add(1);
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let (n, src) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(domain = %d.name, "receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(msg) = decode(&buf[..n]) else {
            continue;
        };
        let outcome = shared.engine().handle(&d, &msg, now());
        let outcome = match outcome {
            Ok(o) => o,
            Err(why) => {
                tracing::debug!(domain = %d.name, %src, "dropped: {why}");
                continue;
            }
        };
        if outcome.pool_full {
            shared.update_status();
        }
        shared.send_names(outcome.names);
        let Some((reply, dest)) = outcome.reply else {
            continue;
        };
        let mut out = Vec::with_capacity(576);
        if let Err(e) = reply.encode(&mut Encoder::new(&mut out)) {
            tracing::error!("cannot encode a reply: {e}");
            continue;
        }
        let to = match dest {
            Destination::Broadcast => Ipv4Addr::BROADCAST,
            Destination::Unicast(ip) if !ip.is_unspecified() => ip,
            Destination::Unicast(_) => Ipv4Addr::BROADCAST,
        };
        if let Err(e) = sock
            .send_to(&out, SocketAddr::V4(SocketAddrV4::new(to, client_port)))
            .await
        {
            tracing::warn!(domain = %d.name, %to, "cannot send the reply: {e}");
        }
    }
}

/// The domains to serve (those whose services name `dhcp`) out of netd's
/// `ListDomains` answer.
pub fn serving(
    list: &[hearth_common::contract::network::Domain],
    cfg: &DhcpConfig,
) -> BTreeMap<DomainId, Domain> {
    let mut out = BTreeMap::new();
    for d in list
        .iter()
        .filter(|d| d.services.iter().any(|s| s == "dhcp"))
    {
        let std::net::IpAddr::V4(net) = d.subnet.net().network() else {
            tracing::warn!(domain = %d.name, subnet = %d.subnet, "not an IPv4 subnet; not served");
            continue;
        };
        let range = cfg.range_of(&d.name);
        let prefix = d.subnet.prefix_len();
        match Domain::new(
            d.name.clone(),
            d.bridge.clone(),
            net,
            prefix,
            d.gateway.addr(),
            range,
        ) {
            Some(dom) => {
                out.insert(d.name.clone(), dom);
            }
            None => {
                tracing::warn!(domain = %d.name, subnet = %d.subnet, "no address to hand out in this domain; not served")
            }
        }
    }
    out
}

/// Follows hearth-netd's domains: serves a new one, stops a deleted one
/// (ending its leases and names). Runs forever.
pub async fn follow(shared: Arc<Shared>, conn: zbus::Connection) {
    let mut running: BTreeMap<DomainId, (Domain, JoinHandle<()>)> = BTreeMap::new();
    let poll = Duration::from_secs(u64::from(shared.cfg.poll_secs));
    let net = loop {
        match NetworkProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!("cannot make the hearth-netd proxy: {e}");
                tokio::time::sleep(poll).await;
            }
        }
    };
    let mut changed = match net.receive_changed().await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot subscribe to hearth-netd's Changed; polling only: {e}");
            None
        }
    };
    loop {
        match hearth_common::contract::network::domains(&net).await {
            Ok(list) => sync(&shared, &mut running, serving(&list, &shared.cfg)),
            Err(e) => tracing::warn!("cannot list hearth-netd's domains: {e}"),
        }
        match changed.as_mut() {
            Some(stream) => {
                tokio::select! {
                    _ = stream.next() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

fn sync(
    shared: &Arc<Shared>,
    running: &mut BTreeMap<DomainId, (Domain, JoinHandle<()>)>,
    want: BTreeMap<DomainId, Domain>,
) {
    let mut changed = false;
    let gone: Vec<DomainId> = running
        .iter()
        .filter(|(k, (d, task))| want.get(*k) != Some(d) || task.is_finished())
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some((d, task)) = running.remove(&k) {
            task.abort();
            changed = true;
            if !want.contains_key(&k) {
                tracing::info!(domain = %k, bridge = %d.bridge, "domain deleted: no longer served");
                let names = shared.engine().drop_domain(&k);
                shared.send_names(names);
            } else {
                tracing::info!(domain = %k, "domain changed: serving it again");
            }
        }
    }
    for (k, d) in want {
        if running.contains_key(&k) {
            continue;
        }
        match bind(&d.bridge, shared.cfg.port) {
            Ok(sock) => {
                tracing::info!(domain = %k, bridge = %d.bridge, gateway = %d.gateway,
                    pool = %format!("{}-{}", d.first, d.last), "serving DHCP");
                let task = tokio::spawn(serve(shared.clone(), d.clone(), sock));
                running.insert(k, (d, task));
                changed = true;
            }
            Err(e) => {
                tracing::warn!(domain = %k, bridge = %d.bridge, "cannot listen on the bridge yet: {e}")
            }
        }
    }
    if changed {
        shared.set_domains(
            running
                .iter()
                .map(|(k, (d, _))| (k.clone(), d.clone()))
                .collect(),
        );
        shared.update_status();
    }
}

/// Sweeps ended leases every `expire_secs`. Runs forever.
pub async fn expire(shared: Arc<Shared>) {
    let every = Duration::from_secs(u64::from(shared.cfg.expire_secs));
    loop {
        tokio::time::sleep(every).await;
        let names = shared.engine().expire(now());
        if !names.is_empty() {
            shared.send_names(names);
            shared.update_status();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::Domain;
    use hearth_common::types::DomainId;

    /// A fresh engine (state in a temporary directory, kept alive by the
    /// returned guard) and the domain lan on 10.9.0.0/`prefix`.
    fn lan_engine(prefix: u8) -> (tempfile::TempDir, Engine, Domain) {
        let dir = tempfile::tempdir().unwrap();
        let cfg: DhcpConfig =
            hearth_common::config::parse(std::path::Path::new("t.toml"), "").unwrap();
        let e = Engine::open(&cfg, dir.path()).unwrap();
        let d = Domain::new(
            DomainId::parse("lan").unwrap(),
            "hb-lan".into(),
            Ipv4Addr::new(10, 9, 0, 0),
            prefix,
            Ipv4Addr::new(10, 9, 0, 1),
            None,
        )
        .unwrap();
        (dir, e, d)
    }

    /// The packet path (decode, then the engine) over many random and
    /// mutated datagrams: nothing panics, and nothing but a well-formed
    /// request from a unicast MAC is answered.
    #[test]
    fn random_and_mutated_datagrams_never_panic() {
        let (_dir, mut e, d) = lan_engine(24);
        // A valid DISCOVER to mutate.
        let mut m = dhcproto::v4::Message::new_with_id(
            1,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[0, 1, 2, 3, 4, 5],
        );
        m.opts_mut().insert(dhcproto::v4::DhcpOption::MessageType(
            dhcproto::v4::MessageType::Discover,
        ));
        let mut base = Vec::new();
        m.encode(&mut Encoder::new(&mut base)).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut answered = 0;
        for i in 0..20_000 {
            let pkt: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 700) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut p = base.clone();
                for _ in 0..(next() % 8 + 1) {
                    let at = (next() as usize) % p.len();
                    p[at] = next() as u8;
                }
                if next() % 4 == 0 {
                    p.truncate((next() as usize) % p.len());
                }
                p
            };
            if let Some(msg) = decode(&pkt) {
                if let Ok(out) = e.handle(&d, &msg, 1000) {
                    if out.reply.is_some() {
                        answered += 1;
                        let mac = hearth_common::mac::MacAddr::from_slice(msg.chaddr()).unwrap();
                        assert_eq!(mac.octets()[0] & 1, 0, "only unicast MACs are answered");
                    }
                }
            }
        }
        // Some mutated DISCOVERs stay valid and are answered.
        assert!(answered > 0);
    }

    /// The fuzz target's seeds are real requests: the DISCOVER is offered
    /// an address of the pool.
    #[test]
    fn the_fuzz_seeds_are_answered() {
        let (_dir, mut e, d) = lan_engine(28);
        let seeds =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/dhcp_packet");
        let discover = std::fs::read(seeds.join("discover")).unwrap();
        let reply = packet_path(&mut e, &d, &discover, 1000).unwrap();
        let m = decode(&reply).unwrap();
        assert_eq!(m.opts().msg_type(), Some(dhcproto::v4::MessageType::Offer));
        assert!(d.in_pool(m.yiaddr()));
        let request = std::fs::read(seeds.join("request")).unwrap();
        let reply = packet_path(&mut e, &d, &request, 1000).unwrap();
        assert_eq!(
            decode(&reply).unwrap().opts().msg_type(),
            Some(dhcproto::v4::MessageType::Ack)
        );
    }
}

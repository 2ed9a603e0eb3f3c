//! Domain links over rtnetlink: bridges `hb-<name>`, their gateway
//! addresses, optional VLAN sub-interfaces `hv-<name>`, and the forwarding
//! sysctls a router needs.
//!
//! [`reconcile`] reads the kernel's links and addresses, creates what is
//! missing, fixes what differs and deletes links it owns that are no longer
//! configured. Ownership: the name prefix `hb-`/`hv-` AND the interface alias
//! [`ALIAS`]; a link lacking either is never deleted. It returns the changes
//! it made, so a second run returning an empty list proves convergence.
//!
//! The messages are netlink-packet-route's, sent synchronously over a
//! netlink-sys socket in the calling thread's network namespace (no
//! hand-written rtnetlink encoding; why not the async `rtnetlink` crate:
//! docs/decisions/012-netd-rtnetlink.md). tests/golden.rs compares the
//! links a fixed reconcile leaves with a listing recorded from the kernel
//! with the hand-written encoder this replaced.

use std::net::IpAddr;
use std::time::Duration;

use hearth_common::types::Cidr;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::error::NetError;
use crate::model::{HostNet, Model};
use crate::netlink::{self as nl, NlError};

/// The interface alias that marks a link as created by hearth-netd.
pub const ALIAS: &str = "hearth-netd";

/// One change made to the kernel (the contract's type: reconcile reports it
/// as it is).
pub use hearth_common::contract::network::LinkChange as Change;

/// A link as the kernel reports it.
#[derive(Debug, Clone, Default)]
pub struct LinkInfo {
    /// Interface index.
    pub index: i32,
    /// Name.
    pub name: String,
    /// `ifi_flags`.
    pub flags: u32,
    /// Index of the master (bridge), 0 if none.
    pub master: i32,
    /// `IFLA_INFO_KIND` (bridge, vlan, veth, …).
    pub kind: Option<String>,
    /// Interface alias.
    pub alias: Option<String>,
    /// Parent index (`IFLA_LINK`).
    pub parent: i32,
    /// VLAN id for a vlan link.
    pub vlan_id: Option<u16>,
}

impl LinkInfo {
    /// True when created by hearth-netd.
    pub fn owned(&self) -> bool {
        (self.name.starts_with("hb-") || self.name.starts_with("hv-"))
            && self.alias.as_deref() == Some(ALIAS)
    }
}

/// An address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Interface index.
    pub index: i32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// What one domain needs in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// Bridge name.
    pub bridge: String,
    /// Gateway addresses with prefix lengths.
    pub addrs: Vec<(IpAddr, u8)>,
    /// VLAN: (link name, parent, id).
    pub vlan: Option<(String, String, u16)>,
}

/// The links the model asks for.
pub fn desired(model: &Model) -> Vec<LinkSpec> {
    model
        .domains
        .values()
        .map(|d| {
            let mut addrs = vec![d.gateway_v4()];
            addrs.extend(d.gateway_v6());
            LinkSpec {
                bridge: d.bridge(),
                addrs,
                vlan: d
                    .vlan
                    .as_ref()
                    .map(|v| (d.vlan_link(), v.parent.clone(), v.id)),
            }
        })
        .collect()
}

fn link_err(op: impl Into<String>) -> impl FnOnce(NlError) -> NetError {
    let op = op.into();
    move |source| NetError::Link { op, source }
}

/// A synchronous rtnetlink socket: requests built and replies parsed by
/// netlink-packet-route, sent over a netlink-sys socket opened in the
/// network namespace of the calling thread. Synchronous because the engine
/// is: it runs under a std mutex in the bus handlers (inside the daemon's
/// tokio runtime, where blocking on another runtime is not allowed) and
/// on test threads that entered a namespace.
struct Rtnl {
    sock: Socket,
    seq: u32,
}

/// How long a request waits for the kernel's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl Rtnl {
    fn open() -> Result<Rtnl, NetError> {
        let open = || -> std::io::Result<Socket> {
            let mut sock = Socket::new(NETLINK_ROUTE)?;
            sock.bind(&SocketAddr::new(0, 0))?;
            sock.set_ext_ack(true)?;
            sock.set_cap_ack(true)?;
            nl::set_recv_timeout(&sock, REPLY_TIMEOUT)?;
            Ok(sock)
        };
        let sock = open().map_err(|e| NetError::Link {
            op: "open rtnetlink socket".into(),
            source: NlError::Io(e),
        })?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags`; returns its sequence number.
    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        let n = self.sock.send(&buf, 0).map_err(NlError::Io)?;
        if n != buf.len() {
            return Err(NlError::Io(std::io::Error::other("short netlink send")));
        }
        Ok(self.seq)
    }

    /// Receives the replies to `seq` up to the last one (the acknowledgement,
    /// the refusal or the end of a dump), handing the messages before it to
    /// `each`.
    fn replies(
        &mut self,
        seq: u32,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), NlError> {
        loop {
            let (data, _) = self.sock.recv_from_full().map_err(|e| {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    NlError::Io(std::io::Error::other(format!(
                        "no netlink reply in {} s",
                        REPLY_TIMEOUT.as_secs()
                    )))
                } else {
                    NlError::Io(e)
                }
            })?;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| NlError::Io(std::io::Error::other(e.to_string())))?;
                let len = (m.header.length as usize).max(16);
                rest = &rest[nl::align(len).min(rest.len())..];
                if m.header.sequence_number != seq {
                    continue;
                }
                let flags = m.header.flags;
                match m.payload {
                    NetlinkPayload::InnerMessage(i) => each(i),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(nl::kernel_error(code.get(), flags, &e.header)),
                        };
                    }
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(nl::kernel_error(d.code, flags, &d.extended_ack));
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// Sends `msg` with `NLM_F_ACK | flags` and waits for the kernel's answer.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        self.replies(seq, |_| {})
    }

    /// Dumps with `msg` and returns every reply message.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.replies(seq, |m| out.push(m))?;
        Ok(out)
    }
}

/// A link message for the link `index` (0: a new one) with `attributes`.
fn link_msg(index: i32, up: bool, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index as u32;
    if up {
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
    }
    m.attributes = attributes;
    m
}

/// Lists every link of the current network namespace.
fn list_links(rt: &mut Rtnl) -> Result<Vec<LinkInfo>, NetError> {
    let msgs = rt
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .map_err(link_err("list links"))?;
    let mut out = Vec::new();
    for msg in msgs {
        let RouteNetlinkMessage::NewLink(m) = msg else {
            continue;
        };
        let mut l = LinkInfo {
            index: m.header.index as i32,
            flags: m.header.flags.bits(),
            ..LinkInfo::default()
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Controller(i) => l.master = i as i32,
                LinkAttribute::Link(i) => l.parent = i as i32,
                LinkAttribute::IfAlias(s) => l.alias = Some(s),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            NlLinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                            NlLinkInfo::Data(InfoData::Vlan(v)) => {
                                l.vlan_id = v.iter().find_map(|x| match x {
                                    InfoVlan::Id(id) => Some(*id),
                                    _ => None,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(l);
    }
    Ok(out)
}

/// Lists every address of the current network namespace.
fn list_addrs(rt: &mut Rtnl) -> Result<Vec<AddrInfo>, NetError> {
    let msgs = rt
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .map_err(link_err("list addresses"))?;
    let mut out = Vec::new();
    for msg in msgs {
        let RouteNetlinkMessage::NewAddress(m) = msg else {
            continue;
        };
        let mut local = None;
        let mut address = None;
        for a in m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(ip),
                AddressAttribute::Address(ip) => address = Some(ip),
                _ => {}
            }
        }
        if let Some(addr) = local.or(address) {
            out.push(AddrInfo {
                index: m.header.index as i32,
                addr,
                prefix: m.header.prefix_len,
            });
        }
    }
    Ok(out)
}

fn create_bridge(rt: &mut Rtnl, name: &str) -> Result<(), NetError> {
    let m = link_msg(
        0,
        false,
        vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Bridge)]),
        ],
    );
    rt.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(link_err(format!("create bridge {name}")))
}

fn create_vlan(rt: &mut Rtnl, name: &str, parent: i32, id: u16) -> Result<(), NetError> {
    let m = link_msg(
        0,
        false,
        vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Link(parent as u32),
            LinkAttribute::LinkInfo(vec![
                NlLinkInfo::Kind(InfoKind::Vlan),
                NlLinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(id)])),
            ]),
        ],
    );
    rt.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
        .map_err(link_err(format!("create vlan {name}")))
}

/// Sets alias, master and/or the up flag on link `index`.
fn set_link(
    rt: &mut Rtnl,
    index: i32,
    name: &str,
    alias: bool,
    master: Option<i32>,
    up: bool,
) -> Result<(), NetError> {
    let mut attrs = Vec::new();
    if alias {
        attrs.push(LinkAttribute::IfAlias(ALIAS.to_string()));
    }
    if let Some(mi) = master {
        attrs.push(LinkAttribute::Controller(mi as u32));
    }
    rt.request(RouteNetlinkMessage::NewLink(link_msg(index, up, attrs)), 0)
        .map_err(link_err(format!("configure link {name}")))
}

fn delete_link(rt: &mut Rtnl, index: i32, name: &str) -> Result<(), NetError> {
    rt.request(
        RouteNetlinkMessage::DelLink(link_msg(index, false, Vec::new())),
        0,
    )
    .map_err(link_err(format!("delete link {name}")))
}

/// Adds (`add`) or removes `addr/prefix` on link `index`. IPv6 gateways
/// skip duplicate address detection (`IFA_F_NODAD`): the gateway must
/// answer at once, and it is the one address of its prefix on the link.
fn change_addr(
    rt: &mut Rtnl,
    add: bool,
    index: i32,
    addr: IpAddr,
    prefix: u8,
) -> Result<(), NlError> {
    let mut m = AddressMessage::default();
    let flags = match addr {
        IpAddr::V4(_) => {
            m.header.family = AddressFamily::Inet;
            AddressFlags::empty()
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            AddressFlags::Nodad
        }
    };
    m.header.prefix_len = prefix;
    m.header.flags = AddressHeaderFlags::from_bits_truncate(flags.bits() as u8);
    m.header.index = index as u32;
    m.attributes = vec![
        AddressAttribute::Local(addr),
        AddressAttribute::Address(addr),
    ];
    if add {
        m.attributes.push(AddressAttribute::Flags(flags));
        rt.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    } else {
        rt.request(RouteNetlinkMessage::DelAddress(m), 0)
    }
}

/// The networks the appliance holds outside its domains, in the current
/// network namespace: the uplink's network and the network of every other
/// address on a link that is not a domain's bridge or VLAN link (nor a
/// stale link of ours). IPv6 link-local addresses are left out.
pub fn host_networks(model: &Model) -> Result<Vec<HostNet>, NetError> {
    let mut rt = Rtnl::open()?;
    let links = list_links(&mut rt)?;
    let addrs = list_addrs(&mut rt)?;
    let ours: std::collections::BTreeSet<String> = desired(model)
        .into_iter()
        .flat_map(|s| std::iter::once(s.bridge).chain(s.vlan.map(|v| v.0)))
        .collect();
    let mut out = Vec::new();
    for a in addrs {
        let Some(link) = links.iter().find(|l| l.index == a.index) else {
            continue;
        };
        if ours.contains(&link.name) || link.owned() || is_link_local(&a.addr) {
            continue;
        }
        let Ok(net) = Cidr::network_of(a.addr, a.prefix) else {
            continue;
        };
        let holder = if model.uplink.as_deref() == Some(link.name.as_str()) {
            format!(
                "the uplink {}'s network {net} (address {}/{})",
                link.name, a.addr, a.prefix
            )
        } else {
            format!(
                "the network {net} of the appliance's address {}/{} on {}",
                a.addr, a.prefix, link.name
            )
        };
        out.push(HostNet { net, holder });
    }
    Ok(out)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(a) => a.is_link_local(),
    }
}

/// Sysctls a router with domain bridges needs: forwarding on, and bridged
/// frames kept out of the IP hooks (br_netfilter), so that traffic inside a
/// domain is plain bridging and the `inet` forward hook sees only routed
/// traffic between domains.
pub const SYSCTLS: [(&str, &str); 5] = [
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/bridge/bridge-nf-call-iptables", "0"),
    ("net/bridge/bridge-nf-call-ip6tables", "0"),
    ("net/bridge/bridge-nf-call-arptables", "0"),
];

fn reconcile_sysctls(changes: &mut Vec<Change>) -> Result<(), NetError> {
    for (key, want) in SYSCTLS {
        let path = format!("/proc/sys/{key}");
        let Ok(cur) = std::fs::read_to_string(&path) else {
            continue; // absent (IPv6 or br_netfilter not built): nothing to do
        };
        if cur.trim() != want {
            // Not fatal: isolation does not depend on it, and a unit with
            // ProtectKernelTunables= (or a read-only /proc/sys) must still
            // get its table. Routing needs it, so say so loudly.
            if let Err(e) = std::fs::write(&path, want) {
                tracing::error!(
                    "cannot set sysctl {key}={want} ({e}); set it in sysctl.d or make \
                     /proc/sys/{key} writable for hearth-netd"
                );
                continue;
            }
            changes.push(Change::Sysctl {
                key: key.to_string(),
                value: want.to_string(),
            });
        }
    }
    Ok(())
}

/// Brings the kernel's links in line with `model` in the current network
/// namespace; returns what it changed.
pub fn reconcile(model: &Model) -> Result<Vec<Change>, NetError> {
    let mut rt = Rtnl::open()?;
    let mut changes = Vec::new();
    reconcile_sysctls(&mut changes)?;
    let specs = desired(model);
    let wanted: std::collections::BTreeSet<String> = specs
        .iter()
        .flat_map(|s| std::iter::once(s.bridge.clone()).chain(s.vlan.iter().map(|v| v.0.clone())))
        .collect();

    // Remove what we own and no longer want: VLAN links first, then bridges.
    let links = list_links(&mut rt)?;
    let mut stale: Vec<&LinkInfo> = links
        .iter()
        .filter(|l| l.owned() && !wanted.contains(&l.name))
        .collect();
    stale.sort_by_key(|l| !l.name.starts_with("hv-"));
    for l in stale {
        delete_link(&mut rt, l.index, &l.name)?;
        changes.push(Change::DeleteLink {
            link: l.name.clone(),
        });
    }

    for spec in &specs {
        let links = list_links(&mut rt)?;
        let bridge = match links.iter().find(|l| l.name == spec.bridge) {
            None => {
                create_bridge(&mut rt, &spec.bridge)?;
                changes.push(Change::CreateBridge {
                    link: spec.bridge.clone(),
                });
                let links = list_links(&mut rt)?;
                links
                    .into_iter()
                    .find(|l| l.name == spec.bridge)
                    .ok_or_else(|| {
                        NetError::LinkConflict(format!("{} vanished after creation", spec.bridge))
                    })?
            }
            Some(l) if l.kind.as_deref() != Some("bridge") => {
                return Err(NetError::LinkConflict(format!(
                    "{} exists and is a {} link, not a bridge; hearth-netd leaves it alone",
                    l.name,
                    l.kind.as_deref().unwrap_or("plain")
                )));
            }
            Some(l) => l.clone(),
        };
        let adopt = bridge.alias.as_deref() != Some(ALIAS);
        let up = bridge.flags & LinkFlags::Up.bits() == 0;
        if adopt || up {
            set_link(&mut rt, bridge.index, &bridge.name, adopt, None, up)?;
            if adopt
                && !changes.contains(&Change::CreateBridge {
                    link: bridge.name.clone(),
                })
            {
                changes.push(Change::Adopt {
                    link: bridge.name.clone(),
                });
            }
            if up {
                changes.push(Change::SetUp {
                    link: bridge.name.clone(),
                });
            }
        }

        // Addresses: exactly the gateways (link-local IPv6 left to the kernel).
        let addrs: Vec<AddrInfo> = list_addrs(&mut rt)?
            .into_iter()
            .filter(|a| a.index == bridge.index)
            .collect();
        for a in &addrs {
            if is_link_local(&a.addr) || spec.addrs.contains(&(a.addr, a.prefix)) {
                continue;
            }
            let address = format!("{}/{}", a.addr, a.prefix);
            change_addr(&mut rt, false, bridge.index, a.addr, a.prefix)
                .map_err(link_err(format!("remove {address} from {}", bridge.name)))?;
            changes.push(Change::RemoveAddress {
                link: bridge.name.clone(),
                address,
            });
        }
        for &(addr, prefix) in &spec.addrs {
            if addrs.iter().any(|a| a.addr == addr && a.prefix == prefix) {
                continue;
            }
            let address = format!("{addr}/{prefix}");
            change_addr(&mut rt, true, bridge.index, addr, prefix)
                .map_err(link_err(format!("add {address} to {}", bridge.name)))?;
            changes.push(Change::AddAddress {
                link: bridge.name.clone(),
                address,
            });
        }

        if let Some((name, parent, id)) = &spec.vlan {
            reconcile_vlan(&mut rt, &bridge, name, parent, *id, &mut changes)?;
        }
    }
    Ok(changes)
}

fn reconcile_vlan(
    rt: &mut Rtnl,
    bridge: &LinkInfo,
    name: &str,
    parent: &str,
    id: u16,
    changes: &mut Vec<Change>,
) -> Result<(), NetError> {
    let links = list_links(rt)?;
    let parent_link = links.iter().find(|l| l.name == parent).ok_or_else(|| {
        NetError::LinkConflict(format!(
            "VLAN parent {parent} of {} does not exist",
            bridge.name
        ))
    })?;
    // The kernel refuses to bring a VLAN up over a parent that is down
    // (ENETDOWN); the parent is not ours to bring up, so say so before
    // creating anything.
    if parent_link.flags & LinkFlags::Up.bits() == 0 {
        return Err(NetError::LinkConflict(format!(
            "VLAN parent {parent} of {} is down; bring it up, then reconcile",
            bridge.name
        )));
    }
    let existing = links.iter().find(|l| l.name == name);
    let fits = |l: &LinkInfo| {
        l.kind.as_deref() == Some("vlan") && l.vlan_id == Some(id) && l.parent == parent_link.index
    };
    let link = match existing {
        Some(l) if fits(l) => l.clone(),
        Some(l) if !l.owned() => {
            return Err(NetError::LinkConflict(format!(
                "{name} exists and was not created by hearth-netd; leaving it alone"
            )));
        }
        other => {
            if let Some(l) = other {
                delete_link(rt, l.index, &l.name)?;
                changes.push(Change::DeleteLink {
                    link: l.name.clone(),
                });
            }
            create_vlan(rt, name, parent_link.index, id)?;
            changes.push(Change::CreateVlan {
                link: name.to_string(),
                parent: parent.to_string(),
                id,
            });
            list_links(rt)?
                .into_iter()
                .find(|l| l.name == name)
                .ok_or_else(|| NetError::LinkConflict(format!("{name} vanished after creation")))?
        }
    };
    let adopt = link.alias.as_deref() != Some(ALIAS);
    let master = (link.master != bridge.index).then_some(bridge.index);
    let up = link.flags & LinkFlags::Up.bits() == 0;
    if adopt || master.is_some() || up {
        set_link(rt, link.index, name, adopt, master, up)?;
        if master.is_some() {
            changes.push(Change::SetMaster {
                link: name.to_string(),
                master: bridge.name.clone(),
            });
        }
        if up {
            changes.push(Change::SetUp {
                link: name.to_string(),
            });
        }
    }
    Ok(())
}

//! Domain links over rtnetlink: bridges `hb-<name>`, their gateway
//! addresses, optional VLAN sub-interfaces `hv-<name>`, and the forwarding
//! sysctls a router needs.
//!
//! [`reconcile`] reads the kernel's links and addresses, creates what is
//! missing, fixes what differs and deletes links it owns that are no longer
//! configured. Ownership: the name prefix `hb-`/`hv-` AND the interface alias
//! [`ALIAS`]; a link lacking either is never deleted. It returns the changes
//! it made, so a second run returning an empty list proves convergence.

use std::net::IpAddr;

use hearth_common::types::Cidr;
use serde::Serialize;

use crate::error::NetError;
use crate::model::{HostNet, Model};
use crate::netlink::{self as nl, MsgBuf, NlError, Socket};

/// The interface alias that marks a link as created by hearth-netd.
pub const ALIAS: &str = "hearth-netd";

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_IFALIAS: u16 = 20;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VLAN_ID: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

const IFF_UP: u32 = 1;

/// One change made to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Change {
    /// A bridge was created.
    CreateBridge {
        /// Its name.
        link: String,
    },
    /// A VLAN sub-interface was created.
    CreateVlan {
        /// Its name.
        link: String,
        /// Parent interface.
        parent: String,
        /// VLAN id.
        id: u16,
    },
    /// An existing link was marked as ours (alias set).
    Adopt {
        /// The link.
        link: String,
    },
    /// A link was attached to its bridge.
    SetMaster {
        /// The link.
        link: String,
        /// The bridge.
        master: String,
    },
    /// A link was brought up.
    SetUp {
        /// The link.
        link: String,
    },
    /// An address was added.
    AddAddress {
        /// The link.
        link: String,
        /// `addr/prefix`.
        address: String,
    },
    /// An address was removed.
    RemoveAddress {
        /// The link.
        link: String,
        /// `addr/prefix`.
        address: String,
    },
    /// An owned link that is no longer configured (or differs beyond repair)
    /// was deleted.
    DeleteLink {
        /// The link.
        link: String,
    },
    /// A sysctl was set.
    Sysctl {
        /// The key, as a path under /proc/sys.
        key: String,
        /// The value written.
        value: String,
    },
}

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

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// Lists every link of the current network namespace.
pub fn list_links(sock: &mut Socket) -> Result<Vec<LinkInfo>, NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(RTM_GETLINK, nl::F_REQUEST | nl::F_DUMP, seq);
    b.raw(&ifinfomsg(0, 0, 0));
    b.end(m);
    let msgs = sock
        .dump(b.bytes(), seq, RTM_NEWLINK)
        .map_err(link_err("list links"))?;
    let mut out = Vec::new();
    for p in msgs {
        if p.len() < 16 {
            continue;
        }
        let mut l = LinkInfo {
            index: i32::from_ne_bytes([p[4], p[5], p[6], p[7]]),
            flags: u32::from_ne_bytes([p[8], p[9], p[10], p[11]]),
            ..LinkInfo::default()
        };
        for (ty, v) in nl::Attrs::new(&p[16..]) {
            match ty {
                IFLA_IFNAME => l.name = nl::attr_str(v),
                IFLA_MASTER => l.master = nl::attr_u32(v).unwrap_or(0) as i32,
                IFLA_LINK => l.parent = nl::attr_u32(v).unwrap_or(0) as i32,
                IFLA_IFALIAS => l.alias = Some(nl::attr_str(v)),
                IFLA_LINKINFO => {
                    for (t, iv) in nl::Attrs::new(v) {
                        match t {
                            IFLA_INFO_KIND => l.kind = Some(nl::attr_str(iv)),
                            IFLA_INFO_DATA => {
                                if let Some(id) = nl::find_attr(iv, IFLA_VLAN_ID) {
                                    if id.len() >= 2 {
                                        l.vlan_id = Some(u16::from_ne_bytes([id[0], id[1]]));
                                    }
                                }
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
pub fn list_addrs(sock: &mut Socket) -> Result<Vec<AddrInfo>, NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(RTM_GETADDR, nl::F_REQUEST | nl::F_DUMP, seq);
    b.raw(&[0u8; 8]);
    b.end(m);
    let msgs = sock
        .dump(b.bytes(), seq, RTM_NEWADDR)
        .map_err(link_err("list addresses"))?;
    let mut out = Vec::new();
    for p in msgs {
        if p.len() < 8 {
            continue;
        }
        let family = p[0] as i32;
        let prefix = p[1];
        let index = i32::from_ne_bytes([p[4], p[5], p[6], p[7]]);
        let mut local = None;
        let mut address = None;
        for (ty, v) in nl::Attrs::new(&p[8..]) {
            let ip = match (family, v.len()) {
                (libc::AF_INET, 4) => {
                    Some(IpAddr::from(<[u8; 4]>::try_from(v).unwrap_or_default()))
                }
                (libc::AF_INET6, 16) => {
                    Some(IpAddr::from(<[u8; 16]>::try_from(v).unwrap_or_default()))
                }
                _ => None,
            };
            match ty {
                IFA_LOCAL => local = ip,
                IFA_ADDRESS => address = ip,
                _ => {}
            }
        }
        if let Some(addr) = local.or(address) {
            out.push(AddrInfo {
                index,
                addr,
                prefix,
            });
        }
    }
    Ok(out)
}

fn request(sock: &mut Socket, b: &MsgBuf, seq: u32, op: String) -> Result<(), NetError> {
    sock.request(b.bytes(), seq).map_err(link_err(op))
}

fn create_bridge(sock: &mut Socket, name: &str) -> Result<(), NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(
        RTM_NEWLINK,
        nl::F_REQUEST | nl::F_ACK | nl::F_CREATE | nl::F_EXCL,
        seq,
    );
    b.raw(&ifinfomsg(0, 0, 0));
    b.attr_str(IFLA_IFNAME, name);
    let li = b.nest(IFLA_LINKINFO);
    b.attr_str(IFLA_INFO_KIND, "bridge");
    b.nest_end(li);
    b.end(m);
    request(sock, &b, seq, format!("create bridge {name}"))
}

fn create_vlan(sock: &mut Socket, name: &str, parent: i32, id: u16) -> Result<(), NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(
        RTM_NEWLINK,
        nl::F_REQUEST | nl::F_ACK | nl::F_CREATE | nl::F_EXCL,
        seq,
    );
    b.raw(&ifinfomsg(0, 0, 0));
    b.attr_str(IFLA_IFNAME, name);
    b.attr_u32(IFLA_LINK, parent as u32);
    let li = b.nest(IFLA_LINKINFO);
    b.attr_str(IFLA_INFO_KIND, "vlan");
    let data = b.nest(IFLA_INFO_DATA);
    b.attr(IFLA_VLAN_ID, &id.to_ne_bytes());
    b.nest_end(data);
    b.nest_end(li);
    b.end(m);
    request(sock, &b, seq, format!("create vlan {name}"))
}

/// Sets alias, master and/or the up flag on link `index`.
fn set_link(
    sock: &mut Socket,
    index: i32,
    name: &str,
    alias: bool,
    master: Option<i32>,
    up: bool,
) -> Result<(), NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(RTM_NEWLINK, nl::F_REQUEST | nl::F_ACK, seq);
    let (flags, change) = if up { (IFF_UP, IFF_UP) } else { (0, 0) };
    b.raw(&ifinfomsg(index, flags, change));
    if alias {
        b.attr_str(IFLA_IFALIAS, ALIAS);
    }
    if let Some(mi) = master {
        b.attr_u32(IFLA_MASTER, mi as u32);
    }
    b.end(m);
    request(sock, &b, seq, format!("configure link {name}"))
}

fn delete_link(sock: &mut Socket, index: i32, name: &str) -> Result<(), NetError> {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let m = b.begin(RTM_DELLINK, nl::F_REQUEST | nl::F_ACK, seq);
    b.raw(&ifinfomsg(index, 0, 0));
    b.end(m);
    request(sock, &b, seq, format!("delete link {name}"))
}

fn addr_msg(sock: &mut Socket, add: bool, index: i32, addr: IpAddr, prefix: u8) -> (MsgBuf, u32) {
    let seq = sock.next_seq();
    let mut b = MsgBuf::new();
    let (ty, flags) = if add {
        (
            RTM_NEWADDR,
            nl::F_REQUEST | nl::F_ACK | nl::F_CREATE | nl::F_REPLACE,
        )
    } else {
        (RTM_DELADDR, nl::F_REQUEST | nl::F_ACK)
    };
    let m = b.begin(ty, flags, seq);
    let (family, bytes, ifa_flags): (u8, Vec<u8>, u32) = match addr {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 0),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), IFA_F_NODAD),
    };
    let mut hdr = [0u8; 8];
    hdr[0] = family;
    hdr[1] = prefix;
    hdr[2] = ifa_flags as u8;
    hdr[4..8].copy_from_slice(&index.to_ne_bytes());
    b.raw(&hdr);
    b.attr(IFA_LOCAL, &bytes);
    b.attr(IFA_ADDRESS, &bytes);
    if add {
        b.attr_u32(IFA_FLAGS, ifa_flags);
    }
    b.end(m);
    (b, seq)
}

/// The networks the appliance holds outside its domains, in the current
/// network namespace: the uplink's network and the network of every other
/// address on a link that is not a domain's bridge or VLAN link (nor a
/// stale link of ours). IPv6 link-local addresses are left out.
pub fn host_networks(model: &Model) -> Result<Vec<HostNet>, NetError> {
    let mut sock = Socket::open(nl::NETLINK_ROUTE).map_err(|e| NetError::Link {
        op: "open rtnetlink socket".into(),
        source: NlError::Io(e),
    })?;
    let links = list_links(&mut sock)?;
    let addrs = list_addrs(&mut sock)?;
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
    let mut sock = Socket::open(nl::NETLINK_ROUTE).map_err(|e| NetError::Link {
        op: "open rtnetlink socket".into(),
        source: NlError::Io(e),
    })?;
    let mut changes = Vec::new();
    reconcile_sysctls(&mut changes)?;
    let specs = desired(model);
    let wanted: std::collections::BTreeSet<String> = specs
        .iter()
        .flat_map(|s| std::iter::once(s.bridge.clone()).chain(s.vlan.iter().map(|v| v.0.clone())))
        .collect();

    // Remove what we own and no longer want: VLAN links first, then bridges.
    let links = list_links(&mut sock)?;
    let mut stale: Vec<&LinkInfo> = links
        .iter()
        .filter(|l| l.owned() && !wanted.contains(&l.name))
        .collect();
    stale.sort_by_key(|l| !l.name.starts_with("hv-"));
    for l in stale {
        delete_link(&mut sock, l.index, &l.name)?;
        changes.push(Change::DeleteLink {
            link: l.name.clone(),
        });
    }

    for spec in &specs {
        let links = list_links(&mut sock)?;
        let bridge = match links.iter().find(|l| l.name == spec.bridge) {
            None => {
                create_bridge(&mut sock, &spec.bridge)?;
                changes.push(Change::CreateBridge {
                    link: spec.bridge.clone(),
                });
                let links = list_links(&mut sock)?;
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
        let up = bridge.flags & IFF_UP == 0;
        if adopt || up {
            set_link(&mut sock, bridge.index, &bridge.name, adopt, None, up)?;
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
        let addrs: Vec<AddrInfo> = list_addrs(&mut sock)?
            .into_iter()
            .filter(|a| a.index == bridge.index)
            .collect();
        for a in &addrs {
            if is_link_local(&a.addr) || spec.addrs.contains(&(a.addr, a.prefix)) {
                continue;
            }
            let (b, seq) = addr_msg(&mut sock, false, bridge.index, a.addr, a.prefix);
            let address = format!("{}/{}", a.addr, a.prefix);
            request(
                &mut sock,
                &b,
                seq,
                format!("remove {address} from {}", bridge.name),
            )?;
            changes.push(Change::RemoveAddress {
                link: bridge.name.clone(),
                address,
            });
        }
        for &(addr, prefix) in &spec.addrs {
            if addrs.iter().any(|a| a.addr == addr && a.prefix == prefix) {
                continue;
            }
            let (b, seq) = addr_msg(&mut sock, true, bridge.index, addr, prefix);
            let address = format!("{addr}/{prefix}");
            request(
                &mut sock,
                &b,
                seq,
                format!("add {address} to {}", bridge.name),
            )?;
            changes.push(Change::AddAddress {
                link: bridge.name.clone(),
                address,
            });
        }

        if let Some((name, parent, id)) = &spec.vlan {
            reconcile_vlan(&mut sock, &bridge, name, parent, *id, &mut changes)?;
        }
    }
    Ok(changes)
}

fn reconcile_vlan(
    sock: &mut Socket,
    bridge: &LinkInfo,
    name: &str,
    parent: &str,
    id: u16,
    changes: &mut Vec<Change>,
) -> Result<(), NetError> {
    let links = list_links(sock)?;
    let parent_link = links.iter().find(|l| l.name == parent).ok_or_else(|| {
        NetError::LinkConflict(format!(
            "VLAN parent {parent} of {} does not exist",
            bridge.name
        ))
    })?;
    // The kernel refuses to bring a VLAN up over a parent that is down
    // (ENETDOWN); the parent is not ours to bring up, so say so before
    // creating anything.
    if parent_link.flags & IFF_UP == 0 {
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
                delete_link(sock, l.index, &l.name)?;
                changes.push(Change::DeleteLink {
                    link: l.name.clone(),
                });
            }
            create_vlan(sock, name, parent_link.index, id)?;
            changes.push(Change::CreateVlan {
                link: name.to_string(),
                parent: parent.to_string(),
                id,
            });
            list_links(sock)?
                .into_iter()
                .find(|l| l.name == name)
                .ok_or_else(|| NetError::LinkConflict(format!("{name} vanished after creation")))?
        }
    };
    let adopt = link.alias.as_deref() != Some(ALIAS);
    let master = (link.master != bridge.index).then_some(bridge.index);
    let up = link.flags & IFF_UP == 0;
    if adopt || master.is_some() || up {
        set_link(sock, link.index, name, adopt, master, up)?;
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

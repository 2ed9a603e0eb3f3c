//! The validated network model: domains and allows, composed from the base
//! configuration and the overlay of changes made at run time.
//!
//! Everything here is pure: no kernel, no files. Every change is computed as
//! a new [`Overlay`], composed into a new [`Model`] and validated before the
//! caller touches the kernel or the disk, so bad input changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hearth_common::contract::network::{self as contract, Reach};
use hearth_common::subnets;
use hearth_common::types::{Cidr, DomainId, Port, Protocol};
use serde::{Deserialize, Serialize};

use crate::config::{AllowConfig, DomainConfig, NetworkConfig, VlanConfig};
use crate::error::NetError;

/// Services a domain reaches on the appliance when the configuration names none.
pub const DEFAULT_SERVICES: [&str; 2] = ["dns", "dhcp"];

/// An appliance service a domain may reach (input chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Service {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Destination port on the appliance.
    pub port: u16,
}

/// Expands a service name (`dns`, `tcp/8443`, …) into protocol/port pairs.
pub fn parse_service(field: &str, s: &str) -> Result<Vec<Service>, NetError> {
    let svc = |protocol, port| Service { protocol, port };
    let list = match s {
        "dns" => vec![svc(Protocol::Udp, 53), svc(Protocol::Tcp, 53)],
        "dhcp" => vec![svc(Protocol::Udp, 67)],
        "ntp" => vec![svc(Protocol::Udp, 123)],
        "ssh" => vec![svc(Protocol::Tcp, 22)],
        "https" => vec![svc(Protocol::Tcp, 443)],
        other => {
            let bad = || NetError::Invalid {
                field: field.to_string(),
                value: other.to_string(),
                reason: "a service is dns, dhcp, ntp, ssh, https, tcp/<port> or udp/<port>".into(),
            };
            let (p, port) = other.split_once('/').ok_or_else(bad)?;
            let protocol = Protocol::parse_field(field, p).map_err(|_| bad())?;
            let port = Port::parse_field(field, port).map_err(|_| bad())?;
            vec![svc(protocol, port.get())]
        }
    };
    Ok(list)
}

/// A VLAN carried into a domain's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vlan {
    /// Parent interface.
    pub parent: String,
    /// VLAN id.
    pub id: u16,
}

impl Vlan {
    /// The contract's form.
    pub fn into_contract(self) -> contract::Vlan {
        contract::Vlan {
            parent: self.parent,
            id: self.id,
        }
    }
}

/// One domain as enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// Identifier.
    pub name: DomainId,
    /// IPv4 subnet.
    pub subnet: Cidr,
    /// Optional ULA prefix.
    pub ula: Option<Cidr>,
    /// Optional VLAN.
    pub vlan: Option<Vlan>,
    /// Service names as configured.
    pub services: Vec<String>,
    /// The services expanded.
    #[serde(skip)]
    pub service_ports: Vec<Service>,
}

impl Domain {
    /// The bridge name `hb-<name>`.
    pub fn bridge(&self) -> String {
        self.name.bridge_name()
    }

    /// The VLAN sub-interface name `hv-<name>`.
    pub fn vlan_link(&self) -> String {
        format!("hv-{}", self.name)
    }

    /// The IPv4 gateway (first host) with its prefix length.
    pub fn gateway_v4(&self) -> (IpAddr, u8) {
        let net = self.subnet.net();
        let base = match net.network() {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        (
            IpAddr::V4(Ipv4Addr::from(u32::from(base) + 1)),
            net.prefix_len(),
        )
    }

    /// The IPv4 gateway alone.
    pub fn gateway_v4_addr(&self) -> Ipv4Addr {
        match self.gateway_v4().0 {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The IPv6 gateway (`prefix::1`) with its prefix length, if a ULA is set.
    pub fn gateway_v6(&self) -> Option<(IpAddr, u8)> {
        let ula = self.ula?.net();
        match ula.network() {
            IpAddr::V6(a) => Some((
                IpAddr::V6(Ipv6Addr::from(u128::from(a) + 1)),
                ula.prefix_len(),
            )),
            IpAddr::V4(_) => None,
        }
    }
}

/// A network the appliance holds outside its domains (the uplink's network,
/// another address of one of its links): a new domain's subnet must stay
/// clear of it. Read from the kernel by [`crate::links::host_networks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    /// The network.
    pub net: Cidr,
    /// What holds it, in words (names the link and the address).
    pub holder: String,
}

/// An explicit allow: `from` may open connections to `to`, optionally only
/// on one port and/or protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Allow {
    /// Source domain.
    pub from: DomainId,
    /// Destination domain.
    pub to: DomainId,
    /// Destination port; None: any.
    pub port: Option<Port>,
    /// Protocol; None: any (tcp and udp when a port is given).
    pub protocol: Option<Protocol>,
}

impl Allow {
    fn from_config(a: &AllowConfig) -> Allow {
        Allow {
            from: a.from.clone(),
            to: a.to.clone(),
            port: a.port,
            protocol: a.protocol,
        }
    }

    /// `all`, `tcp`, `tcp/443`, `any/53` (tcp and udp).
    pub fn describe(&self) -> String {
        match (self.protocol, self.port) {
            (None, None) => "all".into(),
            (Some(p), None) => p.as_str().into(),
            (Some(p), Some(port)) => format!("{p}/{port}"),
            (None, Some(port)) => format!("any/{port}"),
        }
    }
}

/// A domain created at run time (persisted in the overlay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedDomain {
    /// Identifier.
    pub name: DomainId,
    /// IPv4 subnet.
    pub subnet: Cidr,
}

/// Changes made at run time on top of the base configuration; persisted as
/// JSON in the state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    /// Domains created (they override a base domain of the same name).
    #[serde(default)]
    pub created: Vec<CreatedDomain>,
    /// Base domains deleted.
    #[serde(default)]
    pub deleted: Vec<DomainId>,
    /// Allows added.
    #[serde(default)]
    pub allowed: Vec<Allow>,
    /// Pairs whose base allows are revoked.
    #[serde(default)]
    pub revoked: Vec<(DomainId, DomainId)>,
}

/// The effective, validated network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    /// Uplink interface.
    pub uplink: Option<String>,
    /// Admin domain.
    pub admin: DomainId,
    /// Allocation pool.
    pub pool: Option<Cidr>,
    /// Domains by name.
    pub domains: BTreeMap<DomainId, Domain>,
    /// Allows, sorted and unique.
    pub allows: Vec<Allow>,
}

fn invalid(field: &str, value: impl ToString, reason: impl Into<String>) -> NetError {
    NetError::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks an interface name given for `field` (1 to 15 bytes, no '/', ':' or
/// whitespace).
pub fn check_ifname(field: &str, s: &str) -> Result<(), NetError> {
    if s.is_empty()
        || s.len() > 15
        || s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            field,
            s,
            "an interface name has 1 to 15 characters without '/', ':' or spaces",
        ));
    }
    Ok(())
}

fn domain_from_parts(
    name: DomainId,
    subnet: Cidr,
    ula: Option<Cidr>,
    vlan: Option<&VlanConfig>,
    services: Option<&[String]>,
    pool: Option<&Cidr>,
) -> Result<Domain, NetError> {
    let field = |f: &str| format!("domain {name}: {f}");
    subnets::check_domain_subnet(&field("subnet"), &subnet, pool)?;
    if let Some(u) = ula {
        subnets::check_ula_prefix(&field("ula"), &u)?;
    }
    let vlan = match vlan {
        None => None,
        Some(v) => {
            check_ifname(&field("vlan.parent"), &v.parent)?;
            if v.parent.starts_with("hb-") || v.parent.starts_with("hv-") {
                return Err(invalid(
                    &field("vlan.parent"),
                    &v.parent,
                    "the parent cannot be a link hearth-netd owns",
                ));
            }
            if !(1..=4094).contains(&v.id) {
                return Err(invalid(&field("vlan.id"), v.id, "a VLAN id is 1 to 4094"));
            }
            Some(Vlan {
                parent: v.parent.clone(),
                id: v.id,
            })
        }
    };
    let services: Vec<String> = match services {
        Some(s) => s.to_vec(),
        None => DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect(),
    };
    let mut ports = BTreeSet::new();
    for s in &services {
        ports.extend(parse_service(&field("services"), s)?);
    }
    Ok(Domain {
        name,
        subnet,
        ula,
        vlan,
        services,
        service_ports: ports.into_iter().collect(),
    })
}

impl Model {
    /// Composes the base configuration and the overlay and validates the
    /// result.
    pub fn compose(base: &NetworkConfig, overlay: &Overlay) -> Result<Model, NetError> {
        if let Some(u) = &base.uplink {
            check_ifname("uplink", u)?;
            if u.starts_with("hb-") || u.starts_with("hv-") {
                return Err(invalid(
                    "uplink",
                    u,
                    "the uplink cannot be a link hearth-netd owns",
                ));
            }
        }
        if let Some(p) = base.pool {
            if !p.is_ipv4() || p.prefix_len() > 24 {
                return Err(invalid(
                    "pool",
                    p,
                    "the pool is an IPv4 network of /24 or larger",
                ));
            }
        }
        let mut domains: BTreeMap<DomainId, Domain> = BTreeMap::new();
        for d in &base.domains {
            if domains.contains_key(&d.name) {
                return Err(NetError::Duplicate(d.name.to_string()));
            }
            let dom = domain_from_parts(
                d.name.clone(),
                d.subnet,
                d.ula,
                d.vlan.as_ref(),
                d.services.as_deref(),
                base.pool.as_ref(),
            )?;
            domains.insert(d.name.clone(), dom);
        }
        for name in &overlay.deleted {
            domains.remove(name);
        }
        for c in &overlay.created {
            let dom = domain_from_parts(
                c.name.clone(),
                c.subnet,
                None,
                None,
                None,
                base.pool.as_ref(),
            )?;
            domains.insert(c.name.clone(), dom);
        }
        if !domains.contains_key(&base.admin) {
            return Err(NetError::NotFound(format!(
                "the admin domain {} is not configured",
                base.admin
            )));
        }
        // Overlaps, between subnets and between ULA prefixes.
        let list: Vec<&Domain> = domains.values().collect();
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if a.subnet.overlaps(&b.subnet) {
                    return Err(NetError::Overlap {
                        subnet: a.subnet.to_string(),
                        domain: b.name.to_string(),
                        other: b.subnet.to_string(),
                    });
                }
                if let (Some(x), Some(y)) = (a.ula, b.ula) {
                    if x.overlaps(&y) {
                        return Err(NetError::Overlap {
                            subnet: x.to_string(),
                            domain: b.name.to_string(),
                            other: y.to_string(),
                        });
                    }
                }
                if let (Some(x), Some(y)) = (&a.vlan, &b.vlan) {
                    if x == y {
                        return Err(NetError::Conflict(format!(
                            "domains {} and {} use the same VLAN {}.{}",
                            a.name, b.name, x.parent, x.id
                        )));
                    }
                }
            }
        }
        let revoked: BTreeSet<(DomainId, DomainId)> = overlay.revoked.iter().cloned().collect();
        let mut allows = BTreeSet::new();
        for a in &base.allows {
            let a = Allow::from_config(a);
            check_allow_shape(&a)?;
            if revoked.contains(&(a.from.clone(), a.to.clone())) {
                continue;
            }
            // A base allow naming a domain deleted at run time lapses with it.
            let deleted = |d: &DomainId| overlay.deleted.contains(d) && !domains.contains_key(d);
            if deleted(&a.from) || deleted(&a.to) {
                continue;
            }
            allows.insert(a);
        }
        allows.extend(overlay.allowed.iter().cloned());
        for a in &allows {
            for d in [&a.from, &a.to] {
                if !domains.contains_key(d) {
                    return Err(NetError::UnknownDomain(d.to_string()));
                }
            }
        }
        Ok(Model {
            uplink: base.uplink.clone(),
            admin: base.admin.clone(),
            pool: base.pool,
            domains,
            allows: allows.into_iter().collect(),
        })
    }

    fn require(&self, field: &str, name: &str) -> Result<DomainId, NetError> {
        let id = DomainId::parse_field(field, name)?;
        if !self.domains.contains_key(&id) {
            return Err(NetError::UnknownDomain(id.to_string()));
        }
        Ok(id)
    }

    /// The first `/24` of the pool that overlaps neither a domain nor a
    /// network the appliance holds (`host`).
    pub fn allocate(&self, host: &[HostNet]) -> Result<Cidr, NetError> {
        let pool = self
            .pool
            .ok_or_else(|| invalid("subnet", "", "no subnet given and no pool configured"))?;
        let base = match pool.net().network() {
            IpAddr::V4(a) => u32::from(a),
            IpAddr::V6(_) => return Err(invalid("pool", pool, "the pool is not IPv4")),
        };
        // Each domain gets a /24: a pool has 2^(24 - len) of them, none when
        // it is smaller than a /24.
        let count = 24u8
            .checked_sub(pool.prefix_len())
            .map(|bits| 1u64 << bits)
            .ok_or_else(|| {
                invalid(
                    "pool",
                    pool,
                    "the pool is smaller than the /24 a domain is given; it is /24 or larger",
                )
            })?;
        for i in 0..count {
            let start = u32::try_from(i << 8)
                .ok()
                .and_then(|off| base.checked_add(off))
                .ok_or_else(|| invalid("pool", pool, "the pool runs past 255.255.255.255"))?;
            let c = Cidr::parse_field("subnet", &format!("{}/24", Ipv4Addr::from(start)))?;
            let taken = self.domains.values().any(|d| d.subnet.overlaps(&c))
                || host.iter().any(|h| h.net.overlaps(&c));
            if !taken {
                return Ok(c);
            }
        }
        Err(NetError::Conflict(format!(
            "the pool {pool} has no free /24 left"
        )))
    }

    /// The overlay after creating `name` with `subnet` (empty: from the
    /// pool). The subnet is private space of /16 to /30
    /// ([`subnets::check_domain_subnet`]) clear of every domain and of the
    /// networks the appliance holds (`host`: the uplink's and its other
    /// addresses).
    pub fn plan_create(
        &self,
        overlay: &Overlay,
        name: &str,
        subnet: &str,
        host: &[HostNet],
    ) -> Result<(Overlay, CreatedDomain), NetError> {
        let name = DomainId::parse_field("name", name)?;
        if self.domains.contains_key(&name) {
            return Err(NetError::Duplicate(name.to_string()));
        }
        let subnet = if subnet.trim().is_empty() {
            self.allocate(host)?
        } else {
            Cidr::parse_v4_field("subnet", subnet)?
        };
        subnets::check_domain_subnet("subnet", &subnet, self.pool.as_ref())?;
        let domains = self.domains.values().map(|d| (d.subnet, d));
        if let Some((other, d)) = subnets::first_overlap(&subnet, domains) {
            return Err(NetError::Overlap {
                subnet: subnet.to_string(),
                domain: d.name.to_string(),
                other: other.to_string(),
            });
        }
        let held = host.iter().map(|h| (h.net, h));
        if let Some((_, h)) = subnets::first_overlap(&subnet, held) {
            return Err(NetError::InUse {
                subnet: subnet.to_string(),
                holder: h.holder.clone(),
            });
        }
        let mut o = overlay.clone();
        o.deleted.retain(|d| d != &name);
        let created = CreatedDomain { name, subnet };
        o.created.push(created.clone());
        Ok((o, created))
    }

    /// The overlay after deleting `name` (and every allow naming it).
    pub fn plan_delete(
        &self,
        base: &NetworkConfig,
        overlay: &Overlay,
        name: &str,
    ) -> Result<Overlay, NetError> {
        let name = self.require("name", name)?;
        if name == self.admin {
            return Err(NetError::Protected(format!(
                "the admin domain {name} cannot be deleted"
            )));
        }
        let mut o = overlay.clone();
        o.created.retain(|c| c.name != name);
        if base.domains.iter().any(|d| d.name == name) && !o.deleted.contains(&name) {
            o.deleted.push(name.clone());
        }
        o.allowed.retain(|a| a.from != name && a.to != name);
        o.revoked.retain(|(f, t)| f != &name && t != &name);
        Ok(o)
    }

    /// The overlay after allowing `from` to reach `to` (port 0: any port;
    /// protocol "": any protocol); an allow already in force leaves it as it
    /// is.
    pub fn plan_allow(
        &self,
        overlay: &Overlay,
        from: &str,
        to: &str,
        port: u32,
        protocol: &str,
    ) -> Result<(Overlay, Allow), NetError> {
        let from = self.require("from", from)?;
        let to = self.require("to", to)?;
        if from == to {
            return Err(invalid("to", &to, "a domain always reaches itself"));
        }
        let port = if port == 0 {
            None
        } else {
            Some(Port::from_number("port", port)?)
        };
        let protocol = if protocol.trim().is_empty() {
            None
        } else {
            Some(Protocol::parse_field("protocol", protocol)?)
        };
        let a = Allow {
            from,
            to,
            port,
            protocol,
        };
        // Already in force: nothing to add (the diff of the answer is empty).
        if self.allows.contains(&a) {
            return Ok((overlay.clone(), a));
        }
        let mut o = overlay.clone();
        o.allowed.push(a.clone());
        Ok((o, a))
    }

    /// The overlay after revoking every allow from `from` to `to`.
    pub fn plan_revoke(
        &self,
        overlay: &Overlay,
        from: &str,
        to: &str,
    ) -> Result<Overlay, NetError> {
        let from = self.require("from", from)?;
        let to = self.require("to", to)?;
        if from == self.admin {
            return Err(NetError::Protected(format!(
                "the admin domain {from} always reaches {to}; that cannot be revoked"
            )));
        }
        if !self.allows.iter().any(|a| a.from == from && a.to == to) {
            return Err(NetError::NotFound(format!("no allow from {from} to {to}")));
        }
        let mut o = overlay.clone();
        o.allowed.retain(|a| !(a.from == from && a.to == to));
        if !o.revoked.contains(&(from.clone(), to.clone())) {
            o.revoked.push((from, to));
        }
        Ok(o)
    }

    /// What `from` may open towards `to` (both domains of the model).
    fn reach(&self, from: &DomainId, to: &DomainId) -> Reach {
        if *from == self.admin {
            return Reach::All;
        }
        let rules: Vec<&Allow> = self
            .allows
            .iter()
            .filter(|a| &a.from == from && &a.to == to)
            .collect();
        if rules
            .iter()
            .any(|a| a.port.is_none() && a.protocol.is_none())
        {
            Reach::All
        } else if rules.is_empty() {
            Reach::Nothing
        } else {
            Reach::Only(rules.iter().map(|a| a.describe()).collect())
        }
    }

    /// What each domain may open towards each other domain: `all`, a list of
    /// `proto/port`, or `none`; plus whether it reaches the uplink.
    pub fn matrix(&self) -> contract::Matrix {
        let mut m = contract::MatrixRows::new();
        for from in self.domains.keys() {
            let mut row = BTreeMap::new();
            for to in self.domains.keys() {
                if from != to {
                    row.insert(to.to_string(), self.reach(from, to));
                }
            }
            if let Some(u) = &self.uplink {
                row.insert(format!("uplink:{u}"), Reach::All);
            }
            m.insert(from.clone(), row);
        }
        contract::Matrix {
            admin: self.admin.clone(),
            matrix: m,
        }
    }

    /// The domains, as `ListDomains` gives them.
    pub fn domain_list(&self) -> Vec<contract::Domain> {
        self.domains
            .values()
            .map(|d| contract::Domain {
                name: d.name.clone(),
                bridge: d.bridge(),
                subnet: d.subnet,
                gateway: d.gateway_v4_addr().into(),
                ula: d.ula,
                vlan: d.vlan.clone().map(Vlan::into_contract),
                services: d.services.clone(),
                admin: d.name == self.admin,
            })
            .collect()
    }

    /// The allows, as the contract gives them.
    pub fn allow_list(&self) -> Vec<contract::Allow> {
        self.allows
            .iter()
            .map(|a| contract::Allow {
                from: a.from.clone(),
                to: a.to.clone(),
                port: a.port,
                protocol: a.protocol,
            })
            .collect()
    }

    /// What the model lets through and holds, compiled as the firewall
    /// compiles it: the flows are the elements of the ruleset's allow sets
    /// (a port without a protocol is one flow for tcp and one for udp); the
    /// DHCP scopes are the domains whose services include `dhcp`.
    pub fn net_state(&self) -> contract::NetState {
        let rs = crate::nft::Ruleset::from_model(self);
        let by_bridge: BTreeMap<String, &DomainId> =
            self.domains.keys().map(|d| (d.bridge_name(), d)).collect();
        let mut flows = BTreeSet::new();
        let mut add = |f: &str, t: &str, proto: Option<u8>, port: Option<u16>| {
            let (Some(from), Some(to)) = (by_bridge.get(f), by_bridge.get(t)) else {
                return;
            };
            let protocol = proto.and_then(|n| match n {
                6 => Some(Protocol::Tcp),
                17 => Some(Protocol::Udp),
                _ => None,
            });
            let port = port.and_then(|p| Port::from_number("port", u32::from(p)).ok());
            flows.insert(contract::Flow {
                from: (*from).clone(),
                to: (*to).clone(),
                protocol,
                port,
            });
        };
        for (f, t) in &rs.allow_any {
            add(f, t, None, None);
        }
        for (f, t, p) in &rs.allow_proto {
            add(f, t, Some(*p), None);
        }
        for (f, t, p, port) in &rs.allow_port {
            add(f, t, Some(*p), Some(*port));
        }
        let mut domains = BTreeMap::new();
        let mut scopes = BTreeMap::new();
        for d in self.domains.values() {
            let gateway: hearth_common::types::Ipv4 = d.gateway_v4_addr().into();
            domains.insert(
                d.name.clone(),
                contract::DomainBrief {
                    name: d.name.clone(),
                    bridge: d.bridge(),
                    subnet: d.subnet,
                    gateway,
                    vlan: d.vlan.clone().map(Vlan::into_contract),
                },
            );
            if d.services.iter().any(|s| s == "dhcp") {
                scopes.insert(
                    d.name.clone(),
                    contract::DhcpScope {
                        domain: d.name.clone(),
                        subnet: d.subnet,
                        gateway,
                    },
                );
            }
        }
        contract::NetState {
            flows,
            domains,
            scopes,
        }
    }
}

fn check_allow_shape(a: &Allow) -> Result<(), NetError> {
    if a.from == a.to {
        return Err(invalid("allow.to", &a.to, "a domain always reaches itself"));
    }
    Ok(())
}

/// Base domain configuration of `name`, if any.
pub fn base_domain<'a>(base: &'a NetworkConfig, name: &DomainId) -> Option<&'a DomainConfig> {
    base.domains.iter().find(|d| &d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn base() -> NetworkConfig {
        hearth_common::config::parse(
            Path::new("network.toml"),
            r#"
uplink = "eth0"
admin = "admin"
pool = "10.77.0.0/16"
[[domain]]
name = "admin"
subnet = "10.77.0.0/24"
[[domain]]
name = "lan"
subnet = "10.77.1.0/24"
ula = "fd42:77:1::/64"
[[domain]]
name = "iot"
subnet = "10.77.2.0/24"
services = ["dns", "ntp", "tcp/8883"]
[[allow]]
from = "lan"
to = "iot"
[[allow]]
from = "iot"
to = "lan"
port = 443
protocol = "tcp"
"#,
        )
        .unwrap()
    }

    fn model() -> Model {
        Model::compose(&base(), &Overlay::default()).unwrap()
    }

    #[test]
    fn base_config_composes_with_gateways_and_services() {
        let m = model();
        assert_eq!(m.domains.len(), 3);
        let lan = &m.domains[&DomainId::parse("lan").unwrap()];
        assert_eq!(lan.gateway_v4().0.to_string(), "10.77.1.1");
        assert_eq!(lan.gateway_v6().unwrap().0.to_string(), "fd42:77:1::1");
        let iot = &m.domains[&DomainId::parse("iot").unwrap()];
        assert_eq!(iot.service_ports.len(), 4, "{:?}", iot.service_ports);
        assert_eq!(m.allows.len(), 2);
    }

    #[test]
    fn create_allocates_the_first_free_24_from_the_pool() {
        let m = model();
        let (o, c) = m
            .plan_create(&Overlay::default(), "guest", "", &[])
            .unwrap();
        assert_eq!(c.subnet.to_string(), "10.77.3.0/24");
        let m2 = Model::compose(&base(), &o).unwrap();
        assert!(m2.domains.contains_key(&DomainId::parse("guest").unwrap()));
    }

    #[test]
    fn pools_longer_than_a_24_are_a_clear_error_not_a_panic() {
        let mut m = model();
        for pool in ["10.99.0.0/25", "10.99.0.0/28", "10.99.0.0/32"] {
            m.pool = Some(Cidr::parse(pool).unwrap());
            let e = m.allocate(&[]).unwrap_err();
            assert_eq!(e.kind(), "InvalidArgument", "{pool}: {e}");
            assert!(e.to_string().contains(pool), "{pool}: {e}");
        }
        let text = "admin = \"a\"\npool = \"10.99.0.0/28\"\n[[domain]]\nname = \"a\"\nsubnet = \"10.0.0.0/24\"\n";
        let c: NetworkConfig =
            hearth_common::config::parse(Path::new("network.toml"), text).unwrap();
        let e = Model::compose(&c, &Overlay::default()).unwrap_err();
        assert!(e.to_string().contains("10.99.0.0/28"), "{e}");
        // A pool of exactly one /24, taken by a /25 domain: no room, said so.
        m.pool = Some(Cidr::parse("10.77.1.0/24").unwrap());
        let e = m.allocate(&[]).unwrap_err();
        assert!(e.to_string().contains("no free /24"), "{e}");
        m.pool = Some(Cidr::parse("10.77.0.0/22").unwrap());
        assert_eq!(m.allocate(&[]).unwrap().to_string(), "10.77.3.0/24");
    }

    #[test]
    fn creates_outside_private_space_or_over_the_appliance_are_refused() {
        let m = model();
        let o = Overlay::default();
        let host = [HostNet {
            net: Cidr::parse("10.77.3.0/24").unwrap(),
            holder: "the uplink eth0's network 10.77.3.0/24 (address 10.77.3.2/24)".into(),
        }];
        for (subnet, kind, says) in [
            ("128.0.0.0/1", "InvalidArgument", "private"),
            ("8.8.8.0/24", "InvalidArgument", "private"),
            ("10.0.0.0/8", "InvalidArgument", "/16 to /30"),
            ("10.99.0.0/31", "InvalidArgument", "/16 to /30"),
            ("10.77.3.0/24", "Conflict", "uplink eth0"),
            ("10.77.0.0/22", "Conflict", "admin"),
        ] {
            let e = m.plan_create(&o, "x", subnet, &host).unwrap_err();
            assert_eq!(e.kind(), kind, "{subnet}: {e}");
            assert!(e.to_string().contains(subnet), "{subnet}: {e}");
            assert!(e.to_string().contains(says), "{subnet}: {e}");
        }
        // The pool skips the uplink's /24.
        let (_, c) = m.plan_create(&o, "x", "", &host).unwrap();
        assert_eq!(c.subnet.to_string(), "10.77.4.0/24");
    }

    #[test]
    fn base_domains_follow_the_same_rule() {
        let p = Path::new("network.toml");
        for (subnet, ula, says) in [
            ("8.8.8.0/24", None, "private"),
            ("10.0.0.0/8", None, "/16 to /30"),
            ("10.0.0.0/24", Some("2001:db8::/64"), "unique local"),
            ("10.0.0.0/24", Some("fd00::/32"), "/48 to /64"),
        ] {
            let ula = ula.map(|u| format!("ula = \"{u}\"\n")).unwrap_or_default();
            let text =
                format!("admin = \"a\"\n[[domain]]\nname = \"a\"\nsubnet = \"{subnet}\"\n{ula}");
            let c: NetworkConfig = hearth_common::config::parse(p, &text).unwrap();
            let e = Model::compose(&c, &Overlay::default()).unwrap_err();
            assert_eq!(e.kind(), "InvalidArgument", "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        // A pool outside RFC 1918 admits its own space.
        let text = "admin = \"a\"\npool = \"100.64.0.0/16\"\n[[domain]]\nname = \"a\"\nsubnet = \"100.64.0.0/24\"\n";
        let c: NetworkConfig = hearth_common::config::parse(p, text).unwrap();
        let m = Model::compose(&c, &Overlay::default()).unwrap();
        let (_, d) = m.plan_create(&Overlay::default(), "b", "", &[]).unwrap();
        assert_eq!(d.subnet.to_string(), "100.64.1.0/24");
        let e = m
            .plan_create(&Overlay::default(), "b", "100.65.0.0/24", &[])
            .unwrap_err();
        assert!(e.to_string().contains("100.64.0.0/16"), "{e}");
    }

    #[test]
    fn bad_creates_are_refused_with_their_kind() {
        let m = model();
        let o = Overlay::default();
        let kind = |r: Result<(Overlay, CreatedDomain), NetError>| r.unwrap_err().kind();
        assert_eq!(kind(m.plan_create(&o, "Bad!", "", &[])), "InvalidArgument");
        assert_eq!(
            kind(m.plan_create(&o, "x", "10.1.2.3/24", &[])),
            "InvalidArgument"
        );
        assert_eq!(
            kind(m.plan_create(&o, "x", "10.1.2.0/31", &[])),
            "InvalidArgument"
        );
        assert_eq!(
            kind(m.plan_create(&o, "x", "fd00::/64", &[])),
            "InvalidArgument"
        );
        assert_eq!(
            kind(m.plan_create(&o, "x", "garbage", &[])),
            "InvalidArgument"
        );
        assert_eq!(
            kind(m.plan_create(&o, "x", "10.77.1.128/25", &[])),
            "Conflict"
        );
        assert_eq!(
            kind(m.plan_create(&o, "lan", "10.99.0.0/24", &[])),
            "Conflict"
        );
        let e = m.plan_create(&o, "x", "10.77.0.0/16", &[]).unwrap_err();
        assert!(e.to_string().contains("admin"), "{e}");
    }

    #[test]
    fn admin_is_protected() {
        let m = model();
        let o = Overlay::default();
        let e = m.plan_delete(&base(), &o, "admin").unwrap_err();
        assert_eq!(e.kind(), "Conflict");
        let e = m.plan_revoke(&o, "admin", "lan").unwrap_err();
        assert_eq!(e.kind(), "Conflict");
        assert!(e.to_string().contains("admin"), "{e}");
    }

    #[test]
    fn unknown_domains_are_not_found() {
        let m = model();
        let o = Overlay::default();
        assert_eq!(
            m.plan_delete(&base(), &o, "nope").unwrap_err().kind(),
            "NotFound"
        );
        assert_eq!(
            m.plan_allow(&o, "lan", "nope", 0, "").unwrap_err().kind(),
            "NotFound"
        );
        assert_eq!(
            m.plan_revoke(&o, "nope", "lan").unwrap_err().kind(),
            "NotFound"
        );
        assert_eq!(
            m.plan_revoke(&o, "admin", "nope").unwrap_err().kind(),
            "NotFound"
        );
        assert_eq!(
            m.plan_revoke(&o, "iot", "admin").unwrap_err().kind(),
            "NotFound"
        );
    }

    #[test]
    fn bad_allows_are_refused() {
        let m = model();
        let o = Overlay::default();
        assert_eq!(
            m.plan_allow(&o, "lan", "lan", 0, "").unwrap_err().kind(),
            "InvalidArgument"
        );
        assert_eq!(
            m.plan_allow(&o, "lan", "iot", 70000, "")
                .unwrap_err()
                .kind(),
            "InvalidArgument"
        );
        assert_eq!(
            m.plan_allow(&o, "lan", "iot", 22, "icmp")
                .unwrap_err()
                .kind(),
            "InvalidArgument"
        );
        // An allow already in force is no error and changes nothing.
        let (o2, _) = m.plan_allow(&o, "lan", "iot", 0, "").unwrap();
        assert_eq!(o2, o);
    }

    #[test]
    fn revoke_then_allow_round_trips_through_the_overlay() {
        let b = base();
        let m = model();
        let o = m.plan_revoke(&Overlay::default(), "iot", "lan").unwrap();
        let m2 = Model::compose(&b, &o).unwrap();
        assert!(!m2.allows.iter().any(|a| a.from.as_str() == "iot"));
        let (o2, _) = m2.plan_allow(&o, "iot", "lan", 53, "udp").unwrap();
        let m3 = Model::compose(&b, &o2).unwrap();
        let mx = m3.matrix().matrix;
        let id = |s: &str| DomainId::parse(s).unwrap();
        assert_eq!(mx[&id("iot")]["lan"], Reach::Only(vec!["udp/53".into()]));
        assert_eq!(mx[&id("lan")]["iot"], Reach::All);
        assert_eq!(mx[&id("admin")]["iot"], Reach::All);
        assert_eq!(mx[&id("iot")]["admin"], Reach::Nothing);
        let json = serde_json::to_string(&o2).unwrap();
        let back: Overlay = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o2);
    }

    #[test]
    fn net_state_lists_the_rulesets_flows_and_the_dhcp_scopes() {
        let m = model();
        let st = m.net_state();
        let flows: Vec<String> = st.flows.iter().map(|f| f.to_string()).collect();
        assert_eq!(flows, ["iot → lan tcp/443", "lan → iot everything"]);
        // iot's services name no dhcp.
        let scopes: Vec<&str> = st.scopes.keys().map(|d| d.as_str()).collect();
        assert_eq!(scopes, ["admin", "lan"]);
        assert_eq!(st.domains.len(), 3);
        // A port without a protocol is a tcp flow and a udp flow; the diff of
        // an allow already in force is empty.
        let b = base();
        let (o, _) = m
            .plan_allow(&Overlay::default(), "iot", "lan", 53, "")
            .unwrap();
        let after = Model::compose(&b, &o).unwrap().net_state();
        let d = contract::NetChange::between(contract::NetAction::Allow, true, &st, &after);
        assert_eq!(
            d.to_string(),
            "Opens iot → lan tcp/53 and iot → lan udp/53. Nothing else changes."
        );
        let (o2, _) = m
            .plan_allow(&Overlay::default(), "lan", "iot", 22, "tcp")
            .unwrap();
        let covered = Model::compose(&b, &o2).unwrap().net_state();
        let d = contract::NetChange::between(contract::NetAction::Allow, true, &st, &covered);
        assert!(d.is_empty(), "{d}");
        // Deleting iot removes it, its two flows and no scope.
        let o3 = m.plan_delete(&b, &Overlay::default(), "iot").unwrap();
        let gone = Model::compose(&b, &o3).unwrap().net_state();
        let d = contract::NetChange::between(contract::NetAction::Delete, false, &st, &gone);
        assert_eq!(
            d.to_string(),
            "Deletes domain iot (bridge hb-iot, 10.77.2.0/24) and the 2 allows that involve it."
        );
    }

    #[test]
    fn deleting_a_domain_drops_its_allows() {
        let b = base();
        let m = model();
        let o = m.plan_delete(&b, &Overlay::default(), "iot").unwrap();
        let m2 = Model::compose(&b, &o).unwrap();
        assert!(m2.allows.is_empty());
        assert!(!m2.domains.contains_key(&DomainId::parse("iot").unwrap()));
    }

    #[test]
    fn bad_base_configs_are_refused() {
        let p = Path::new("network.toml");
        let overlap = r#"admin = "a"
[[domain]]
name = "a"
subnet = "10.0.0.0/24"
[[domain]]
name = "b"
subnet = "10.0.0.0/23"
"#;
        let c: NetworkConfig = hearth_common::config::parse(p, overlap).unwrap();
        assert_eq!(
            Model::compose(&c, &Overlay::default()).unwrap_err().kind(),
            "Conflict"
        );
        let no_admin = "admin = \"a\"\n[[domain]]\nname = \"b\"\nsubnet = \"10.0.0.0/24\"\n";
        let c: NetworkConfig = hearth_common::config::parse(p, no_admin).unwrap();
        assert_eq!(
            Model::compose(&c, &Overlay::default()).unwrap_err().kind(),
            "NotFound"
        );
        let bad_vlan = "admin = \"a\"\n[[domain]]\nname = \"a\"\nsubnet = \"10.0.0.0/24\"\nvlan = { parent = \"eth1\", id = 5000 }\n";
        let c: NetworkConfig = hearth_common::config::parse(p, bad_vlan).unwrap();
        assert_eq!(
            Model::compose(&c, &Overlay::default()).unwrap_err().kind(),
            "InvalidArgument"
        );
        let bad_name = "admin = \"A\"\n";
        let e = hearth_common::config::parse::<NetworkConfig>(p, bad_name).unwrap_err();
        assert!(e.to_string().starts_with("network.toml:1:"), "{e}");
        let unknown = "admin = \"a\"\nuplnk = \"eth0\"\n";
        assert!(hearth_common::config::parse::<NetworkConfig>(p, unknown).is_err());
    }
}

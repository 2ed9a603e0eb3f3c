//! The declarative base of the network: the file given by `--config`
//! (the unit passes `/etc/hearth/hearth-netd.toml`; the sandbox uses
//! `daemons/netd/sandbox.toml` as its template).
//!
//! ```toml
//! uplink = "eth0"            # optional: masquerade and internet access go out here
//! admin = "admin"            # the domain that reaches every other one
//! pool = "10.77.0.0/16"      # optional: /24s handed to domains created without a subnet
//!
//! [[domain]]
//! name = "admin"
//! subnet = "10.77.0.0/24"    # IPv4; the first host is the gateway on hb-admin
//! ula = "fd42:77::/64"       # optional IPv6 ULA prefix; gateway is prefix::1
//! services = ["dns", "dhcp"] # appliance services this domain may reach (default dns, dhcp)
//! vlan = { parent = "eth1", id = 10 }   # optional: eth1.10 enslaved to hb-admin
//!
//! [[allow]]
//! from = "iot"
//! to = "lan"
//! port = 443                 # optional
//! protocol = "tcp"           # optional
//!
//! [access]                   # who may read / change (hearth_runtime::AccessConfig)
//! admins_group = "hearth-admins"
//! ```
//!
//! The file is parsed with `hearth_common::config` (unknown keys rejected,
//! errors with file:line:column); cross-field rules are checked by
//! [`crate::model`]. A domain's subnet is private space (RFC 1918, or inside
//! `pool`) of /16 to /30 and its `ula` a prefix of fc00::/7 of /48 to /64
//! (`hearth_common::subnets`); no two domains overlap, and a domain created
//! at run time also stays clear of the uplink's network and every other
//! address of the appliance.

use hearth_common::types::{Cidr, DomainId, Port, Protocol};
use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The interface towards the internet (masquerade target). None: no NAT,
    /// domains reach only what allows grant.
    #[serde(default)]
    pub uplink: Option<String>,
    /// The admin domain: reaches every domain; cannot be deleted.
    pub admin: DomainId,
    /// Pool of addresses from which `/24`s are allocated to domains created
    /// without a subnet.
    #[serde(default)]
    pub pool: Option<Cidr>,
    /// The configured domains.
    #[serde(default, rename = "domain")]
    pub domains: Vec<DomainConfig>,
    /// The configured allows.
    #[serde(default, rename = "allow")]
    pub allows: Vec<AllowConfig>,
    /// Who may read and who may change the network over D-Bus.
    #[serde(default, skip_serializing)]
    pub access: hearth_runtime::AccessConfig,
}

impl hearth_runtime::DaemonConfig for NetworkConfig {
    fn access(&self) -> &hearth_runtime::AccessConfig {
        &self.access
    }
}

/// One `[[domain]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// Identifier; the bridge is `hb-<name>`.
    pub name: DomainId,
    /// IPv4 subnet; its first host is the gateway.
    pub subnet: Cidr,
    /// Optional IPv6 ULA prefix.
    #[serde(default)]
    pub ula: Option<Cidr>,
    /// Optional VLAN carried into the bridge.
    #[serde(default)]
    pub vlan: Option<VlanConfig>,
    /// Appliance services reachable from this domain: `dns`, `dhcp`, `ntp`,
    /// `ssh`, `https` or `tcp/<port>` / `udp/<port>`. Default: dns and dhcp.
    #[serde(default)]
    pub services: Option<Vec<String>>,
}

/// A VLAN sub-interface of `parent` with id `id`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VlanConfig {
    /// The parent interface (not owned by hearth-netd).
    pub parent: String,
    /// The VLAN id, 1 to 4094.
    pub id: u16,
}

/// One `[[allow]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowConfig {
    /// Source domain.
    pub from: DomainId,
    /// Destination domain.
    pub to: DomainId,
    /// Optional destination port (tcp and udp unless `protocol` is given).
    #[serde(default)]
    pub port: Option<Port>,
    /// Optional protocol.
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

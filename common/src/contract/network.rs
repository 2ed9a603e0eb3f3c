//! `org.hearth.Network1` results (hearth-netd; docs/dbus/network.md), and
//! the typed calls that read them.
//!
//! Every change method (CreateDomain, DeleteDomain, Allow, Revoke; real or
//! dry run) answers with a [`NetChange`]: the diff between the network
//! hearth-netd compiles before the change and the one it compiles after,
//! never an echo of the request. [`NetChange::between`] computes it from two
//! [`NetState`]s; its `Display` is the one plain line hearthctl and the
//! gate's preview show.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::decode;
use crate::proxies::network::NetworkProxy;
use crate::types::{Cidr, DomainId, Ipv4, Port, Protocol};
use crate::HearthError;

/// A VLAN carried into a domain's bridge.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vlan {
    /// The parent interface (`eth1`).
    pub parent: String,
    /// The VLAN id, 1 to 4094.
    pub id: u16,
}

/// One domain, as `ListDomains` (and `Show`'s `domains`) gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Its identifier.
    pub name: DomainId,
    /// Its bridge, `hb-<name>`.
    pub bridge: String,
    /// Its IPv4 subnet.
    pub subnet: Cidr,
    /// The appliance's address in it (the subnet's first host).
    pub gateway: Ipv4,
    /// Its ULA prefix, if any.
    pub ula: Option<Cidr>,
    /// Its VLAN, if any.
    pub vlan: Option<Vlan>,
    /// The appliance services it reaches, as configured (`dns`, `dhcp`, `tcp/8443`…).
    pub services: Vec<String>,
    /// True for the admin domain (it reaches every domain; it cannot be
    /// deleted or cut off).
    pub admin: bool,
}

/// An explicit allow: `from` may open connections to `to`, optionally only
/// on one port and/or protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// The domain that opens connections.
    pub from: DomainId,
    /// The domain reached.
    pub to: DomainId,
    /// The only destination port; `None`: every port.
    pub port: Option<Port>,
    /// The only protocol; `None`: every protocol (tcp and udp with a port).
    pub protocol: Option<Protocol>,
}

/// What one domain may open towards another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Everything (`"all"`).
    All,
    /// Nothing (`"none"`).
    Nothing,
    /// Only these, as `tcp/443`, `udp`, `any/53` (`["tcp/443", …]`).
    Only(Vec<String>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ReachWire {
    Word(String),
    List(Vec<String>),
}

impl Serialize for Reach {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reach::All => s.serialize_str("all"),
            Reach::Nothing => s.serialize_str("none"),
            Reach::Only(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Reach {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match ReachWire::deserialize(d)? {
            ReachWire::Word(w) if w == "all" => Ok(Reach::All),
            ReachWire::Word(w) if w == "none" => Ok(Reach::Nothing),
            ReachWire::Word(w) => Err(serde::de::Error::custom(format!(
                "a reach is \"all\", \"none\" or a list, not {w:?}"
            ))),
            ReachWire::List(l) => Ok(Reach::Only(l)),
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reach::All => f.write_str("all"),
            Reach::Nothing => f.write_str("none"),
            Reach::Only(l) => f.write_str(&l.join(",")),
        }
    }
}

/// Rows of the reachability matrix: from each domain, to each other domain
/// (and `uplink:<ifname>` when an uplink is configured), its [`Reach`].
pub type MatrixRows = BTreeMap<DomainId, BTreeMap<String, Reach>>;

/// `Matrix`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// The admin domain.
    pub admin: DomainId,
    /// What each domain reaches.
    pub matrix: MatrixRows,
}

/// The kernel table's state, in `Show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableStatus {
    /// `inet`.
    pub family: String,
    /// `hearth`.
    pub name: String,
    /// Rules the table should hold.
    pub rules: usize,
    /// Set elements the table should hold.
    pub elements: usize,
    /// Whether the kernel's table carries the expected ruleset now; `None`
    /// when it could not be read (see `error`).
    pub current: Option<bool>,
    /// Why the table could not be read.
    pub error: Option<String>,
}

/// `Show`'s result: everything hearth-netd enforces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Show {
    /// The admin domain.
    pub admin: DomainId,
    /// The uplink interface, if configured.
    pub uplink: Option<String>,
    /// The pool new domains' subnets come from, if configured.
    pub pool: Option<Cidr>,
    /// The domains, as `ListDomains`.
    pub domains: Vec<Domain>,
    /// The explicit allows, sorted.
    pub allows: Vec<Allow>,
    /// The reachability matrix, as `Matrix`'s `matrix`.
    pub matrix: MatrixRows,
    /// The kernel table.
    pub table: TableStatus,
}

/// One change a reconcile made to the kernel's links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LinkChange {
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
    /// An existing link was marked as hearth-netd's (alias set).
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
    /// An owned link no longer configured was deleted.
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

/// One replacement of the nftables table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallApply {
    /// Messages in the batch.
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// Rules in the new table.
    pub rules: usize,
    /// Set elements in the new table.
    pub elements: usize,
    /// The nftables generation after the commit.
    pub generation: u32,
    /// Wall time of the transaction, in microseconds.
    pub micros: u64,
}

/// `Reconcile`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconciled {
    /// Link and sysctl changes.
    pub links: Vec<LinkChange>,
    /// The table replacement, when the table was not already current.
    pub firewall: Option<FirewallApply>,
    /// Number of changes (each table replacement counts one); 0 when the
    /// kernel already matched.
    pub changes: usize,
}

/// The change method a [`NetChange`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetAction {
    /// `CreateDomain`.
    Create,
    /// `DeleteDomain`.
    Delete,
    /// `Allow`.
    Allow,
    /// `Revoke`.
    Revoke,
}

impl NetAction {
    /// `create`, `delete`, `allow` or `revoke` (the `what` of `Changed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            NetAction::Create => "create",
            NetAction::Delete => "delete",
            NetAction::Allow => "allow",
            NetAction::Revoke => "revoke",
        }
    }
}

/// One flow the firewall lets through: `from` may open connections to `to`
/// with `protocol` (`None`: any) on `port` (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// The domain that opens connections.
    pub from: DomainId,
    /// The domain reached.
    pub to: DomainId,
    /// The protocol; `None`: every protocol.
    pub protocol: Option<Protocol>,
    /// The destination port; `None`: every port.
    pub port: Option<Port>,
}

impl Flow {
    /// True when every connection `other` lets through, `self` lets
    /// through too.
    pub fn covers(&self, other: &Flow) -> bool {
        self.from == other.from
            && self.to == other.to
            && (self.protocol.is_none() || self.protocol == other.protocol)
            && (self.port.is_none() || self.port == other.port)
    }

    /// True when the flow starts or ends in `d`.
    pub fn involves(&self, d: &DomainId) -> bool {
        &self.from == d || &self.to == d
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → {} ", self.from, self.to)?;
        match (self.protocol, self.port) {
            (None, None) => f.write_str("everything"),
            (Some(p), None) => write!(f, "{p}"),
            (Some(p), Some(port)) => write!(f, "{p}/{port}"),
            (None, Some(port)) => write!(f, "tcp+udp/{port}"),
        }
    }
}

/// A domain created or removed by a change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainBrief {
    /// Its identifier.
    pub name: DomainId,
    /// Its bridge, `hb-<name>`.
    pub bridge: String,
    /// Its IPv4 subnet.
    pub subnet: Cidr,
    /// The appliance's address in it.
    pub gateway: Ipv4,
    /// Its VLAN, if any.
    pub vlan: Option<Vlan>,
}

/// A DHCP scope: a domain whose services include `dhcp`, which
/// hearth-dhcpd serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpScope {
    /// The domain.
    pub domain: DomainId,
    /// Its subnet.
    pub subnet: Cidr,
    /// The gateway handed out (router and DNS).
    pub gateway: Ipv4,
}

/// What the network lets through and holds at one moment, as hearth-netd
/// compiles it: the input of [`NetChange::between`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetState {
    /// The flows of the firewall's allow sets.
    pub flows: BTreeSet<Flow>,
    /// The domains.
    pub domains: BTreeMap<DomainId, DomainBrief>,
    /// The DHCP scopes, by domain.
    pub scopes: BTreeMap<DomainId, DhcpScope>,
}

/// The result of every change method of Network1: what the change does (or,
/// on a dry run, would do), computed from the network before and after it.
/// Empty lists everywhere: nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetChange {
    /// The method answered.
    pub action: NetAction,
    /// True when nothing was changed (a preview).
    pub dry_run: bool,
    /// Flows the firewall lets through after and not before.
    pub opened: Vec<Flow>,
    /// Flows the firewall let through before and not after.
    pub closed: Vec<Flow>,
    /// Domains (bridges) created.
    pub domains_created: Vec<DomainBrief>,
    /// Domains (bridges) removed.
    pub domains_removed: Vec<DomainBrief>,
    /// DHCP scopes hearth-dhcpd starts serving.
    pub dhcp_scopes_added: Vec<DhcpScope>,
    /// DHCP scopes hearth-dhcpd stops serving.
    pub dhcp_scopes_removed: Vec<DhcpScope>,
}

/// The flows of `set` no other flow of `set` covers.
fn minimal(set: &BTreeSet<Flow>) -> Vec<&Flow> {
    set.iter()
        .filter(|f| !set.iter().any(|g| g != *f && g.covers(f)))
        .collect()
}

/// The entries of `a` that `b` lacks or holds differently.
fn missing_from<K: Ord, V: PartialEq + Clone>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> Vec<V> {
    a.iter()
        .filter(|(k, v)| b.get(k) != Some(v))
        .map(|(_, v)| v.clone())
        .collect()
}

impl NetChange {
    /// The diff from `before` to `after`: a flow is opened when no flow of
    /// `before` covered it, closed when no flow of `after` covers it (flows
    /// covered by another of the same side are not listed).
    pub fn between(action: NetAction, dry_run: bool, before: &NetState, after: &NetState) -> Self {
        let newly = |from: &NetState, to: &NetState| -> Vec<Flow> {
            minimal(&to.flows)
                .into_iter()
                .filter(|f| !from.flows.iter().any(|g| g.covers(f)))
                .cloned()
                .collect()
        };
        NetChange {
            action,
            dry_run,
            opened: newly(before, after),
            closed: newly(after, before),
            domains_created: missing_from(&after.domains, &before.domains),
            domains_removed: missing_from(&before.domains, &after.domains),
            dhcp_scopes_added: missing_from(&after.scopes, &before.scopes),
            dhcp_scopes_removed: missing_from(&before.scopes, &after.scopes),
        }
    }

    /// True when the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.opened.is_empty()
            && self.closed.is_empty()
            && self.domains_created.is_empty()
            && self.domains_removed.is_empty()
            && self.dhcp_scopes_added.is_empty()
            && self.dhcp_scopes_removed.is_empty()
    }
}

fn flows_text(l: &[&Flow]) -> String {
    let items: Vec<String> = l.iter().map(|f| f.to_string()).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn brief_text(d: &DomainBrief) -> String {
    let vlan = d
        .vlan
        .as_ref()
        .map(|v| format!(", VLAN {}.{}", v.parent, v.id))
        .unwrap_or_default();
    format!("{} (bridge {}, {}{vlan})", d.name, d.bridge, d.subnet)
}

/// One plain line: "Opens lan → cams tcp/554. Nothing else changes.",
/// "Deletes domain guest (bridge hb-guest, 10.77.3.0/24) and the 2 allows
/// that involve it.", "Nothing changes."
impl fmt::Display for NetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("Nothing changes.");
        }
        let removed: Vec<&DomainId> = self.domains_removed.iter().map(|d| &d.name).collect();
        let created: Vec<&DomainId> = self.domains_created.iter().map(|d| &d.name).collect();
        let scope_of = |l: &[DhcpScope], d: &DomainId| l.iter().any(|s| &s.domain == d);
        let mut sentences = Vec::new();
        for d in &self.domains_created {
            let dhcp = if scope_of(&self.dhcp_scopes_added, &d.name) {
                " with a DHCP scope"
            } else {
                ""
            };
            sentences.push(format!("Creates domain {}{dhcp}.", brief_text(d)));
        }
        for d in &self.domains_removed {
            let n = self.closed.iter().filter(|c| c.involves(&d.name)).count();
            let allows = match n {
                0 => String::new(),
                1 => " and the allow that involves it".into(),
                n => format!(" and the {n} allows that involve it"),
            };
            let dhcp = if scope_of(&self.dhcp_scopes_removed, &d.name) {
                if allows.is_empty() {
                    " and its DHCP scope"
                } else {
                    ", its DHCP scope"
                }
            } else {
                ""
            };
            sentences.push(format!("Deletes domain {}{dhcp}{allows}.", brief_text(d)));
        }
        let about_removed = |fl: &Flow| removed.iter().any(|d| fl.involves(d));
        let opened: Vec<&Flow> = self.opened.iter().filter(|x| !about_removed(x)).collect();
        let closed: Vec<&Flow> = self.closed.iter().filter(|x| !about_removed(x)).collect();
        if !opened.is_empty() {
            sentences.push(format!("Opens {}.", flows_text(&opened)));
        }
        if !closed.is_empty() {
            sentences.push(format!("Closes {}.", flows_text(&closed)));
        }
        for s in &self.dhcp_scopes_added {
            if !created.contains(&&s.domain) {
                sentences.push(format!(
                    "Adds the DHCP scope of {} ({}).",
                    s.domain, s.subnet
                ));
            }
        }
        for s in &self.dhcp_scopes_removed {
            if !removed.contains(&&s.domain) {
                sentences.push(format!(
                    "Removes the DHCP scope of {} ({}).",
                    s.domain, s.subnet
                ));
            }
        }
        // A deletion says all it does; anything else is bounded explicitly.
        if self.domains_removed.is_empty() || !opened.is_empty() || !closed.is_empty() {
            sentences.push("Nothing else changes.".into());
        }
        f.write_str(&sentences.join(" "))
    }
}

const IFACE: &str = "org.hearth.Network1";

fn method(m: &str) -> String {
    format!("{IFACE}.{m}")
}

/// `ListDomains`: the domains.
pub async fn domains(p: &NetworkProxy<'_>) -> Result<Vec<Domain>, HearthError> {
    decode(&method("ListDomains"), &p.list_domains().await?)
}

/// `Show`: everything hearth-netd enforces.
pub async fn show(p: &NetworkProxy<'_>) -> Result<Show, HearthError> {
    decode(&method("Show"), &p.show().await?)
}

/// `Matrix`: the reachability matrix.
pub async fn matrix(p: &NetworkProxy<'_>) -> Result<Matrix, HearthError> {
    decode(&method("Matrix"), &p.matrix().await?)
}

/// `CreateDomain` (subnet "": a free /24 of the pool).
pub async fn create_domain(
    p: &NetworkProxy<'_>,
    name: &str,
    subnet: &str,
    dry_run: bool,
) -> Result<NetChange, HearthError> {
    decode(
        &method("CreateDomain"),
        &p.create_domain(name, subnet, dry_run).await?,
    )
}

/// `DeleteDomain`.
pub async fn delete_domain(
    p: &NetworkProxy<'_>,
    name: &str,
    dry_run: bool,
) -> Result<NetChange, HearthError> {
    decode(
        &method("DeleteDomain"),
        &p.delete_domain(name, dry_run).await?,
    )
}

/// `Allow` (port 0: any; protocol "": any).
pub async fn allow(
    p: &NetworkProxy<'_>,
    from: &str,
    to: &str,
    port: u32,
    protocol: &str,
    dry_run: bool,
) -> Result<NetChange, HearthError> {
    decode(
        &method("Allow"),
        &p.allow(from, to, port, protocol, dry_run).await?,
    )
}

/// `Revoke`: every allow from `from` to `to`.
pub async fn revoke(
    p: &NetworkProxy<'_>,
    from: &str,
    to: &str,
    dry_run: bool,
) -> Result<NetChange, HearthError> {
    decode(&method("Revoke"), &p.revoke(from, to, dry_run).await?)
}

/// `Reconcile`.
pub async fn reconcile(p: &NetworkProxy<'_>) -> Result<Reconciled, HearthError> {
    decode(&method("Reconcile"), &p.reconcile().await?)
}

/// The `detail` of `Changed("restore", detail)`: the guard put the
/// `inet hearth` table back after another program flushed or altered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restored {
    /// What changed the table and how (`process "nft" (pid 123) changed
    /// it: deleted table, …`).
    pub why: String,
    /// The nftables ruleset generation after the restore.
    pub generation: u32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(s: &str) -> DomainId {
        DomainId::parse(s).unwrap()
    }

    fn flow(from: &str, to: &str, p: Option<Protocol>, port: Option<u32>) -> Flow {
        Flow {
            from: id(from),
            to: id(to),
            protocol: p,
            port: port.map(|n| Port::from_number("port", n).unwrap()),
        }
    }

    fn brief(name: &str, subnet: &str, gw: &str) -> DomainBrief {
        DomainBrief {
            name: id(name),
            bridge: id(name).bridge_name(),
            subnet: Cidr::parse(subnet).unwrap(),
            gateway: Ipv4::parse(gw).unwrap(),
            vlan: None,
        }
    }

    fn state(flows: &[Flow], domains: &[DomainBrief], dhcp: &[&str]) -> NetState {
        NetState {
            flows: flows.iter().cloned().collect(),
            domains: domains
                .iter()
                .map(|d| (d.name.clone(), d.clone()))
                .collect(),
            scopes: domains
                .iter()
                .filter(|d| dhcp.contains(&d.name.as_str()))
                .map(|d| {
                    let s = DhcpScope {
                        domain: d.name.clone(),
                        subnet: d.subnet,
                        gateway: d.gateway,
                    };
                    (d.name.clone(), s)
                })
                .collect(),
        }
    }

    fn doms() -> Vec<DomainBrief> {
        vec![
            brief("lan", "10.77.1.0/24", "10.77.1.1"),
            brief("cams", "10.77.2.0/24", "10.77.2.1"),
            brief("guest", "10.77.3.0/24", "10.77.3.1"),
        ]
    }

    const TCP: Option<Protocol> = Some(Protocol::Tcp);

    #[test]
    fn an_allow_opens_exactly_its_flow() {
        let before = state(&[], &doms(), &["lan"]);
        let after = state(&[flow("lan", "cams", TCP, Some(554))], &doms(), &["lan"]);
        let d = NetChange::between(NetAction::Allow, true, &before, &after);
        assert_eq!(d.opened, vec![flow("lan", "cams", TCP, Some(554))]);
        assert!(d.closed.is_empty() && d.domains_created.is_empty());
        assert_eq!(
            d.to_string(),
            "Opens lan → cams tcp/554. Nothing else changes."
        );
    }

    #[test]
    fn an_allow_already_in_force_or_covered_changes_nothing() {
        let all = flow("lan", "cams", None, None);
        let before = state(std::slice::from_ref(&all), &doms(), &[]);
        let after = state(&[all, flow("lan", "cams", TCP, Some(554))], &doms(), &[]);
        let d = NetChange::between(NetAction::Allow, false, &before, &after);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_string(), "Nothing changes.");
        let same = NetChange::between(NetAction::Allow, false, &before, &before);
        assert_eq!(same.to_string(), "Nothing changes.");
    }

    #[test]
    fn a_revoke_closes_what_no_longer_passes_once() {
        let all = flow("lan", "cams", None, None);
        let one = flow("lan", "cams", TCP, Some(554));
        let udp = flow("cams", "lan", Some(Protocol::Udp), Some(53));
        let before = state(&[all.clone(), one, udp.clone()], &doms(), &[]);
        let after = state(std::slice::from_ref(&udp), &doms(), &[]);
        let d = NetChange::between(NetAction::Revoke, false, &before, &after);
        assert_eq!(d.closed, vec![all]);
        assert!(d.opened.is_empty());
        assert_eq!(
            d.to_string(),
            "Closes lan → cams everything. Nothing else changes."
        );
    }

    #[test]
    fn a_delete_names_the_domain_its_bridge_and_the_allows_that_go_with_it() {
        let flows = [
            flow("lan", "guest", None, None),
            flow("guest", "lan", TCP, Some(443)),
            flow("lan", "cams", TCP, Some(554)),
        ];
        let before = state(&flows, &doms(), &["lan"]);
        let after = state(&flows[2..], &doms()[..2], &["lan"]);
        let d = NetChange::between(NetAction::Delete, false, &before, &after);
        assert_eq!(d.domains_removed, vec![doms()[2].clone()]);
        assert_eq!(d.closed.len(), 2);
        assert_eq!(
            d.to_string(),
            "Deletes domain guest (bridge hb-guest, 10.77.3.0/24) and the 2 allows that involve it."
        );
        // With its DHCP scope.
        let before = state(&flows, &doms(), &["guest"]);
        let after = state(&flows[2..], &doms()[..2], &[]);
        let d = NetChange::between(NetAction::Delete, false, &before, &after);
        assert_eq!(d.dhcp_scopes_removed.len(), 1);
        assert_eq!(
            d.to_string(),
            "Deletes domain guest (bridge hb-guest, 10.77.3.0/24), its DHCP scope and the 2 allows that involve it."
        );
    }

    #[test]
    fn a_create_names_the_bridge_subnet_vlan_and_scope() {
        let mut cams = brief("cams", "10.77.2.0/24", "10.77.2.1");
        cams.vlan = Some(Vlan {
            parent: "eth1".into(),
            id: 20,
        });
        let before = state(&[], &doms()[..1], &[]);
        let mut after = state(&[], &doms()[..1], &[]);
        after.domains.insert(cams.name.clone(), cams.clone());
        after.scopes.insert(
            cams.name.clone(),
            DhcpScope {
                domain: cams.name.clone(),
                subnet: cams.subnet,
                gateway: cams.gateway,
            },
        );
        let d = NetChange::between(NetAction::Create, true, &before, &after);
        assert_eq!(d.domains_created, vec![cams]);
        assert_eq!(d.dhcp_scopes_added.len(), 1);
        assert_eq!(
            d.to_string(),
            "Creates domain cams (bridge hb-cams, 10.77.2.0/24, VLAN eth1.20) with a DHCP scope. Nothing else changes."
        );
    }

    #[test]
    fn results_round_trip_and_unknown_fields_are_refused() {
        let before = state(&[], &doms(), &[]);
        let after = state(&[flow("lan", "cams", None, Some(53))], &doms(), &[]);
        let d = NetChange::between(NetAction::Allow, false, &before, &after);
        let text = super::super::encode(&d).unwrap();
        assert!(text.contains(r#""port":53"#), "{text}");
        assert_eq!(decode::<NetChange>("Allow", &text).unwrap(), d);
        let m = r#"{"admin":"admin","matrix":{"lan":{"admin":"none","cams":["tcp/443"],"uplink:eth0":"all"}}}"#;
        let mx: Matrix = decode("Matrix", m).unwrap();
        assert_eq!(mx.matrix[&id("lan")]["uplink:eth0"], Reach::All);
        assert_eq!(super::super::encode(&mx).unwrap(), m);
        assert!(decode::<Matrix>("Matrix", r#"{"admin":"a","matrix":{},"x":1}"#).is_err());
        let dom = r#"[{"name":"lan","bridge":"hb-lan","subnet":"10.77.1.0/24","gateway":"10.77.1.1","ula":null,"vlan":null,"services":["dns"],"admin":false}]"#;
        let l: Vec<Domain> = decode("ListDomains", dom).unwrap();
        assert_eq!(l[0].gateway.to_string(), "10.77.1.1");
        assert!(decode::<Vec<Domain>>("ListDomains", r#"["lan"]"#).is_err());
    }
}

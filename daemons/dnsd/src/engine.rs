//! The zone engine: the records of the configured zones, their changes and
//! their persistence. No bus, no sockets.
//!
//! Rules:
//! * A name holds either addresses (one or more A and AAAA records, in any
//!   mix) or one alias (CNAME), never both.
//! * An exact duplicate (same name and address, or the same alias again) is a
//!   Conflict.
//! * A name outside every configured zone is an InvalidArgument naming it.
//! * A zone's apex holds its SOA and NS and so can take addresses but no
//!   alias; the configured name-server host's addresses are fixed.
//! * Every successful change increases the SOA serial of the zone changed,
//!   and is written to `zones.json` in the state directory (atomically)
//!   before it is published to the DNS server; a failed write publishes
//!   nothing and keeps the old state. Every refused change changes nothing.
//! * Every change answers a [`ZoneDiff`] computed from the records before and
//!   after it; a change that changes nothing keeps the serial and writes
//!   nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use hearth_common::contract::dns::{NameRecords, Record, RecordType, Zone, ZoneDiff};
use hearth_common::types::{Address, DnsName};
use serde::{Deserialize, Serialize};

use crate::answer::Snapshot;
use crate::config::{validate_zones, ZoneConfig};

/// File name of the zone data in the state directory.
pub const STATE_FILE: &str = "zones.json";

/// Longest alias chain the server follows (and the engine allows).
pub const MAX_CHAIN: usize = 8;

/// Why an operation was refused or failed. Nothing changed in any case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// A value is outside the zones or does not fit.
    #[error("{0}")]
    InvalidArgument(String),
    /// The name or record does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change clashes with what exists.
    #[error("{0}")]
    Conflict(String),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The state could not be read or written.
    #[error("{0}")]
    Storage(String),
}

/// The records stored for one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    /// A and AAAA records.
    Addresses(BTreeSet<Address>),
    /// A CNAME to the target.
    Alias(DnsName),
}

/// The persisted state of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneState {
    /// The SOA serial.
    pub serial: u32,
}

/// What `zones.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredState {
    /// Format version, 1.
    pub version: u32,
    /// Serial per zone (zones once configured stay here).
    pub zones: BTreeMap<DnsName, ZoneState>,
    /// Records per name.
    pub names: BTreeMap<DnsName, Node>,
}

/// One change of the zone data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add an A/AAAA record.
    AddRecord {
        /// Owner name.
        name: DnsName,
        /// The address.
        address: Address,
    },
    /// Make a name a CNAME.
    AddAlias {
        /// The alias.
        name: DnsName,
        /// What it points at.
        target: DnsName,
    },
    /// Remove every record of a name.
    Remove {
        /// The name.
        name: DnsName,
    },
    /// Remove one A/AAAA record.
    RemoveRecord {
        /// Owner name.
        name: DnsName,
        /// The address.
        address: Address,
    },
    /// Add back records that a removal returned (all of one name), at once.
    Restore {
        /// The records.
        records: Vec<Record>,
    },
}

/// A handle on the live zone data, shared by the engine and the DNS server:
/// the server reads the latest published snapshot on every query.
#[derive(Debug, Clone)]
pub struct ZoneView(Arc<RwLock<Arc<Snapshot>>>);

impl ZoneView {
    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn publish(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        match self.0.write() {
            Ok(mut g) => *g = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }
}

/// The zone engine. Methods take `&mut self`; wrap it in a mutex to share it.
#[derive(Debug)]
pub struct Engine {
    zones: Vec<ZoneConfig>,
    state: StoredState,
    path: PathBuf,
    view: ZoneView,
}

impl Engine {
    /// Opens the engine for `zones` with its state in `state_dir` (created if
    /// missing). An unreadable or corrupt state file is an error: the data is
    /// never silently discarded.
    pub fn open(zones: &[ZoneConfig], state_dir: &Path) -> Result<Self, ZoneError> {
        validate_zones(zones).map_err(|e| ZoneError::Config(e.to_string()))?;
        std::fs::create_dir_all(state_dir).map_err(|e| {
            ZoneError::Storage(format!("cannot create {}: {e}", state_dir.display()))
        })?;
        let path = state_dir.join(STATE_FILE);
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<StoredState>(&bytes).map_err(|e| {
                ZoneError::Storage(format!("{}: not valid zone data: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredState {
                version: 1,
                ..StoredState::default()
            },
            Err(e) => {
                return Err(ZoneError::Storage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        if state.version != 1 {
            return Err(ZoneError::Storage(format!(
                "{}: unknown format version {}",
                path.display(),
                state.version
            )));
        }
        for z in zones {
            state
                .zones
                .entry(z.name.clone())
                .or_insert(ZoneState { serial: 1 });
        }
        let mut zones = zones.to_vec();
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        for name in state.names.keys() {
            if zone_index(&zones, name).is_none() {
                tracing::warn!(%name, "stored records lie outside every configured zone; kept but not served");
            }
        }
        let snap = Snapshot::build(&zones, &state);
        Ok(Engine {
            zones,
            state,
            path,
            view: ZoneView(Arc::new(RwLock::new(Arc::new(snap)))),
        })
    }

    /// The handle the DNS server reads from.
    pub fn view(&self) -> ZoneView {
        self.view.clone()
    }

    /// The configured zones, sorted by name.
    pub fn zones(&self) -> &[ZoneConfig] {
        &self.zones
    }

    /// The SOA serial of `zone`.
    pub fn serial(&self, zone: &DnsName) -> Option<u32> {
        self.state.zones.get(zone).map(|z| z.serial)
    }

    /// Adds an A (IPv4) or AAAA (IPv6) record. Several addresses per name are
    /// allowed; the same address twice is a Conflict, and so is a name that
    /// holds an alias.
    pub fn add_record(&mut self, name: &DnsName, address: Address) -> Result<ZoneDiff, ZoneError> {
        self.apply(
            &Op::AddRecord {
                name: name.clone(),
                address,
            },
            false,
        )
    }

    /// Adds an alias: `name` becomes a CNAME for `target`. Refused when
    /// `name` holds any record, when `target` is `name`, at a zone apex, and
    /// when the alias would close a loop.
    pub fn add_alias(&mut self, name: &DnsName, target: &DnsName) -> Result<ZoneDiff, ZoneError> {
        self.apply(
            &Op::AddAlias {
                name: name.clone(),
                target: target.clone(),
            },
            false,
        )
    }

    /// Removes every record of `name`; the result lists them (re-adding them,
    /// or [`Op::Restore`], undoes the removal). NotFound when the name has none.
    pub fn remove(&mut self, name: &DnsName) -> Result<ZoneDiff, ZoneError> {
        self.apply(&Op::Remove { name: name.clone() }, false)
    }

    /// Removes exactly one A/AAAA record. NotFound when `name` lacks it.
    pub fn remove_record(
        &mut self,
        name: &DnsName,
        address: Address,
    ) -> Result<ZoneDiff, ZoneError> {
        self.apply(
            &Op::RemoveRecord {
                name: name.clone(),
                address,
            },
            false,
        )
    }

    /// Checks and applies one change. With `dry_run` the change is checked
    /// exactly as for real and its diff (with the serial the zone would get)
    /// returned, but nothing is written or published. The diff is computed
    /// from the zone's records before and after the change.
    pub fn apply(&mut self, op: &Op, dry_run: bool) -> Result<ZoneDiff, ZoneError> {
        let mut next = self.state.clone();
        let name = match op {
            Op::AddRecord { name, address } => {
                self.stage_add_record(&mut next, name, *address)?;
                name.clone()
            }
            Op::AddAlias { name, target } => {
                self.stage_add_alias(&mut next, name, target)?;
                name.clone()
            }
            Op::Remove { name } => {
                self.changeable(name)?;
                if next.names.remove(name).is_none() {
                    return Err(ZoneError::NotFound(format!("{name} has no records")));
                }
                name.clone()
            }
            Op::RemoveRecord { name, address } => {
                self.changeable(name)?;
                let missing = || {
                    ZoneError::NotFound(format!(
                        "{name} has no record {} {address}",
                        rtype_of(address)
                    ))
                };
                match next.names.get_mut(name) {
                    Some(Node::Addresses(set)) => {
                        if !set.remove(address) {
                            return Err(missing());
                        }
                        if set.is_empty() {
                            next.names.remove(name);
                        }
                    }
                    _ => return Err(missing()),
                }
                name.clone()
            }
            Op::Restore { records } => {
                let Some(first) = records.first() else {
                    return Err(ZoneError::InvalidArgument(
                        "invalid records: the list is empty; give the records to restore".into(),
                    ));
                };
                let name = first.name.clone();
                // Check every record first, then stage them in order.
                enum Rec {
                    Addr(Address),
                    Alias(DnsName),
                }
                let mut parsed = Vec::new();
                for (i, r) in records.iter().enumerate() {
                    if r.name != name {
                        return Err(ZoneError::InvalidArgument(format!(
                            "invalid records[{i}].name {:?}: every record restored at once must have the name {name}",
                            r.name.as_str()
                        )));
                    }
                    let field = format!("records[{i}].value");
                    let bad = |e: hearth_common::types::ParseError| {
                        ZoneError::InvalidArgument(e.to_string())
                    };
                    parsed.push(match r.rtype {
                        t @ (RecordType::A | RecordType::AAAA) => {
                            let address = Address::parse_field(&field, &r.value).map_err(bad)?;
                            if RecordType::of_address(&address) != t {
                                return Err(ZoneError::InvalidArgument(format!(
                                    "invalid {field} {:?}: not an address of type {t}",
                                    r.value
                                )));
                            }
                            Rec::Addr(address)
                        }
                        RecordType::CNAME => {
                            Rec::Alias(DnsName::parse_field(&field, &r.value).map_err(bad)?)
                        }
                    });
                }
                for rec in parsed {
                    match rec {
                        Rec::Addr(address) => self.stage_add_record(&mut next, &name, address)?,
                        Rec::Alias(target) => self.stage_add_alias(&mut next, &name, &target)?,
                    }
                }
                name
            }
        };
        let zi = self.zone_of(&name)?;
        self.commit(next, zi, &name, dry_run)
    }

    /// Adds `address` to `name` in `next` (checked against `next`).
    fn stage_add_record(
        &self,
        next: &mut StoredState,
        name: &DnsName,
        address: Address,
    ) -> Result<(), ZoneError> {
        self.changeable(name)?;
        match next.names.get_mut(name) {
            Some(Node::Alias(target)) => {
                return Err(ZoneError::Conflict(format!(
                    "{name} is an alias (CNAME) for {target}; a CNAME cannot stand beside other records: remove the alias first"
                )))
            }
            Some(Node::Addresses(set)) => {
                if !set.insert(address) {
                    return Err(ZoneError::Conflict(format!(
                        "{name} already has the record {} {address}",
                        rtype_of(&address)
                    )));
                }
            }
            None => {
                next.names
                    .insert(name.clone(), Node::Addresses(BTreeSet::from([address])));
            }
        }
        Ok(())
    }

    /// Makes `name` an alias for `target` in `next` (checked against `next`).
    fn stage_add_alias(
        &self,
        next: &mut StoredState,
        name: &DnsName,
        target: &DnsName,
    ) -> Result<(), ZoneError> {
        let zi = self.changeable(name)?;
        if self.zones[zi].name == *name {
            return Err(ZoneError::Conflict(format!(
                "{name} is the apex of its zone and holds SOA and NS records; it cannot be an alias"
            )));
        }
        if target == name {
            return Err(ZoneError::InvalidArgument(format!(
                "invalid target {:?}: an alias cannot point at itself",
                target.as_str()
            )));
        }
        match next.names.get(name) {
            Some(Node::Alias(old)) if old == target => {
                return Err(ZoneError::Conflict(format!(
                    "{name} is already an alias for {target}"
                )))
            }
            Some(Node::Alias(old)) => {
                return Err(ZoneError::Conflict(format!(
                    "{name} is already an alias for {old}; remove it first"
                )))
            }
            Some(Node::Addresses(set)) => {
                let shown: Vec<String> =
                    set.iter().map(|a| format!("{} {a}", rtype_of(a))).collect();
                return Err(ZoneError::Conflict(format!(
                    "{name} already has records ({}); a CNAME cannot stand beside other records",
                    shown.join(", ")
                )));
            }
            None => {}
        }
        // Follow the target's chain: it must not lead back to `name`, and must
        // stay short enough for the server to follow.
        let mut hop = target.clone();
        for depth in 1.. {
            if hop == *name {
                return Err(ZoneError::Conflict(format!(
                    "an alias {name} -> {target} would make a loop back to {name}"
                )));
            }
            match next.names.get(&hop) {
                Some(Node::Alias(n)) if depth < MAX_CHAIN => hop = n.clone(),
                Some(Node::Alias(_)) => {
                    return Err(ZoneError::Conflict(format!(
                        "an alias {name} -> {target} would make a chain of more than {MAX_CHAIN} aliases"
                    )))
                }
                _ => break,
            }
        }
        next.names.insert(name.clone(), Node::Alias(target.clone()));
        Ok(())
    }

    /// The changeable records of `name` (empty when unused). InvalidArgument
    /// when the name lies outside every zone.
    pub fn describe(&self, name: &DnsName) -> Result<NameRecords, ZoneError> {
        let zi = self.zone_of(name)?;
        let records = match self.state.names.get(name) {
            Some(node) => self.node_views(zi, name, node),
            None => vec![],
        };
        Ok(NameRecords {
            name: name.clone(),
            zone: self.zones[zi].name.clone(),
            fixed: self.fixed_reason(name).is_some(),
            records,
        })
    }

    /// Every zone with its serial and records.
    pub fn list(&self) -> Vec<Zone> {
        self.zones
            .iter()
            .enumerate()
            .map(|(zi, z)| Zone {
                zone: z.name.clone(),
                serial: self.serial(&z.name).unwrap_or(1),
                ns: z.ns_name(),
                ns_addresses: z.ns_addresses.clone(),
                ttl: z.ttl,
                records: self
                    .state
                    .names
                    .iter()
                    .filter(|(n, _)| zone_index(&self.zones, n) == Some(zi))
                    .flat_map(|(n, node)| self.node_views(zi, n, node))
                    .collect(),
            })
            .collect()
    }

    fn zone_of(&self, name: &DnsName) -> Result<usize, ZoneError> {
        zone_index(&self.zones, name).ok_or_else(|| {
            let zones: Vec<&str> = self.zones.iter().map(|z| z.name.as_str()).collect();
            ZoneError::InvalidArgument(format!(
                "invalid name {:?}: it lies outside every served zone ({})",
                name.as_str(),
                zones.join(", ")
            ))
        })
    }

    fn fixed_reason(&self, name: &DnsName) -> Option<String> {
        self.zones
            .iter()
            .find(|z| z.ns_name() == *name && !z.ns_addresses.is_empty())
            .map(|z| {
                format!(
                    "{name} is the name server of zone {}; its addresses are set in the configuration",
                    z.name
                )
            })
    }

    /// The zone index of a name that may be changed.
    fn changeable(&self, name: &DnsName) -> Result<usize, ZoneError> {
        let zi = self.zone_of(name)?;
        if let Some(reason) = self.fixed_reason(name) {
            return Err(ZoneError::Conflict(reason));
        }
        Ok(zi)
    }

    /// The records of zone `zi` whose name holds something else in `a` than
    /// in `b` (the rest of the zone is the same on both sides of a diff).
    fn changed_records(&self, zi: usize, a: &StoredState, b: &StoredState) -> Vec<Record> {
        a.names
            .iter()
            .filter(|(n, node)| b.names.get(*n) != Some(*node))
            .filter(|(n, _)| zone_index(&self.zones, n) == Some(zi))
            .flat_map(|(n, node)| self.node_views(zi, n, node))
            .collect()
    }

    /// Diffs `next` against the current state in zone `zi` and, unless it
    /// is a dry run or nothing changes, raises the serial, writes and
    /// publishes it.
    fn commit(
        &mut self,
        mut next: StoredState,
        zi: usize,
        name: &DnsName,
        dry_run: bool,
    ) -> Result<ZoneDiff, ZoneError> {
        let zone = self.zones[zi].name.clone();
        let serial_before = self.serial(&zone).unwrap_or(1);
        let before = self.changed_records(zi, &self.state, &next);
        let after = self.changed_records(zi, &next, &self.state);
        let mut diff = ZoneDiff::between(
            zone.clone(),
            serial_before,
            &before,
            serial_before,
            &after,
            dry_run,
        );
        if diff.is_empty() {
            return Ok(diff);
        }
        let entry = next
            .zones
            .entry(zone.clone())
            .or_insert(ZoneState { serial: 1 });
        entry.serial = next_serial(entry.serial);
        diff.serial_after = entry.serial;
        if dry_run {
            return Ok(diff);
        }
        hearth_common::fsutil::write_json_atomic(&self.path, &next).map_err(|e| {
            ZoneError::Storage(format!("cannot write {}: {e}", self.path.display()))
        })?;
        self.state = next;
        self.view.publish(Snapshot::build(&self.zones, &self.state));
        tracing::info!(%zone, serial = diff.serial_after, %name, added = diff.added.len(), removed = diff.removed.len(), "zone changed");
        Ok(diff)
    }

    fn address_view(&self, zi: usize, name: &DnsName, a: &Address) -> Record {
        Record {
            name: name.clone(),
            rtype: RecordType::of_address(a),
            value: a.to_string(),
            ttl: self.zones[zi].ttl,
        }
    }

    fn alias_view(&self, zi: usize, name: &DnsName, target: &DnsName) -> Record {
        Record {
            name: name.clone(),
            rtype: RecordType::CNAME,
            value: target.to_string(),
            ttl: self.zones[zi].ttl,
        }
    }

    fn node_views(&self, zi: usize, name: &DnsName, node: &Node) -> Vec<Record> {
        match node {
            Node::Addresses(set) => set.iter().map(|a| self.address_view(zi, name, a)).collect(),
            Node::Alias(t) => vec![self.alias_view(zi, name, t)],
        }
    }
}

/// `A` or `AAAA`.
pub fn rtype_of(a: &Address) -> &'static str {
    if a.is_ipv4() {
        "A"
    } else {
        "AAAA"
    }
}

/// The next SOA serial: one more, skipping 0 on wrap-around (RFC 1982
/// arithmetic keeps it "greater").
fn next_serial(s: u32) -> u32 {
    match s.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// The index of the most specific zone (longest apex) holding `name`.
pub(crate) fn zone_index(zones: &[ZoneConfig], name: &DnsName) -> Option<usize> {
    zones
        .iter()
        .enumerate()
        .filter(|(_, z)| name.is_within(&z.name))
        .max_by_key(|(_, z)| z.name.as_str().len())
        .map(|(i, _)| i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }
    fn a(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn zones() -> Vec<ZoneConfig> {
        vec![
            ZoneConfig::new(n("home.arpa"), vec![a("192.168.1.1")]),
            ZoneConfig::new(n("lab.example"), vec![a("10.9.0.1")]),
        ]
    }
    fn file(dir: &Path) -> Option<Vec<u8>> {
        std::fs::read(dir.join(STATE_FILE)).ok()
    }

    #[test]
    fn records_and_serials_persist_across_reopen() {
        let d = tempfile::tempdir().unwrap();
        let home = n("home.arpa");
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        assert_eq!(e.serial(&home), Some(1));
        let c = e
            .add_record(&n("nas.home.arpa"), a("192.168.1.10"))
            .unwrap();
        assert_eq!(
            (c.serial_before, c.serial_after, c.zone.as_str()),
            (1, 2, "home.arpa")
        );
        e.add_record(&n("nas.home.arpa"), a("fd00::10")).unwrap();
        let c = e
            .add_alias(&n("files.home.arpa"), &n("nas.home.arpa"))
            .unwrap();
        assert_eq!(c.serial_after, 4);
        assert_eq!(c.added[0].rtype, RecordType::CNAME);
        assert!(c.removed.is_empty());
        assert_eq!(
            e.serial(&n("lab.example")),
            Some(1),
            "other zones keep their serial"
        );
        let before = e.list();
        drop(e);
        let e = Engine::open(&zones(), d.path()).unwrap();
        assert_eq!(e.list(), before);
        assert_eq!(e.serial(&home), Some(4));
        let desc = e.describe(&n("nas.home.arpa")).unwrap();
        let kinds: Vec<_> = desc.records.iter().map(|r| r.rtype.as_str()).collect();
        assert_eq!(kinds, ["A", "AAAA"]);
    }

    #[test]
    fn remove_returns_what_it_removed_and_readding_restores() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        let nas = n("nas.home.arpa");
        e.add_record(&nas, a("192.168.1.10")).unwrap();
        e.add_record(&nas, a("192.168.1.11")).unwrap();
        let before = e.describe(&nas).unwrap();
        let c = e.remove(&nas).unwrap();
        assert_eq!(c.removed, before.records);
        assert!(e.describe(&nas).unwrap().records.is_empty());
        for r in &c.removed {
            e.add_record(&r.name, a(&r.value)).unwrap();
        }
        assert_eq!(e.describe(&nas).unwrap(), before);
        let c = e.remove_record(&nas, a("192.168.1.10")).unwrap();
        assert_eq!(c.removed, before.records[..1]);
        assert!(c.added.is_empty());
        assert_eq!(e.describe(&nas).unwrap().records.len(), 1);
        e.remove_record(&nas, a("192.168.1.11")).unwrap();
        assert!(matches!(e.remove(&nas), Err(ZoneError::NotFound(_))));
    }

    #[test]
    fn refusals_are_named_and_change_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        let nas = n("nas.home.arpa");
        let www = n("www.home.arpa");
        e.add_record(&nas, a("192.168.1.10")).unwrap();
        e.add_alias(&www, &nas).unwrap();
        let listing = e.list();
        let bytes = file(d.path());

        let cases: Vec<(Result<ZoneDiff, ZoneError>, &str, &str)> = vec![
            (
                e.add_record(&n("nas.example.com"), a("1.2.3.4")),
                "invalid",
                "nas.example.com",
            ),
            (
                e.add_alias(&n("x.example.com"), &nas),
                "invalid",
                "x.example.com",
            ),
            (e.remove(&n("x.example.com")), "invalid", "x.example.com"),
            (
                e.add_record(&nas, a("192.168.1.10")),
                "conflict",
                "already has the record A 192.168.1.10",
            ),
            (
                e.add_alias(&nas, &n("other.home.arpa")),
                "conflict",
                "CNAME cannot stand beside",
            ),
            (
                e.add_record(&www, a("192.168.1.12")),
                "conflict",
                "CNAME cannot stand beside",
            ),
            (e.add_alias(&www, &nas), "conflict", "already an alias"),
            (
                e.add_alias(&www, &n("other.home.arpa")),
                "conflict",
                "already an alias",
            ),
            (
                e.add_alias(&n("self.home.arpa"), &n("self.home.arpa")),
                "invalid",
                "itself",
            ),
            (
                e.add_alias(&nas, &www),
                "conflict",
                "CNAME cannot stand beside",
            ),
            (e.add_alias(&n("home.arpa"), &nas), "conflict", "apex"),
            (
                e.add_record(&n("ns.home.arpa"), a("192.168.1.2")),
                "conflict",
                "name server",
            ),
            (e.remove(&n("ns.home.arpa")), "conflict", "name server"),
            (e.remove(&n("gone.home.arpa")), "notfound", "gone.home.arpa"),
            (
                e.remove_record(&nas, a("192.168.1.99")),
                "notfound",
                "192.168.1.99",
            ),
            (
                e.remove_record(&www, a("192.168.1.10")),
                "notfound",
                "www.home.arpa",
            ),
        ];
        for (i, (r, kind, text)) in cases.into_iter().enumerate() {
            let err = r.expect_err(&format!("case {i} must fail"));
            let got = match &err {
                ZoneError::InvalidArgument(_) => "invalid",
                ZoneError::Conflict(_) => "conflict",
                ZoneError::NotFound(_) => "notfound",
                _ => "other",
            };
            assert_eq!(got, kind, "case {i}: {err}");
            assert!(err.to_string().contains(text), "case {i}: {err}");
        }
        assert_eq!(e.list(), listing);
        assert_eq!(file(d.path()), bytes, "state file untouched");
    }

    #[test]
    fn dry_run_checks_like_the_real_call_and_changes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        let nas = n("nas.home.arpa");
        e.add_record(&nas, a("192.168.1.10")).unwrap();
        let listing = e.list();
        let bytes = file(d.path());
        let snap = e.view().current();
        let op = Op::AddRecord {
            name: nas.clone(),
            address: a("192.168.1.11"),
        };
        let preview = e.apply(&op, true).unwrap();
        assert!(preview.dry_run);
        assert_eq!((preview.serial_before, preview.serial_after), (2, 3));
        assert_eq!(preview.added[0].value, "192.168.1.11");
        assert!(preview.removed.is_empty());
        let dup = Op::AddRecord {
            name: nas.clone(),
            address: a("192.168.1.10"),
        };
        assert!(matches!(e.apply(&dup, true), Err(ZoneError::Conflict(_))));
        assert_eq!(e.list(), listing);
        assert_eq!(file(d.path()), bytes);
        assert!(Arc::ptr_eq(&snap, &e.view().current()), "nothing published");
        let real = e.apply(&op, false).unwrap();
        assert_eq!(
            (real.serial_after, real.added.clone(), real.dry_run),
            (3, preview.added, false)
        );
    }

    #[test]
    fn restore_undoes_a_removal_in_one_change() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        let nas = n("nas.home.arpa");
        let www = n("www.home.arpa");
        e.add_record(&nas, a("192.168.1.10")).unwrap();
        e.add_record(&nas, a("fd00::10")).unwrap();
        e.add_alias(&www, &nas).unwrap();
        let before = e.list();
        let gone = e.remove(&nas).unwrap();
        let c = e
            .apply(
                &Op::Restore {
                    records: gone.removed.clone(),
                },
                false,
            )
            .unwrap();
        assert_eq!(c.serial_before, gone.serial_after);
        assert_eq!(
            c.serial_after,
            gone.serial_after + 1,
            "one serial step for the batch"
        );
        assert_eq!(c.added, gone.removed, "the diff is the removal reversed");
        let gone_alias = e.remove(&www).unwrap();
        e.apply(
            &Op::Restore {
                records: gone_alias.removed,
            },
            false,
        )
        .unwrap();
        let mut after = e.list();
        after[0].serial = before[0].serial;
        assert_eq!(after, before);
        // Restoring twice is a duplicate; mixed names and bad types are named.
        let again = e.apply(
            &Op::Restore {
                records: gone.removed.clone(),
            },
            false,
        );
        assert!(matches!(again, Err(ZoneError::Conflict(_))), "{again:?}");
        let mut mixed = gone.removed.clone();
        mixed[1].name = www.clone();
        let err = e.apply(&Op::Restore { records: mixed }, false).unwrap_err();
        assert!(err.to_string().contains("records[1].name"), "{err}");
        let mut bad = gone.removed;
        bad[0].rtype = RecordType::AAAA;
        let err = e.apply(&Op::Restore { records: bad }, false).unwrap_err();
        assert!(
            err.to_string().contains("records[0].value") && err.to_string().contains("AAAA"),
            "{err}"
        );
    }

    #[test]
    fn alias_loops_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        e.add_alias(&n("a.home.arpa"), &n("b.home.arpa")).unwrap();
        e.add_alias(&n("b.home.arpa"), &n("c.lab.example")).unwrap();
        let err = e
            .add_alias(&n("c.lab.example"), &n("a.home.arpa"))
            .unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        // A target outside the zones is fine.
        e.add_alias(&n("ext.home.arpa"), &n("example.org")).unwrap();
    }

    #[test]
    fn longest_zone_wins_and_apex_takes_addresses() {
        let d = tempfile::tempdir().unwrap();
        let mut z = zones();
        z.push(ZoneConfig::new(n("iot.home.arpa"), vec![a("192.168.1.1")]));
        let mut e = Engine::open(&z, d.path()).unwrap();
        let c = e
            .add_record(&n("cam.iot.home.arpa"), a("192.168.5.5"))
            .unwrap();
        assert_eq!(c.zone.as_str(), "iot.home.arpa");
        let c = e.add_record(&n("home.arpa"), a("192.168.1.1")).unwrap();
        assert_eq!(c.zone.as_str(), "home.arpa");
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_reset() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), b"{not json").unwrap();
        let err = Engine::open(&zones(), d.path()).unwrap_err();
        assert!(matches!(err, ZoneError::Storage(_)), "{err}");
        assert_eq!(file(d.path()).unwrap(), b"{not json");
    }

    #[test]
    fn serial_wraps_past_zero() {
        assert_eq!(next_serial(u32::MAX), 1);
        assert_eq!(next_serial(7), 8);
    }

    #[test]
    fn the_diff_is_computed_from_the_records_before_and_after() {
        let d = tempfile::tempdir().unwrap();
        let mut e = Engine::open(&zones(), d.path()).unwrap();
        let nas = n("nas.home.arpa");
        e.add_record(&nas, a("192.168.1.10")).unwrap();
        e.add_record(&nas, a("fd00::10")).unwrap();
        e.add_record(&n("other.lab.example"), a("10.9.0.5"))
            .unwrap();
        // Remove lists every record the name held, nothing of other names
        // or zones.
        let c = e.apply(&Op::Remove { name: nas.clone() }, true).unwrap();
        let kinds: Vec<_> = c
            .removed
            .iter()
            .map(|r| (r.rtype, r.value.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (RecordType::A, "192.168.1.10"),
                (RecordType::AAAA, "fd00::10")
            ]
        );
        assert_eq!((c.serial_before, c.serial_after), (3, 4));
        assert_eq!(
            c.to_string(),
            "Removes A nas.home.arpa → 192.168.1.10, AAAA nas.home.arpa → fd00::10 \
             (zone home.arpa, serial 3 → 4)."
        );
        // An empty restore is refused rather than answered with an empty diff.
        let err = e
            .apply(&Op::Restore { records: vec![] }, false)
            .unwrap_err();
        assert!(matches!(err, ZoneError::InvalidArgument(_)), "{err}");
    }
}

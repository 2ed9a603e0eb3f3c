//! Authoritative answers from one immutable snapshot of the zone data.
//!
//! The engine builds a new [`Snapshot`] after every change and publishes it;
//! the server answers each query from the snapshot current at that moment.
//! Answering never recurses and never asks another server.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use hearth_common::types::DnsName;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::config::ZoneConfig;
use crate::engine::{zone_index, Node, StoredState, MAX_CHAIN};
use crate::fast::FastTable;

/// SOA timers (seconds): refresh, retry, expire.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 86400;

#[derive(Debug)]
struct ZoneRecords {
    soa: Record,
    ns: Vec<Record>,
}

#[derive(Debug, Default)]
struct NodeRecords {
    /// A and AAAA records.
    addresses: Vec<Record>,
    /// The CNAME record and its target.
    alias: Option<(Record, LowerName)>,
}

/// The zone data as served: every record pre-built, indexed by lower-case
/// owner name.
#[derive(Debug, Default)]
pub struct Snapshot {
    zones: HashMap<LowerName, ZoneRecords>,
    nodes: HashMap<LowerName, NodeRecords>,
    /// Every owner name and each of its ancestors up to its zone's apex
    /// (so that an empty non-terminal answers NODATA, not NXDOMAIN).
    existing: HashSet<LowerName>,
    /// The common UDP answers, encoded (see [`crate::fast`]).
    fast: FastTable,
}

/// The outcome of a query against the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The name lies outside every served zone: REFUSED, nothing else.
    Refused,
    /// An authoritative answer.
    Authoritative {
        /// True for NXDOMAIN (the last name of the chain does not exist).
        nxdomain: bool,
        /// Answer section (CNAME chain, then the records asked for).
        answers: Vec<Record>,
        /// Authority section: the zone's SOA for a negative answer.
        authorities: Vec<Record>,
        /// Additional section: name-server addresses for an NS answer.
        additionals: Vec<Record>,
    },
}

fn fqdn(name: &DnsName) -> Name {
    // A DnsName is valid ASCII LDH (plus leading '_'), so this cannot fail;
    // fall back to the root rather than panic.
    Name::from_ascii(name.fqdn()).unwrap_or_else(|_| Name::root())
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

impl Snapshot {
    /// Builds the served records of `zones` from `state`.
    pub fn build(zones: &[ZoneConfig], state: &StoredState) -> Snapshot {
        let mut snap = Snapshot::default();
        for z in zones {
            let apex = fqdn(&z.name);
            let ns_name = fqdn(&z.ns_name());
            let serial = state.zones.get(&z.name).map(|s| s.serial).unwrap_or(1);
            let soa = SOA::new(
                ns_name.clone(),
                fqdn(&z.hostmaster()),
                serial,
                SOA_REFRESH,
                SOA_RETRY,
                SOA_EXPIRE,
                z.ttl,
            );
            snap.zones.insert(
                LowerName::from(apex.clone()),
                ZoneRecords {
                    soa: Record::from_rdata(apex.clone(), z.ttl, RData::SOA(soa)),
                    ns: vec![Record::from_rdata(
                        apex.clone(),
                        z.ttl,
                        RData::NS(NS(ns_name)),
                    )],
                },
            );
        }
        // The fixed name-server addresses, served where they lie in a zone.
        for z in zones {
            let ns = z.ns_name();
            let Some(zi) = zone_index(zones, &ns) else {
                continue;
            };
            let owner = fqdn(&ns);
            let node = snap
                .nodes
                .entry(LowerName::from(owner.clone()))
                .or_default();
            for a in &z.ns_addresses {
                let r = address_record(&owner, zones[zi].ttl, a.ip());
                if !node.addresses.contains(&r) {
                    node.addresses.push(r);
                }
            }
            snap.mark_existing(zones, zi, &ns);
        }
        for (name, node) in &state.names {
            let Some(zi) = zone_index(zones, name) else {
                continue;
            };
            let ttl = zones[zi].ttl;
            let owner = fqdn(name);
            let entry = snap
                .nodes
                .entry(LowerName::from(owner.clone()))
                .or_default();
            match node {
                Node::Addresses(set) => entry
                    .addresses
                    .extend(set.iter().map(|a| address_record(&owner, ttl, a.ip()))),
                Node::Alias(target) => {
                    let t = fqdn(target);
                    entry.alias = Some((
                        Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(t.clone()))),
                        LowerName::from(t),
                    ));
                }
            }
            snap.mark_existing(zones, zi, name);
        }
        snap.fast = FastTable::build(&snap);
        snap
    }

    /// The fast path's answers for this snapshot.
    pub fn fast(&self) -> &FastTable {
        &self.fast
    }

    /// Every name that exists: owners, their ancestors up to the apex, and
    /// the apexes.
    pub(crate) fn existing_names(&self) -> impl Iterator<Item = &LowerName> {
        let mut seen: HashSet<&LowerName> = HashSet::new();
        self.zones
            .keys()
            .chain(self.nodes.keys())
            .chain(self.existing.iter())
            .filter(move |n| seen.insert(*n))
    }

    /// The apex of every served zone.
    pub(crate) fn apexes(&self) -> impl Iterator<Item = &LowerName> {
        self.zones.keys()
    }

    fn mark_existing(&mut self, zones: &[ZoneConfig], zi: usize, name: &DnsName) {
        let apex = LowerName::from(fqdn(&zones[zi].name));
        let mut n = LowerName::from(fqdn(name));
        while n.num_labels() > apex.num_labels() {
            let parent = n.base_name();
            self.existing.insert(n);
            n = parent;
        }
    }

    /// The served zone holding `name` (the most specific one).
    fn zone_of(&self, name: &LowerName) -> Option<&ZoneRecords> {
        let mut n = name.clone();
        loop {
            if let Some(z) = self.zones.get(&n) {
                return Some(z);
            }
            if n.is_root() {
                return None;
            }
            n = n.base_name();
        }
    }

    /// Answers `qtype` for `qname`, following aliases through the served zones.
    pub fn answer(&self, qname: &LowerName, qtype: RecordType) -> Outcome {
        let Some(mut zone) = self.zone_of(qname) else {
            return Outcome::Refused;
        };
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut current = qname.clone();
        for _ in 0..=MAX_CHAIN {
            let node = self.nodes.get(&current);
            if let Some((cname, target)) = node.and_then(|n| n.alias.as_ref()) {
                answers.push(cname.clone());
                if qtype == RecordType::CNAME || qtype == RecordType::ANY {
                    break;
                }
                match self.zone_of(target) {
                    Some(z) => {
                        zone = z;
                        current = target.clone();
                        continue;
                    }
                    // Outside our zones: the client's resolver follows it.
                    None => break,
                }
            }
            let apex = self.zones.get(&current);
            let before = answers.len();
            if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
                if let Some(n) = node {
                    answers.extend(
                        n.addresses
                            .iter()
                            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
                            .cloned(),
                    );
                }
            }
            if let Some(z) = apex {
                if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                    answers.push(z.soa.clone());
                }
                if matches!(qtype, RecordType::NS | RecordType::ANY) {
                    answers.extend(z.ns.iter().cloned());
                    if qtype == RecordType::NS {
                        additionals.extend(self.glue(&z.ns));
                    }
                }
            }
            if answers.len() > before {
                return Outcome::Authoritative {
                    nxdomain: false,
                    answers,
                    authorities: vec![],
                    additionals,
                };
            }
            let exists = node.is_some() || apex.is_some() || self.existing.contains(&current);
            return Outcome::Authoritative {
                nxdomain: !exists,
                answers,
                authorities: vec![zone.soa.clone()],
                additionals,
            };
        }
        // The chain ended at a CNAME (asked for, or pointing outside).
        Outcome::Authoritative {
            nxdomain: false,
            answers,
            authorities: vec![],
            additionals,
        }
    }

    fn glue(&self, ns: &[Record]) -> Vec<Record> {
        ns.iter()
            .filter_map(|r| match &r.data {
                RData::NS(NS(host)) => self.nodes.get(&LowerName::from(host.clone())),
                _ => None,
            })
            .flat_map(|n| n.addresses.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::engine::ZoneState;
    use hearth_common::types::Address;
    use std::collections::BTreeSet;

    fn n(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }
    fn q(s: &str) -> LowerName {
        LowerName::from(Name::from_ascii(s).unwrap())
    }
    fn snapshot() -> Snapshot {
        let zones = vec![ZoneConfig::new(
            n("home.arpa"),
            vec![Address::parse("192.168.1.1").unwrap()],
        )];
        let mut state = StoredState {
            version: 1,
            ..Default::default()
        };
        state.zones.insert(n("home.arpa"), ZoneState { serial: 7 });
        state.names.insert(
            n("nas.home.arpa"),
            Node::Addresses(BTreeSet::from([
                Address::parse("192.168.1.10").unwrap(),
                Address::parse("fd00::10").unwrap(),
            ])),
        );
        state
            .names
            .insert(n("a.b.home.arpa"), Node::Alias(n("nas.home.arpa")));
        state
            .names
            .insert(n("gone.home.arpa"), Node::Alias(n("missing.home.arpa")));
        Snapshot::build(&zones, &state)
    }

    fn parts(o: Outcome) -> (bool, Vec<RecordType>, Vec<RecordType>) {
        match o {
            Outcome::Refused => panic!("refused"),
            Outcome::Authoritative {
                nxdomain,
                answers,
                authorities,
                ..
            } => (
                nxdomain,
                answers.iter().map(|r| r.record_type()).collect(),
                authorities.iter().map(|r| r.record_type()).collect(),
            ),
        }
    }

    #[test]
    fn answers_follow_the_rules() {
        let s = snapshot();
        use RecordType::*;
        assert_eq!(
            parts(s.answer(&q("NAS.home.arpa."), A)),
            (false, vec![A], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("nas.home.arpa."), AAAA)),
            (false, vec![AAAA], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("nas.home.arpa."), MX)),
            (false, vec![], vec![SOA])
        );
        assert_eq!(
            parts(s.answer(&q("a.b.home.arpa."), A)),
            (false, vec![CNAME, A], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("a.b.home.arpa."), CNAME)),
            (false, vec![CNAME], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("b.home.arpa."), A)),
            (false, vec![], vec![SOA]),
            "empty non-terminal is NODATA"
        );
        assert_eq!(
            parts(s.answer(&q("x.home.arpa."), A)),
            (true, vec![], vec![SOA])
        );
        assert_eq!(
            parts(s.answer(&q("gone.home.arpa."), A)),
            (true, vec![CNAME], vec![SOA])
        );
        assert_eq!(
            parts(s.answer(&q("home.arpa."), SOA)),
            (false, vec![SOA], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("home.arpa."), NS)),
            (false, vec![NS], vec![])
        );
        assert_eq!(
            parts(s.answer(&q("ns.home.arpa."), A)),
            (false, vec![A], vec![])
        );
        assert_eq!(s.answer(&q("example.com."), A), Outcome::Refused);
        assert_eq!(s.answer(&q("arpa."), SOA), Outcome::Refused);
        assert_eq!(s.answer(&q("."), NS), Outcome::Refused);
    }
}

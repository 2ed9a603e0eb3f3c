//! `org.hearth.Dns1` results (hearth-dnsd): the records of the home zones
//! and the diffs of their changes. See `docs/dbus/dns.md`.
//!
//! Every change method (`AddRecord`, `AddAlias`, `Remove`, `RemoveRecord`,
//! `Restore`) answers with a [`ZoneDiff`], computed by the daemon from the
//! zone data before and after the change (on a dry run: after the change it
//! would make); `Describe` answers a [`NameRecords`], `List` a list of
//! [`Zone`].

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{decode, encode};
use crate::proxies::dns::DnsProxy;
use crate::types::{Address, DnsName};
use crate::HearthError;

/// The type of a record hearth-dnsd serves for a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordType {
    /// An IPv4 address.
    #[serde(alias = "a")]
    A,
    /// An IPv6 address.
    #[serde(alias = "aaaa")]
    AAAA,
    /// An alias for another name.
    #[serde(alias = "cname")]
    CNAME,
}

impl RecordType {
    /// `A` for an IPv4 address, `AAAA` for an IPv6 one.
    pub fn of_address(a: &Address) -> RecordType {
        if a.is_ipv4() {
            RecordType::A
        } else {
            RecordType::AAAA
        }
    }

    /// The type's name as DNS writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
            RecordType::CNAME => "CNAME",
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record: `{"name": "nas.home.arpa", "type": "A", "value":
/// "192.168.1.10", "ttl": 300}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Owner name.
    pub name: DnsName,
    /// `A`, `AAAA` or `CNAME`.
    #[serde(rename = "type")]
    pub rtype: RecordType,
    /// The address (`A`, `AAAA`) or the alias target (`CNAME`), as text.
    pub value: String,
    /// TTL in seconds (optional and ignored when restoring).
    #[serde(default)]
    pub ttl: u32,
}

impl Record {
    /// The key a diff compares records by: name, type and value (not the TTL).
    fn key(&self) -> (&DnsName, RecordType, &str) {
        (&self.name, self.rtype, self.value.as_str())
    }
}

impl fmt::Display for Record {
    /// `A test.local → 192.168.1.100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}", self.rtype, self.name, self.value)
    }
}

/// What a change did (or, on a dry run, would do) to one zone: the records
/// added and removed, and the zone's SOA serial before and after. Computed
/// by hearth-dnsd from its records before and after the change; an empty
/// diff means nothing changes (and the serial stays).
///
/// `Restore` takes this document back: its `removed` records are added again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneDiff {
    /// The zone changed.
    pub zone: DnsName,
    /// Its SOA serial before the change.
    pub serial_before: u32,
    /// Its SOA serial after the change (equal to `serial_before` when
    /// nothing changes).
    pub serial_after: u32,
    /// Records the change adds, sorted.
    pub added: Vec<Record>,
    /// Records the change removes, sorted (re-adding them undoes it).
    pub removed: Vec<Record>,
    /// True for a preview: nothing was changed.
    pub dry_run: bool,
}

impl ZoneDiff {
    /// The diff between the records of `zone` before and after a change:
    /// added = after − before, removed = before − after, compared by name,
    /// type and value. Both lists come out sorted.
    pub fn between(
        zone: DnsName,
        serial_before: u32,
        before: &[Record],
        serial_after: u32,
        after: &[Record],
        dry_run: bool,
    ) -> ZoneDiff {
        let kb: BTreeSet<_> = before.iter().map(Record::key).collect();
        let ka: BTreeSet<_> = after.iter().map(Record::key).collect();
        let pick = |rs: &[Record], other: &BTreeSet<(&DnsName, RecordType, &str)>| {
            let mut v: Vec<Record> = rs
                .iter()
                .filter(|r| !other.contains(&r.key()))
                .cloned()
                .collect();
            v.sort();
            v.dedup();
            v
        };
        ZoneDiff {
            zone,
            serial_before,
            serial_after,
            added: pick(after, &kb),
            removed: pick(before, &ka),
            dry_run,
        }
    }

    /// True when the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

fn list(records: &[Record]) -> String {
    records
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for ZoneDiff {
    /// One plain line: `Adds A test.local → 192.168.1.100 (zone local,
    /// serial 2 → 3).`, `Removes …`, `Adds …; removes … (…).`, or
    /// `Nothing changes.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("Nothing changes.");
        }
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("adds {}", list(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removes {}", list(&self.removed)));
        }
        let mut line = parts.join("; ");
        if let Some(first) = line.get(..1) {
            line = format!("{}{}", first.to_uppercase(), &line[1..]);
        }
        write!(
            f,
            "{line} (zone {}, serial {} → {}).",
            self.zone, self.serial_before, self.serial_after
        )
    }
}

/// The records of one name (`Describe`), to show what a change would
/// replace or remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRecords {
    /// The name.
    pub name: DnsName,
    /// The zone it lies in.
    pub zone: DnsName,
    /// True for a name whose records are fixed by the configuration (the
    /// zone's name server).
    pub fixed: bool,
    /// Its records that can be changed (empty when the name is unused).
    pub records: Vec<Record>,
}

/// One served zone (`List`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The apex.
    pub zone: DnsName,
    /// The SOA serial.
    pub serial: u32,
    /// The name-server host.
    pub ns: DnsName,
    /// The name server's addresses (fixed by the configuration).
    pub ns_addresses: Vec<Address>,
    /// The TTL of its records, seconds.
    pub ttl: u32,
    /// The records that can be changed, sorted by name.
    pub records: Vec<Record>,
}

/// `AddRecord`: adds an A or AAAA record (`dry_run`: only says what it would do).
pub async fn add_record(
    p: &DnsProxy<'_>,
    name: &str,
    address: &str,
    dry_run: bool,
) -> Result<ZoneDiff, HearthError> {
    decode(
        "Dns1.AddRecord",
        &p.add_record(name, address, dry_run).await?,
    )
}

/// `AddAlias`: makes `name` a CNAME for `target`.
pub async fn add_alias(
    p: &DnsProxy<'_>,
    name: &str,
    target: &str,
    dry_run: bool,
) -> Result<ZoneDiff, HearthError> {
    decode("Dns1.AddAlias", &p.add_alias(name, target, dry_run).await?)
}

/// `Remove`: removes every record of `name`.
pub async fn remove(p: &DnsProxy<'_>, name: &str, dry_run: bool) -> Result<ZoneDiff, HearthError> {
    decode("Dns1.Remove", &p.remove(name, dry_run).await?)
}

/// `RemoveRecord`: removes one A/AAAA record of `name`.
pub async fn remove_record(
    p: &DnsProxy<'_>,
    name: &str,
    address: &str,
    dry_run: bool,
) -> Result<ZoneDiff, HearthError> {
    decode(
        "Dns1.RemoveRecord",
        &p.remove_record(name, address, dry_run).await?,
    )
}

/// `Restore`: adds back records a removal removed (all of one name).
pub async fn restore(
    p: &DnsProxy<'_>,
    records: &[Record],
    dry_run: bool,
) -> Result<ZoneDiff, HearthError> {
    decode(
        "Dns1.Restore",
        &p.restore(&encode(&records)?, dry_run).await?,
    )
}

/// `Describe`: the records of one name.
pub async fn name_records(p: &DnsProxy<'_>, name: &str) -> Result<NameRecords, HearthError> {
    decode("Dns1.Describe", &p.describe(name).await?)
}

/// `List`: every zone with its serial and records.
pub async fn zones(p: &DnsProxy<'_>) -> Result<Vec<Zone>, HearthError> {
    decode("Dns1.List", &p.list().await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(name: &str, t: RecordType, value: &str) -> Record {
        Record {
            name: DnsName::parse(name).unwrap(),
            rtype: t,
            value: value.into(),
            ttl: 300,
        }
    }

    fn zone(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn diff_lists_what_appears_and_what_goes() {
        let a = rec("nas.home.arpa", RecordType::A, "192.168.1.10");
        let b = rec("nas.home.arpa", RecordType::AAAA, "fd00::10");
        let c = rec("nas.home.arpa", RecordType::A, "192.168.1.20");
        let d = ZoneDiff::between(
            zone("home.arpa"),
            4,
            &[a.clone(), b.clone()],
            5,
            &[b.clone(), c.clone()],
            false,
        );
        assert_eq!((d.added, d.removed), (vec![c], vec![a]));
        // A TTL alone is no change.
        let mut b300 = b.clone();
        b300.ttl = 60;
        let d = ZoneDiff::between(zone("home.arpa"), 4, &[b], 4, &[b300], true);
        assert!(d.is_empty());
        assert_eq!(d.to_string(), "Nothing changes.");
    }

    #[test]
    fn diff_renders_as_one_line() {
        let d = ZoneDiff::between(
            zone("local"),
            2,
            &[],
            3,
            &[rec("test.local", RecordType::A, "192.168.1.100")],
            true,
        );
        assert_eq!(
            d.to_string(),
            "Adds A test.local → 192.168.1.100 (zone local, serial 2 → 3)."
        );
        let d = ZoneDiff::between(
            zone("home.arpa"),
            7,
            &[
                rec("nas.home.arpa", RecordType::A, "192.168.1.10"),
                rec("nas.home.arpa", RecordType::AAAA, "fd00::10"),
            ],
            8,
            &[rec("nas.home.arpa", RecordType::A, "192.168.1.20")],
            false,
        );
        assert_eq!(
            d.to_string(),
            "Adds A nas.home.arpa → 192.168.1.20; removes A nas.home.arpa → 192.168.1.10, \
             AAAA nas.home.arpa → fd00::10 (zone home.arpa, serial 7 → 8)."
        );
        let d = ZoneDiff::between(
            zone("home.arpa"),
            8,
            &[rec("files.home.arpa", RecordType::CNAME, "nas.home.arpa")],
            9,
            &[],
            false,
        );
        assert_eq!(
            d.to_string(),
            "Removes CNAME files.home.arpa → nas.home.arpa (zone home.arpa, serial 8 → 9)."
        );
    }

    #[test]
    fn documents_round_trip_and_reject_strangers() {
        let d = ZoneDiff::between(
            zone("local"),
            2,
            &[],
            3,
            &[rec("test.local", RecordType::A, "192.168.1.100")],
            false,
        );
        let text = encode(&d).unwrap();
        assert!(text.contains(r#""type":"A""#), "{text}");
        assert_eq!(decode::<ZoneDiff>("Dns1.AddRecord", &text).unwrap(), d);
        let old = r#"{"zone":"local","serial":3,"name":"test.local","added":[],"removed":[]}"#;
        assert!(decode::<ZoneDiff>("Dns1.AddRecord", old).is_err());
        let r: Record = decode(
            "x",
            r#"{"name":"B.home.arpa.","type":"cname","value":"a.home.arpa"}"#,
        )
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.rtype, r.ttl),
            ("b.home.arpa", RecordType::CNAME, 0)
        );
    }
}

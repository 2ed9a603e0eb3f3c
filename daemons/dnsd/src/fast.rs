//! The UDP fast path: answers for the common queries, encoded when a
//! snapshot is built, so that answering copies the ID, the flags the client
//! chose and its question around them.
//!
//! A table entry is made by running the general path
//! ([`crate::server::answer_udp`], hickory's decoder and encoder) on a
//! query made up for it, and keeping the response after its question. The
//! answer sections never point into the question (hickory stores the
//! question, type and class included, as one compression candidate, which
//! no name matches), so they only depend on the question's length, which
//! the key fixes: the owner name's length for a name in the table, the
//! question name's length for a name that does not exist.
//!
//! The fast path answers only what it knows to be the plain case: a query
//! (QR 0, opcode QUERY) with one question of class IN, a name of letters,
//! digits, `-` and `_` without compression, no answer or authority records,
//! at most one additional record that must be an EDNS version 0 OPT without
//! options, and an answer that fits the client's UDP size untruncated.
//! Everything else (`None`) goes to the general path, which decides as
//! before: errors, SOA, NS, ANY, AXFR, other classes, EDNS options,
//! truncation.

use std::collections::{HashMap, HashSet};

use hickory_server::proto::rr::LowerName;

use crate::answer::Snapshot;
use crate::server::{answer_udp, MAX_UDP_PAYLOAD};

/// The longest name on the wire, terminating zero included (RFC 1035).
const MAX_NAME: usize = 255;
/// The size of a DNS header.
const HEADER: usize = 12;
/// Our OPT record: root name, type 41, payload, TTL 0 (extended RCODE 0,
/// version 0, no flags), no options.
const OPT_LEN: usize = 11;
/// The smallest UDP payload a client may be limited to.
const MIN_UDP: usize = 512;
/// The largest answer the fast path writes (the largest UDP payload we
/// ever advertise).
pub const MAX_ANSWER: usize = MAX_UDP_PAYLOAD as usize;

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_CNAME: u16 = 5;
const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// Question types with an entry of their own; every other type that the
/// fast path takes gets the same answer as TXT (no records of it exist).
#[derive(Debug, Clone, Copy)]
enum Kind {
    A = 0,
    Aaaa = 1,
    Cname = 2,
    Other = 3,
}

const KINDS: [(Kind, u16); 4] = [
    (Kind::A, TYPE_A),
    (Kind::Aaaa, TYPE_AAAA),
    (Kind::Cname, TYPE_CNAME),
    (Kind::Other, TYPE_TXT),
];

fn kind(qtype: u16) -> Option<Kind> {
    match qtype {
        TYPE_A => Some(Kind::A),
        TYPE_AAAA => Some(Kind::Aaaa),
        TYPE_CNAME => Some(Kind::Cname),
        // Answered differently (SOA, NS, ANY) or refused (OPT, zone
        // transfers): the general path.
        TYPE_NS | TYPE_SOA | TYPE_OPT | TYPE_IXFR | TYPE_AXFR | TYPE_ANY => None,
        _ => Some(Kind::Other),
    }
}

/// One answer, less what the query decides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Canned {
    /// Header bytes 2 and 3 with RD and CD clear.
    flags: [u8; 2],
    /// Answer, authority and additional counts (our OPT not included).
    counts: [u16; 3],
    /// The sections after the question, OPT not included.
    tail: Box<[u8]>,
}

/// The precomputed answers of one snapshot.
#[derive(Debug, Default)]
pub struct FastTable {
    /// Every name that exists (owner names, their ancestors up to the
    /// apex, apexes), as lower-case wire names: per [`Kind`].
    names: HashMap<Box<[u8]>, [Option<Canned>; 4]>,
    /// Every apex, as a lower-case wire name: the NXDOMAIN answer for a
    /// missing name below it, by the length of the question name.
    zones: HashMap<Box<[u8]>, Box<[Option<Canned>]>>,
    /// The answer for a name outside every zone.
    refused: Option<Canned>,
}

fn wire(name: &LowerName) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for label in name.iter() {
        // Labels are at most 63 bytes.
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out
}

/// A query for `qname` (a wire name) and `qtype`, ID 0, no flags, with an
/// OPT offering our largest payload (so that the answer is never truncated
/// while it fits any client).
fn made_up_query(qname: &[u8], qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(HEADER + qname.len() + 4 + OPT_LEN);
    q.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q.extend_from_slice(&opt(MAX_UDP_PAYLOAD));
    q
}

fn opt(payload: u16) -> [u8; OPT_LEN] {
    let p = payload.to_be_bytes();
    [0, 0, TYPE_OPT as u8, p[0], p[1], 0, 0, 0, 0, 0, 0]
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The canned answer for `qname`/`qtype`, from the general path; `None`
/// when the general answer is not one the fast path can replay (truncated,
/// or not shaped as expected).
fn canned(snapshot: &Snapshot, qname: &[u8], qtype: u16) -> Option<Canned> {
    let query = made_up_query(qname, qtype);
    let resp = answer_udp(snapshot, &query)?;
    let question = HEADER + qname.len() + 4;
    if resp.len() < question + OPT_LEN
        || resp[..2] != [0, 0]
        || resp[2] & 0x02 != 0
        || resp[HEADER..question] != query[HEADER..question]
        || be16(&resp, 4) != 1
        || be16(&resp, 10) == 0
        || resp[resp.len() - OPT_LEN..] != opt(MAX_UDP_PAYLOAD)
    {
        return None;
    }
    Some(Canned {
        flags: [resp[2], resp[3]],
        counts: [be16(&resp, 6), be16(&resp, 8), be16(&resp, 10) - 1],
        tail: resp[question..resp.len() - OPT_LEN].into(),
    })
}

/// Whether a wire name lies in a zone below `apex` (one of `apexes`) rather
/// than in `apex` itself.
fn in_sub_zone(name: &[u8], apex: &[u8], apexes: &HashSet<Vec<u8>>) -> bool {
    let mut at = 0;
    while name.len() - at > apex.len() {
        if apexes.contains(&name[at..]) {
            return true;
        }
        at += 1 + name[at] as usize;
    }
    false
}

/// A name of `len` wire bytes below `apex` (a wire name), in no zone below
/// it, that the table does not hold; or `None`.
fn missing_name(
    names: &HashMap<Box<[u8]>, [Option<Canned>; 4]>,
    apexes: &HashSet<Vec<u8>>,
    apex: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    let prefix = len.checked_sub(apex.len())?;
    if prefix < 2 || len > MAX_NAME {
        return None;
    }
    for fill in [b'x', b'y', b'z', b'q', b'-'] {
        let mut name = Vec::with_capacity(len);
        let mut left = prefix;
        while left > 0 {
            // A label of 1..=63 bytes takes 2..=64; never leave 1 byte.
            let take = match left {
                0..=64 => left,
                65 => 32,
                _ => 64,
            };
            name.push((take - 1) as u8);
            // A label may not start with '-': start each with 'x'.
            name.push(b'x');
            name.extend(std::iter::repeat_n(fill, take - 2));
            left -= take;
        }
        name.extend_from_slice(apex);
        if !names.contains_key(name.as_slice()) && !in_sub_zone(&name, apex, apexes) {
            return Some(name);
        }
    }
    None
}

impl FastTable {
    /// The answers of `snapshot`, each made by its general path.
    pub fn build(snapshot: &Snapshot) -> FastTable {
        let mut table = FastTable::default();
        for name in snapshot.existing_names() {
            let w = wire(name);
            let entry = KINDS.map(|(_, t)| canned(snapshot, &w, t));
            table.names.insert(w.into(), entry);
        }
        let apexes: HashSet<Vec<u8>> = snapshot.apexes().map(wire).collect();
        for w in &apexes {
            let by_len: Box<[Option<Canned>]> = (0..=MAX_NAME)
                .map(|len| {
                    let name = missing_name(&table.names, &apexes, w, len)?;
                    let c = canned(snapshot, &name, TYPE_A)?;
                    // NXDOMAIN, or it is not the case we mean.
                    (c.flags[1] & 0x0f == 3).then_some(c)
                })
                .collect();
            table.zones.insert(w.as_slice().into(), by_len);
        }
        // The root lies outside every zone we can serve.
        table.refused = canned(snapshot, &[0], TYPE_A).filter(|c| c.flags[1] & 0x0f == 5);
        table
    }

    /// Answers `query` into `out` and returns the answer's length, or
    /// `None` when the general path must answer it.
    pub fn answer(&self, query: &[u8], out: &mut [u8; MAX_ANSWER]) -> Option<usize> {
        if query.len() < HEADER + 1 + 4 {
            return None;
        }
        // QR 0 and opcode QUERY; AA and TC of a query are ignored.
        if query[2] & 0xf8 != 0 {
            return None;
        }
        let arcount = be16(query, 10);
        if be16(query, 4) != 1 || be16(query, 6) != 0 || be16(query, 8) != 0 || arcount > 1 {
            return None;
        }
        // The question name: plain labels, letters, digits, '-' and '_'.
        let mut key = [0u8; MAX_NAME];
        let mut pos = HEADER;
        let mut label_starts = [0u8; MAX_NAME / 2 + 1];
        let mut labels = 0;
        loop {
            let len = *query.get(pos)? as usize;
            let at = pos - HEADER;
            if len == 0 {
                if at + 1 > MAX_NAME {
                    return None;
                }
                key[at] = 0;
                pos += 1;
                break;
            }
            if len > 63 || at + 1 + len + 1 > MAX_NAME {
                return None;
            }
            let label = query.get(pos + 1..pos + 1 + len)?;
            key[at] = len as u8;
            for (k, &b) in key[at + 1..at + 1 + len].iter_mut().zip(label) {
                if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return None;
                }
                *k = b.to_ascii_lowercase();
            }
            label_starts[labels] = at as u8;
            labels += 1;
            pos += 1 + len;
        }
        let name_len = pos - HEADER;
        if pos + 4 > query.len() {
            return None;
        }
        let qtype = be16(query, pos);
        let qclass = be16(query, pos + 2);
        pos += 4;
        if qclass != CLASS_IN {
            return None;
        }
        let kind = kind(qtype)?;
        let question = HEADER..pos;
        // At most an OPT: root name, version 0, no options.
        let limit = if arcount == 1 {
            let rr = query.get(pos..pos + OPT_LEN)?;
            if rr[0] != 0 || be16(rr, 1) != TYPE_OPT || rr[6] != 0 || be16(rr, 9) != 0 {
                return None;
            }
            Some((be16(rr, 3) as usize).clamp(MIN_UDP, MAX_ANSWER))
        } else {
            None
        };
        // Trailing bytes are ignored, as hickory ignores them.
        let key = &key[..name_len];
        let canned = match self.names.get(key) {
            Some(entry) => entry[kind as usize].as_ref()?,
            None => {
                let zone = label_starts[..labels]
                    .iter()
                    .find_map(|&start| self.zones.get(&key[start as usize..]));
                match zone {
                    Some(by_len) => by_len.get(name_len)?.as_ref()?,
                    None => self.refused.as_ref()?,
                }
            }
        };
        let opt_len = if limit.is_some() { OPT_LEN } else { 0 };
        let total = pos + canned.tail.len() + opt_len;
        if total > limit.unwrap_or(MIN_UDP) {
            return None;
        }
        out[..2].copy_from_slice(&query[..2]);
        out[2] = canned.flags[0] | (query[2] & 0x01);
        out[3] = canned.flags[1] | (query[3] & 0x10);
        out[4..6].copy_from_slice(&1u16.to_be_bytes());
        out[6..8].copy_from_slice(&canned.counts[0].to_be_bytes());
        out[8..10].copy_from_slice(&canned.counts[1].to_be_bytes());
        let ar = canned.counts[2] + u16::from(limit.is_some());
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        out[question.clone()].copy_from_slice(&query[question]);
        out[pos..pos + canned.tail.len()].copy_from_slice(&canned.tail);
        if let Some(limit) = limit {
            // `limit` is at most MAX_ANSWER, so it fits in u16.
            out[total - OPT_LEN..total].copy_from_slice(&opt(limit as u16));
        }
        Some(total)
    }
}

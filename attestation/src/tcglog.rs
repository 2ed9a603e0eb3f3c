//! The firmware's TCG event log (what Linux exposes as
//! `/sys/kernel/security/tpm0/binary_bios_measurements`), in the TCG PC
//! Client crypto-agile format, and its replay to PCR values.
//!
//! Layout (TCG PC Client Platform Firmware Profile, 10.2):
//! * first, one TCG_PCClientPCREvent in the SHA-1 log format: PCRIndex
//!   (u32), EventType (u32, EV_NO_ACTION), a 20-byte digest, EventSize (u32)
//!   and the event, a TCG_EfiSpecIDEvent: signature `Spec ID Event03\0`,
//!   platform class, spec version, uintn size, and the table of the digest
//!   algorithms the log carries with their sizes;
//! * then TCG_PCR_EVENT2 records: PCRIndex, EventType, a TPML_DIGEST_VALUES
//!   (count, then for each an algorithm id and a digest of the size the
//!   table gives), EventSize and the event.
//!
//! Everything is little-endian. The parser is bounded (size, event count,
//! algorithm count, digest sizes, PCR indexes) and strict: anything left
//! over, or a digest of an algorithm the table does not list, is an error.
//!
//! Replay: each PCR starts at 32 zero bytes (PCR 0 at the locality a
//! StartupLocality event names) and every event except EV_NO_ACTION extends
//! it with its SHA-256 digest: `new = SHA-256(old || digest)`. The event
//! data is not checked against the digest (for most event types the digest
//! is not of the data); the log is believed only as far as it replays to the
//! PCR values a TPM quote signed.

use std::collections::BTreeMap;

use crate::eventlog::extend;

/// The largest log accepted (real firmware logs are tens of KiB).
pub const MAX_LOG_BYTES: usize = 1 << 20;
/// The most events accepted.
pub const MAX_EVENTS: usize = 16_384;
/// The most digest algorithms a Spec ID event may list.
pub const MAX_ALGORITHMS: usize = 8;
/// The largest digest size accepted (SHA-512).
pub const MAX_DIGEST_SIZE: u16 = 64;
/// The highest PCR index accepted.
pub const MAX_PCR: u32 = 23;

/// EV_NO_ACTION: logged, never extended.
pub const EV_NO_ACTION: u32 = 0x0000_0003;
/// EV_SEPARATOR.
pub const EV_SEPARATOR: u32 = 0x0000_0004;
/// TPM_ALG_SHA1.
pub const ALG_SHA1: u16 = 0x0004;
/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;

const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
const STARTUP_LOCALITY_SIGNATURE: &[u8; 16] = b"StartupLocality\0";

/// Why a log was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcgLogError {
    /// Over [`MAX_LOG_BYTES`].
    #[error("the log is {0} bytes, over the limit of {MAX_LOG_BYTES}")]
    TooLarge(usize),
    /// Over [`MAX_EVENTS`].
    #[error("more than {MAX_EVENTS} events")]
    TooManyEvents,
    /// The bytes end inside a record.
    #[error("truncated at byte {offset}: {what}")]
    Truncated {
        /// Where the record started.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// The first record is not a Spec ID event of the crypto-agile format.
    #[error("not a crypto-agile TCG log: {0}")]
    NotCryptoAgile(&'static str),
    /// The Spec ID event's algorithm table is unusable.
    #[error("Spec ID event: {0}")]
    BadSpecId(String),
    /// A record is malformed.
    #[error("event {index} (byte {offset}): {reason}")]
    BadEvent {
        /// Event number (0 = the Spec ID event).
        index: usize,
        /// Where it starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The Spec ID event's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecId {
    /// Platform class (0: client, 1: server).
    pub platform_class: u32,
    /// Spec version minor, major, errata.
    pub spec_version: (u8, u8, u8),
    /// Size of UINTN in the firmware (1: 32-bit, 2: 64-bit).
    pub uintn_size: u8,
    /// Digest algorithms and sizes, in the log's order.
    pub algorithms: Vec<(u16, u16)>,
    /// Vendor information.
    pub vendor_info: Vec<u8>,
    /// The Spec ID record's own 20-byte digest field (zero in every log).
    pub header_digest: [u8; 20],
}

/// One TCG_PCR_EVENT2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareEvent {
    /// PCR index.
    pub pcr: u32,
    /// Event type.
    pub event_type: u32,
    /// Digests, by algorithm, in the record's order.
    pub digests: Vec<(u16, Vec<u8>)>,
    /// Event data.
    pub data: Vec<u8>,
}

impl FirmwareEvent {
    /// The digest of one algorithm, if the record has one.
    pub fn digest(&self, alg: u16) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, d)| d.as_slice())
    }
}

/// A parsed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareLog {
    /// The Spec ID event.
    pub spec: SpecId,
    /// The TCG_PCR_EVENT2 records, in order.
    pub events: Vec<FirmwareEvent>,
}

/// The replay of a log's SHA-256 digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The value each PCR replays to: PCRs 0-7 always, others when events
    /// extend them.
    pub values: BTreeMap<u8, [u8; 32]>,
    /// How many events extend each PCR (same keys).
    pub events: BTreeMap<u8, usize>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    start: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TcgLogError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(TcgLogError::Truncated {
                offset: self.start,
                what,
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, TcgLogError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, TcgLogError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, TcgLogError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

fn parse_spec_id(data: &[u8], header_digest: [u8; 20]) -> Result<SpecId, TcgLogError> {
    let mut r = Reader {
        b: data,
        pos: 0,
        start: 0,
    };
    let sig = r.take(16, "Spec ID signature")?;
    if sig != SPEC_ID_SIGNATURE {
        return Err(TcgLogError::NotCryptoAgile(
            "the first event's signature is not \"Spec ID Event03\"",
        ));
    }
    let platform_class = r.u32("platform class")?;
    let minor = r.u8("spec version")?;
    let major = r.u8("spec version")?;
    let errata = r.u8("spec errata")?;
    let uintn_size = r.u8("uintn size")?;
    let n = r.u32("number of algorithms")? as usize;
    if n == 0 || n > MAX_ALGORITHMS {
        return Err(TcgLogError::BadSpecId(format!(
            "{n} digest algorithms (1 to {MAX_ALGORITHMS} accepted)"
        )));
    }
    let mut algorithms: Vec<(u16, u16)> = Vec::with_capacity(n);
    for _ in 0..n {
        let alg = r.u16("algorithm id")?;
        let size = r.u16("digest size")?;
        if size == 0 || size > MAX_DIGEST_SIZE {
            return Err(TcgLogError::BadSpecId(format!(
                "algorithm {alg:#06x} has digest size {size}"
            )));
        }
        if algorithms.iter().any(|(a, _)| *a == alg) {
            return Err(TcgLogError::BadSpecId(format!(
                "algorithm {alg:#06x} listed twice"
            )));
        }
        let expected = match alg {
            ALG_SHA1 => Some(20),
            ALG_SHA256 => Some(32),
            0x000C => Some(48),
            0x000D => Some(64),
            _ => None,
        };
        if expected.is_some_and(|e| e != size) {
            return Err(TcgLogError::BadSpecId(format!(
                "algorithm {alg:#06x} with digest size {size}"
            )));
        }
        algorithms.push((alg, size));
    }
    let vlen = r.u8("vendor info size")? as usize;
    let vendor_info = r.take(vlen, "vendor info")?.to_vec();
    if r.pos != data.len() {
        return Err(TcgLogError::BadSpecId(format!(
            "{} bytes after the vendor info",
            data.len() - r.pos
        )));
    }
    Ok(SpecId {
        platform_class,
        spec_version: (minor, major, errata),
        uintn_size,
        algorithms,
        vendor_info,
        header_digest,
    })
}

/// Parses a crypto-agile TCG event log.
pub fn parse(bytes: &[u8]) -> Result<FirmwareLog, TcgLogError> {
    if bytes.len() > MAX_LOG_BYTES {
        return Err(TcgLogError::TooLarge(bytes.len()));
    }
    let mut r = Reader {
        b: bytes,
        pos: 0,
        start: 0,
    };
    // The Spec ID event, in the SHA-1 format.
    let pcr = r.u32("PCR index")?;
    let event_type = r.u32("event type")?;
    if pcr != 0 || event_type != EV_NO_ACTION {
        return Err(TcgLogError::NotCryptoAgile(
            "the first event is not an EV_NO_ACTION in PCR 0",
        ));
    }
    let mut header_digest = [0u8; 20];
    header_digest.copy_from_slice(r.take(20, "SHA-1 digest")?);
    let size = r.u32("event size")? as usize;
    let data = r.take(size, "Spec ID event")?;
    let spec = parse_spec_id(data, header_digest)?;

    let mut events = Vec::new();
    while r.pos < bytes.len() {
        if events.len() >= MAX_EVENTS {
            return Err(TcgLogError::TooManyEvents);
        }
        let index = events.len() + 1;
        r.start = r.pos;
        let offset = r.pos;
        let bad = |reason: String| TcgLogError::BadEvent {
            index,
            offset,
            reason,
        };
        let pcr = r.u32("PCR index")?;
        if pcr > MAX_PCR {
            return Err(bad(format!("PCR index {pcr}")));
        }
        let event_type = r.u32("event type")?;
        let count = r.u32("digest count")? as usize;
        if count == 0 || count > spec.algorithms.len() {
            return Err(bad(format!(
                "{count} digests, the log declares {} algorithms",
                spec.algorithms.len()
            )));
        }
        let mut digests: Vec<(u16, Vec<u8>)> = Vec::with_capacity(count);
        for _ in 0..count {
            let alg = r.u16("digest algorithm")?;
            let Some(&(_, size)) = spec.algorithms.iter().find(|(a, _)| *a == alg) else {
                return Err(bad(format!(
                    "digest of algorithm {alg:#06x}, not in the Spec ID event"
                )));
            };
            if digests.iter().any(|(a, _)| *a == alg) {
                return Err(bad(format!("two digests of algorithm {alg:#06x}")));
            }
            let d = r.take(size as usize, "digest")?;
            digests.push((alg, d.to_vec()));
        }
        let size = r.u32("event size")? as usize;
        let data = r.take(size, "event data")?.to_vec();
        events.push(FirmwareEvent {
            pcr,
            event_type,
            digests,
            data,
        });
    }
    Ok(FirmwareLog { spec, events })
}

/// The bytes of a log (the inverse of [`parse`] for every log it accepts):
/// for tests, seeds and tools.
pub fn encode(log: &FirmwareLog) -> Vec<u8> {
    let mut spec = Vec::new();
    spec.extend_from_slice(SPEC_ID_SIGNATURE);
    spec.extend_from_slice(&log.spec.platform_class.to_le_bytes());
    let (minor, major, errata) = log.spec.spec_version;
    spec.extend_from_slice(&[minor, major, errata, log.spec.uintn_size]);
    spec.extend_from_slice(&(log.spec.algorithms.len() as u32).to_le_bytes());
    for (alg, size) in &log.spec.algorithms {
        spec.extend_from_slice(&alg.to_le_bytes());
        spec.extend_from_slice(&size.to_le_bytes());
    }
    spec.push(log.spec.vendor_info.len() as u8);
    spec.extend_from_slice(&log.spec.vendor_info);

    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&log.spec.header_digest);
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    for e in &log.events {
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.event_type.to_le_bytes());
        out.extend_from_slice(&(e.digests.len() as u32).to_le_bytes());
        for (alg, d) in &e.digests {
            out.extend_from_slice(&alg.to_le_bytes());
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    out
}

/// Why a parsed log cannot be replayed in the SHA-256 bank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The Spec ID event does not list SHA-256.
    #[error("the log carries no SHA-256 digests (its Spec ID event does not list SHA-256)")]
    NoSha256Bank,
    /// An extending event has no SHA-256 digest.
    #[error("event {index} (PCR {pcr}) has no SHA-256 digest")]
    MissingSha256 {
        /// Event number (1 = the first after the Spec ID event).
        index: usize,
        /// Its PCR.
        pcr: u32,
    },
}

impl FirmwareLog {
    /// Replays the SHA-256 digests per PCR.
    pub fn replay_sha256(&self) -> Result<Replay, ReplayError> {
        if !self.spec.algorithms.iter().any(|(a, _)| *a == ALG_SHA256) {
            return Err(ReplayError::NoSha256Bank);
        }
        let mut values: BTreeMap<u8, [u8; 32]> = (0u8..8).map(|p| (p, [0u8; 32])).collect();
        let mut events: BTreeMap<u8, usize> = (0u8..8).map(|p| (p, 0)).collect();
        let mut extended_pcr0 = false;
        for (i, e) in self.events.iter().enumerate() {
            // The parser keeps PCR indexes at or below MAX_PCR.
            let pcr = u8::try_from(e.pcr).unwrap_or(u8::MAX);
            if e.event_type == EV_NO_ACTION {
                // StartupLocality (before any extend of PCR 0): PCR 0
                // starts at the locality the TPM was started from.
                if pcr == 0
                    && !extended_pcr0
                    && e.data.len() == 17
                    && e.data.starts_with(STARTUP_LOCALITY_SIGNATURE)
                {
                    let mut v = [0u8; 32];
                    v[31] = e.data[16];
                    values.insert(0, v);
                }
                continue;
            }
            let d: [u8; 32] = e.digest(ALG_SHA256).and_then(|d| d.try_into().ok()).ok_or(
                ReplayError::MissingSha256 {
                    index: i + 1,
                    pcr: e.pcr,
                },
            )?;
            let v = values.entry(pcr).or_insert([0u8; 32]);
            *v = extend(v, &d);
            *events.entry(pcr).or_insert(0) += 1;
            if pcr == 0 {
                extended_pcr0 = true;
            }
        }
        Ok(Replay { values, events })
    }
}

/// Test and seed support: a small synthetic log in the format OVMF writes
/// (SHA-1 and SHA-256 banks), extending PCRs 0-7 with one EV_SEPARATOR each
/// after `extra` events `(pcr, event type, data)` whose digests are the
/// hashes of their data.
pub fn synthetic(extra: &[(u32, u32, &[u8])]) -> FirmwareLog {
    let ev = |pcr: u32, event_type: u32, data: &[u8]| FirmwareEvent {
        pcr,
        event_type,
        digests: vec![
            (ALG_SHA1, openssl::sha::sha1(data).to_vec()),
            (ALG_SHA256, openssl::sha::sha256(data).to_vec()),
        ],
        data: data.to_vec(),
    };
    let mut events: Vec<FirmwareEvent> = extra.iter().map(|(p, t, d)| ev(*p, *t, d)).collect();
    for pcr in 0..8 {
        events.push(ev(pcr, EV_SEPARATOR, &[0, 0, 0, 0]));
    }
    FirmwareLog {
        spec: SpecId {
            platform_class: 0,
            spec_version: (0, 2, 0),
            uintn_size: 2,
            algorithms: vec![(ALG_SHA1, 20), (ALG_SHA256, 32)],
            vendor_info: Vec::new(),
            header_digest: [0; 20],
        },
        events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::sha::sha256;

    #[test]
    fn a_synthetic_log_parses_back_and_replays_per_pcr() {
        let log = synthetic(&[
            (0, 0x8000_0008, b"platform firmware blob"),
            (4, 0x8000_0003, b"uki"),
        ]);
        let bytes = encode(&log);
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed, log);
        assert_eq!(encode(&parsed), bytes);
        let r = parsed.replay_sha256().unwrap();
        let sep = sha256(&[0, 0, 0, 0]);
        let pcr0 = extend(&extend(&[0; 32], &sha256(b"platform firmware blob")), &sep);
        let pcr4 = extend(&extend(&[0; 32], &sha256(b"uki")), &sep);
        assert_eq!(r.values[&0], pcr0);
        assert_eq!(r.values[&4], pcr4);
        assert_eq!(r.values[&7], extend(&[0; 32], &sep));
        assert_eq!(r.events[&0], 2);
        assert_eq!(r.events[&1], 1);
        assert_eq!(r.values.len(), 8);
    }

    #[test]
    fn no_action_events_do_not_extend_and_startup_locality_sets_pcr0() {
        let mut log = synthetic(&[]);
        let mut loc = STARTUP_LOCALITY_SIGNATURE.to_vec();
        loc.push(3);
        log.events.insert(
            0,
            FirmwareEvent {
                pcr: 0,
                event_type: EV_NO_ACTION,
                digests: vec![(ALG_SHA1, vec![0; 20]), (ALG_SHA256, vec![0; 32])],
                data: loc,
            },
        );
        let r = parse(&encode(&log)).unwrap().replay_sha256().unwrap();
        let mut start = [0u8; 32];
        start[31] = 3;
        assert_eq!(r.values[&0], extend(&start, &sha256(&[0, 0, 0, 0])));
        assert_eq!(r.events[&0], 1);
    }

    #[test]
    fn an_edited_digest_changes_the_replay_of_its_pcr_only() {
        let log = synthetic(&[(2, 1, b"option rom")]);
        let good = log.replay_sha256().unwrap();
        let mut bytes = encode(&log);
        // The first event's SHA-256 digest: after the Spec ID record, the
        // event's PCR, type, count, SHA-1 (id + 20) and the SHA-256 id.
        let spec_len = u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize;
        let at = 32 + spec_len + 12 + 22 + 2;
        bytes[at] ^= 1;
        let bad = parse(&bytes).unwrap().replay_sha256().unwrap();
        for p in 0u8..8 {
            assert_eq!(good.values[&p] == bad.values[&p], p != 2, "PCR {p}");
        }
    }

    #[test]
    fn malformed_logs_are_refused() {
        let bytes = encode(&synthetic(&[]));
        // Truncated anywhere: an error, except at a record boundary (a
        // shorter log: it then replays to other values).
        let mut whole = 0;
        for n in 0..bytes.len() {
            if let Ok(l) = parse(&bytes[..n]) {
                assert_eq!(encode(&l), bytes[..n]);
                whole += 1;
            }
        }
        assert_eq!(whole, 8, "the Spec ID event, then 1 to 7 of the 8 events");
        // A SHA-1-only log (no Spec ID event).
        let mut sha1_only = bytes.clone();
        sha1_only[32..48].copy_from_slice(b"something else\0\0");
        assert!(matches!(
            parse(&sha1_only),
            Err(TcgLogError::NotCryptoAgile(_))
        ));
        // A digest count above the table's.
        let spec_len = u32::from_le_bytes(bytes[28..32].try_into().unwrap()) as usize;
        let mut many = bytes.clone();
        many[32 + spec_len + 8..32 + spec_len + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse(&many),
            Err(TcgLogError::BadEvent { index: 1, .. })
        ));
        // An absurd event size.
        let mut huge = bytes.clone();
        let size_at = 32 + spec_len + 12 + 22 + 34;
        huge[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(parse(&huge), Err(TcgLogError::Truncated { .. })));
        // A PCR index out of range.
        let mut pcr = bytes.clone();
        pcr[32 + spec_len..32 + spec_len + 4].copy_from_slice(&24u32.to_le_bytes());
        assert!(matches!(parse(&pcr), Err(TcgLogError::BadEvent { .. })));
        // Too large.
        assert!(matches!(
            parse(&vec![0; MAX_LOG_BYTES + 1]),
            Err(TcgLogError::TooLarge(_))
        ));
        // Trailing bytes that are not a whole record.
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        assert!(parse(&trailing).is_err());
    }

    #[test]
    fn a_log_without_sha256_cannot_be_replayed() {
        let mut log = synthetic(&[]);
        log.spec.algorithms = vec![(ALG_SHA1, 20)];
        for e in &mut log.events {
            e.digests.retain(|(a, _)| *a == ALG_SHA1);
        }
        let parsed = parse(&encode(&log)).unwrap();
        assert_eq!(parsed.replay_sha256(), Err(ReplayError::NoSha256Bank));
        // And one extending event without its SHA-256 digest.
        let mut log = synthetic(&[]);
        log.events[3].digests.retain(|(a, _)| *a == ALG_SHA1);
        let parsed = parse(&encode(&log)).unwrap();
        assert_eq!(
            parsed.replay_sha256(),
            Err(ReplayError::MissingSha256 { index: 4, pcr: 3 })
        );
    }
}

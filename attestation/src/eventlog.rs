//! The runtime measurement log: one JSON record per line, modeled on the TCG
//! canonical event log (register, digest, event type, content).
//!
//! Invariants:
//! * `digest` = SHA-256 of the record's `content` serialized as compact JSON
//!   with the fields in the order kind, name, sha256 ([`Content::digest`]).
//! * The register starts at 32 zero bytes and each event extends it:
//!   `new = SHA-256(old || digest)` (what TPM2_NV_Extend does to an
//!   extend-type NV index, and what a PCR extend does).

use openssl::sha::{sha256, Sha256};
use serde::{Deserialize, Serialize};

/// The event type of every Hearth runtime measurement.
pub const EVENT_TYPE: &str = "hearth-measurement-v1";

/// What was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A Hearth executable, at its start.
    Binary,
    /// A model file hearth-intentd loads.
    Model,
    /// The playbook catalog's digest.
    PlaybookCatalog,
    /// The policy file.
    Policy,
    /// The audit record of an executed action.
    Action,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 5] = [
        Kind::Binary,
        Kind::Model,
        Kind::PlaybookCatalog,
        Kind::Policy,
        Kind::Action,
    ];

    /// The kind's name as written in records and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Binary => "binary",
            Kind::Model => "model",
            Kind::PlaybookCatalog => "playbook-catalog",
            Kind::Policy => "policy",
            Kind::Action => "action",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The measured thing: its kind, name (path or identifier) and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Kind of measurement.
    pub kind: Kind,
    /// File path, catalog name or action identifier.
    pub name: String,
    /// SHA-256 of the measured bytes, lowercase hex.
    pub sha256: String,
}

impl Content {
    /// The event digest: SHA-256 of the compact JSON of this content.
    pub fn digest(&self) -> [u8; 32] {
        // Serializing a plain struct of strings cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        sha256(&json)
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Record number, from 0, consecutive.
    pub recnum: u64,
    /// The register extended, e.g. `nv:0x01400a71`.
    pub register: String,
    /// SHA-256 event digest, lowercase hex.
    pub digest: String,
    /// Event type.
    pub event_type: String,
    /// What was measured.
    pub content: Content,
}

/// Why a log does not replay to the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A record's digest does not match its content.
    #[error("event {recnum} ({kind} {name}): digest does not match its content")]
    DigestMismatch {
        /// Record number.
        recnum: u64,
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
    },
    /// Record numbers are not 0, 1, 2, ...
    #[error(
        "event at position {position} has record number {recnum}: records are missing or reordered"
    )]
    Sequence {
        /// Position in the log.
        position: usize,
        /// Its record number.
        recnum: u64,
    },
    /// A record names another register or event type.
    #[error("event {recnum}: register {register:?} / type {event_type:?} is not this log's")]
    Foreign {
        /// Record number.
        recnum: u64,
        /// Register named.
        register: String,
        /// Event type named.
        event_type: String,
    },
    /// The digest field is not 32 bytes of hex.
    #[error("event {recnum}: digest is not 64 hex digits")]
    BadDigest {
        /// Record number.
        recnum: u64,
    },
}

/// The register name for an NV index.
pub fn register_name(nv_index: u32) -> String {
    format!("nv:{nv_index:#010x}")
}

/// Extends a register value with a digest.
pub fn extend(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finish()
}

/// Builds the next record of a log.
pub fn make_event(recnum: u64, nv_index: u32, content: Content) -> Event {
    Event {
        recnum,
        register: register_name(nv_index),
        digest: hex::encode(content.digest()),
        event_type: EVENT_TYPE.to_string(),
        content,
    }
}

/// Replays the log: checks every record (sequence, register, digest against
/// content) and returns the register value it yields, or `None` for an
/// empty log (the index is then still unwritten).
pub fn replay(events: &[Event], nv_index: u32) -> Result<Option<[u8; 32]>, ReplayError> {
    let register = register_name(nv_index);
    let mut value: Option<[u8; 32]> = None;
    for (position, e) in events.iter().enumerate() {
        if e.recnum != position as u64 {
            return Err(ReplayError::Sequence {
                position,
                recnum: e.recnum,
            });
        }
        if e.register != register || e.event_type != EVENT_TYPE {
            return Err(ReplayError::Foreign {
                recnum: e.recnum,
                register: e.register.clone(),
                event_type: e.event_type.clone(),
            });
        }
        let digest: [u8; 32] = hex::decode(&e.digest)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(ReplayError::BadDigest { recnum: e.recnum })?;
        if digest != e.content.digest() {
            return Err(ReplayError::DigestMismatch {
                recnum: e.recnum,
                kind: e.content.kind,
                name: e.content.name.clone(),
            });
        }
        value = Some(extend(&value.unwrap_or([0; 32]), &digest));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(kind: Kind, name: &str) -> Content {
        Content {
            kind,
            name: name.into(),
            sha256: hex::encode(sha256(name.as_bytes())),
        }
    }

    #[test]
    fn replay_extends_from_zero() {
        let e0 = make_event(0, 7, content(Kind::Binary, "/usr/bin/a"));
        let e1 = make_event(1, 7, content(Kind::Model, "m.gguf"));
        let v = replay(&[e0.clone(), e1.clone()], 7).unwrap().unwrap();
        let d0: [u8; 32] = hex::decode(&e0.digest).unwrap().try_into().unwrap();
        let d1: [u8; 32] = hex::decode(&e1.digest).unwrap().try_into().unwrap();
        assert_eq!(v, extend(&extend(&[0; 32], &d0), &d1));
        assert_eq!(replay(&[], 7).unwrap(), None);
    }

    #[test]
    fn replay_rejects_edited_and_reordered_records() {
        let e0 = make_event(0, 7, content(Kind::Binary, "/usr/bin/a"));
        let e1 = make_event(1, 7, content(Kind::Model, "m.gguf"));
        let mut edited = e1.clone();
        edited.content.sha256 = "00".repeat(32);
        assert!(matches!(
            replay(&[e0.clone(), edited], 7),
            Err(ReplayError::DigestMismatch { recnum: 1, .. })
        ));
        assert!(matches!(
            replay(&[e1, e0], 7),
            Err(ReplayError::Sequence { position: 0, .. })
        ));
    }

    #[test]
    fn kinds_serialize_as_their_names() {
        for k in Kind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}

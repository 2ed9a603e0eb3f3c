//! `org.hearth.Attestation1` results (hearth-attestd): the runtime
//! measurement log, its agreement with the TPM register, and the boot PCRs.
//! See `docs/dbus/attestation.md`. (`Measure` returns a plain record number.)

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::decode;
use crate::proxies::attestation::AttestationProxy;
use crate::HearthError;

/// What a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeasurementKind {
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

impl MeasurementKind {
    /// The kind's name as records and `Measure` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasurementKind::Binary => "binary",
            MeasurementKind::Model => "model",
            MeasurementKind::PlaybookCatalog => "playbook-catalog",
            MeasurementKind::Policy => "policy",
            MeasurementKind::Action => "action",
        }
    }
}

impl fmt::Display for MeasurementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The measured thing (fields in this order: the event digest is the
/// SHA-256 of this object's compact JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// Kind of measurement.
    pub kind: MeasurementKind,
    /// File path, catalog name or action identifier.
    pub name: String,
    /// SHA-256 of the measured bytes, lower-case hex.
    pub sha256: String,
}

/// One record of the runtime event log (`Log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Record number, from 0, consecutive.
    pub recnum: u64,
    /// The register extended, e.g. `nv:0x01400a71`.
    pub register: String,
    /// SHA-256 event digest, lower-case hex.
    pub digest: String,
    /// Event type (`hearth-measurement-v1`).
    pub event_type: String,
    /// What was measured.
    pub content: Measurement,
}

/// The HTTPS endpoint's certificate served now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    /// The leaf's serial number, lower-case hex.
    pub serial: String,
    /// The leaf's notAfter as OpenSSL prints it (`Feb 21 13:22:18 2027 GMT`).
    pub not_after: String,
    /// The same instant in seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// Log and register agreement (`Status`, and `GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Whether the log replays to the register value.
    pub consistent: bool,
    /// Why not, when not.
    pub detail: Option<String>,
    /// Number of events in the log.
    pub events: u64,
    /// The register value (hex), or none while unwritten.
    pub register: Option<String>,
    /// The register (NV index), e.g. `nv:0x01400a71`.
    pub register_name: String,
    /// Whether no TPM command can delete the register (decision 052).
    pub deletion_protected: bool,
    /// The endpoint certificate served now, once the daemon has set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsCertificate>,
}

/// The boot PCRs of the SHA-256 bank (`Pcrs`): index → value, hex. On the
/// wire a JSON object with the indexes as keys (`{"0": "…", "7": "…"}`).
pub type Pcrs = BTreeMap<u8, String>;

/// `Status`: log and register agreement.
pub async fn status(p: &AttestationProxy<'_>) -> Result<Status, HearthError> {
    decode("Attestation1.Status", &p.status().await?)
}

/// `Log`: the runtime event log, in order.
pub async fn log(p: &AttestationProxy<'_>) -> Result<Vec<Event>, HearthError> {
    decode("Attestation1.Log", &p.log().await?)
}

/// `Pcrs`: the boot PCRs.
pub async fn pcrs(p: &AttestationProxy<'_>) -> Result<Pcrs, HearthError> {
    decode("Attestation1.Pcrs", &p.pcrs().await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::contract::encode;

    #[test]
    fn documents_read_as_the_daemon_writes_them() {
        let s: Status = decode(
            "Attestation1.Status",
            r#"{"consistent":true,"detail":null,"events":12,"register":"5f1c",
                "register_name":"nv:0x01400a71","deletion_protected":true,
                "tls":{"serial":"3a9f","not_after":"Feb 21 13:22:18 2027 GMT","not_after_unix":1803216138}}"#,
        )
        .unwrap();
        assert_eq!(s.tls.as_ref().map(|t| t.not_after_unix), Some(1803216138));
        let pcrs: Pcrs = decode("Attestation1.Pcrs", r#"{"0":"aa","11":"bb"}"#).unwrap();
        assert_eq!(pcrs.get(&11).map(String::as_str), Some("bb"));
        assert_eq!(encode(&pcrs).unwrap(), r#"{"0":"aa","11":"bb"}"#);
        let e: Event = decode(
            "Attestation1.Log",
            r#"{"recnum":0,"register":"nv:0x01400a71","digest":"d","event_type":"hearth-measurement-v1",
                "content":{"kind":"playbook-catalog","name":"default","sha256":"ab"}}"#,
        )
        .unwrap();
        assert_eq!(e.content.kind, MeasurementKind::PlaybookCatalog);
        assert_eq!(
            encode(&e.content).unwrap(),
            r#"{"kind":"playbook-catalog","name":"default","sha256":"ab"}"#
        );
    }
}

//! What `hearthctl --json` prints that is no daemon's result: its error
//! envelope, `hearthctl status`'s report, and the reports of the commands
//! that wrap a tool or a plain-text answer (`playbook sign`, `playbook
//! verify`, `pki crl`). hearthctl serializes these types; scripts and the
//! end-to-end tests read them back.

use serde::{Deserialize, Serialize};

use crate::contract::intent::Summary;
use crate::HearthError;

/// What `hearthctl --json` prints when a call fails or is refused:
/// `{"error": {"kind": "NotAuthorized", "message": "…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReport {
    /// The error.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// [`HearthError::kind`]: `InvalidArgument`, `NotAuthorized`,
    /// `NotFound`, `Conflict`, `Internal`, or `Bus`.
    pub kind: String,
    /// [`HearthError::message`].
    pub message: String,
}

impl From<&HearthError> for ErrorReport {
    fn from(e: &HearthError) -> Self {
        ErrorReport {
            error: ErrorDetail {
                kind: e.kind().to_string(),
                message: e.message(),
            },
        }
    }
}

/// One daemon in `hearthctl status`: its `org.hearth.Daemon1` state when
/// it answered, why not otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonState {
    /// Its unit name (`hearth-netd`).
    pub daemon: String,
    /// Its bus name.
    pub bus_name: String,
    /// True when it answered.
    pub up: bool,
    /// Its version (up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Seconds since it started (up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    /// Its own status line (up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Why it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `hearthctl status`: every daemon, and whether all of them are up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    /// Every daemon, in the order of [`crate::names::ALL`].
    pub daemons: Vec<DaemonState>,
    /// True when every daemon answered.
    pub all_up: bool,
}

/// `hearthctl playbook sign`: what hearth-playbook signed,
/// `{"signed": ["…/x.dsse.json"]}`, with `"error"` when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignReport {
    /// The envelopes written, one path each (hearth-playbook's output
    /// lines).
    pub signed: Vec<String>,
    /// hearth-playbook's error output (only when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One file of `hearthctl playbook verify`, which prints a list of them:
/// `{"file": "x.dsse.json", "ok": true, "playbook": {…}}`, or
/// `{"file": …, "ok": false, "error": "…"}` when hearth-intentd refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifiedFile {
    /// The file, as given.
    pub file: String,
    /// True when hearth-intentd would install it.
    pub ok: bool,
    /// The playbook it holds (ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<Summary>,
    /// Why it was refused ([`HearthError::message`]; not ok).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `hearthctl pki crl`: the appliance CA's certificate revocation list,
/// `{"crl_pem": "-----BEGIN X509 CRL-----…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlReport {
    /// The CRL, PEM, as hearth-pkid returned it.
    pub crl_pem: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_error_reads_back_as_written() {
        let r = ErrorReport::from(&HearthError::NotFound("plan x".into()));
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"error":{"kind":"NotFound","message":"plan x"}}"#);
        assert_eq!(serde_json::from_str::<ErrorReport>(&text).unwrap(), r);
    }

    #[test]
    fn the_reports_keep_their_keys() {
        let r = SignReport {
            signed: vec!["out/a.dsse.json".into()],
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"signed":["out/a.dsse.json"]}"#
        );
        let failed = r#"{"signed":[],"error":"no key"}"#;
        let back: SignReport = serde_json::from_str(failed).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), failed);

        let refused = VerifiedFile {
            file: "x.dsse.json".into(),
            ok: false,
            playbook: None,
            error: Some("tampered".into()),
        };
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"file":"x.dsse.json","ok":false,"error":"tampered"}"#
        );
        assert!(serde_json::from_str::<VerifiedFile>(
            r#"{"file":"x","ok":true,"playbook":null,"extra":1}"#
        )
        .is_err());

        let c = CrlReport {
            crl_pem: "PEM\n".into(),
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"crl_pem":"PEM\n"}"#);
        assert_eq!(serde_json::from_str::<CrlReport>(&text).unwrap(), c);
    }
}

//! What `hearthctl --json` prints that is no daemon's result: its error
//! envelope and `hearthctl status`'s report. hearthctl serializes these
//! types; scripts and the end-to-end tests read them back.

use serde::{Deserialize, Serialize};

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
}

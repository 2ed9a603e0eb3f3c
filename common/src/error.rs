//! The named D-Bus errors of every Hearth daemon.
//!
//! Daemons return [`HearthError`] from their interface methods; clients get the
//! same enum back from the proxies, so a refusal keeps its name end to end.

use crate::types::ParseError;

/// Prefix of every Hearth error name.
pub const ERROR_PREFIX: &str = "org.hearth.Error";

/// An error as it crosses the bus: `org.hearth.Error.<Variant>` with a message
/// that names what was wrong.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.hearth.Error")]
pub enum HearthError {
    /// A transport or protocol error of the bus itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The caller sent a value that does not parse or does not fit.
    InvalidArgument(String),
    /// The caller is not in a group allowed to do this.
    NotAuthorized(String),
    /// The named thing does not exist.
    NotFound(String),
    /// The request clashes with existing state (duplicate, overlap, protected).
    Conflict(String),
    /// The daemon failed; nothing the caller can fix.
    Internal(String),
}

impl HearthError {
    /// The short kind (`InvalidArgument`, …), as used by `hearthctl --json`.
    pub fn kind(&self) -> &'static str {
        match self {
            HearthError::ZBus(_) => "Bus",
            HearthError::InvalidArgument(_) => "InvalidArgument",
            HearthError::NotAuthorized(_) => "NotAuthorized",
            HearthError::NotFound(_) => "NotFound",
            HearthError::Conflict(_) => "Conflict",
            HearthError::Internal(_) => "Internal",
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> String {
        match self {
            HearthError::ZBus(e) => e.to_string(),
            HearthError::InvalidArgument(m)
            | HearthError::NotAuthorized(m)
            | HearthError::NotFound(m)
            | HearthError::Conflict(m)
            | HearthError::Internal(m) => m.clone(),
        }
    }

    /// True for errors of the bus itself (no daemon, no connection), as
    /// opposed to a daemon's refusal.
    pub fn is_transport(&self) -> bool {
        matches!(self, HearthError::ZBus(_))
    }
}

impl From<ParseError> for HearthError {
    fn from(e: ParseError) -> Self {
        HearthError::InvalidArgument(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn error_names_are_stable() {
        let cases = [
            (HearthError::InvalidArgument("x".into()), "InvalidArgument"),
            (HearthError::NotAuthorized("x".into()), "NotAuthorized"),
            (HearthError::NotFound("x".into()), "NotFound"),
            (HearthError::Conflict("x".into()), "Conflict"),
            (HearthError::Internal("x".into()), "Internal"),
        ];
        for (e, kind) in cases {
            assert_eq!(e.name().as_str(), format!("org.hearth.Error.{kind}"));
            assert_eq!(e.kind(), kind);
            assert_eq!(e.description(), Some("x"));
        }
    }

    #[test]
    fn parse_errors_become_invalid_argument() {
        let e: HearthError = crate::types::DomainId::parse_field("domain", "Bad")
            .unwrap_err()
            .into();
        assert_eq!(e.kind(), "InvalidArgument");
        assert!(e.message().contains("domain"), "{}", e.message());
        assert!(e.message().contains("Bad"), "{}", e.message());
    }
}

//! The engine's errors and how they cross the bus.

use hearth_common::types::ParseError;
use hearth_common::HearthError;

use crate::netlink::NlError;

/// Everything the engine can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A value that does not parse (name, subnet, port, protocol).
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A value that parses but breaks a rule.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A domain that does not exist.
    #[error("unknown domain {0:?}")]
    UnknownDomain(String),
    /// Something else that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A domain that already exists.
    #[error("domain {0:?} already exists")]
    Duplicate(String),
    /// A subnet that overlaps another domain's.
    #[error("subnet {subnet} overlaps domain {domain:?} ({other})")]
    Overlap {
        /// The requested subnet.
        subnet: String,
        /// The domain it overlaps.
        domain: String,
        /// That domain's subnet.
        other: String,
    },
    /// A subnet that overlaps a network the appliance itself uses (the
    /// uplink's, or another address of one of its links).
    #[error("subnet {subnet} overlaps {holder}")]
    InUse {
        /// The requested subnet.
        subnet: String,
        /// What holds the space, in words.
        holder: String,
    },
    /// A protected object (the admin domain and its reach).
    #[error("{0}")]
    Protected(String),
    /// Any other clash with existing state.
    #[error("{0}")]
    Conflict(String),
    /// A link operation the kernel refused.
    #[error("{op}: {source}")]
    Link {
        /// What was being done.
        op: String,
        /// The kernel's answer.
        source: NlError,
    },
    /// A link that is in the way (exists, but not as a bridge we can own).
    #[error("{0}")]
    LinkConflict(String),
    /// The nftables transaction was rejected or its outcome unknown.
    #[error("nftables: {0}")]
    Nft(String),
    /// The state file could not be read or written.
    #[error("state {path}: {message}")]
    State {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The base configuration file.
    #[error(transparent)]
    Config(#[from] hearth_common::config::ConfigError),
}

impl NetError {
    /// The `org.hearth.Error.*` kind this error maps to.
    pub fn kind(&self) -> &'static str {
        match self {
            NetError::Parse(_) | NetError::Invalid { .. } | NetError::Config(_) => {
                "InvalidArgument"
            }
            NetError::UnknownDomain(_) | NetError::NotFound(_) => "NotFound",
            NetError::Duplicate(_)
            | NetError::Overlap { .. }
            | NetError::InUse { .. }
            | NetError::Protected(_)
            | NetError::Conflict(_)
            | NetError::LinkConflict(_) => "Conflict",
            NetError::Link { .. } | NetError::Nft(_) | NetError::State { .. } => "Internal",
        }
    }
}

impl From<NetError> for HearthError {
    fn from(e: NetError) -> HearthError {
        let m = e.to_string();
        match e.kind() {
            "InvalidArgument" => HearthError::InvalidArgument(m),
            "NotFound" => HearthError::NotFound(m),
            "Conflict" => HearthError::Conflict(m),
            _ => HearthError::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_named_bus_errors() {
        let cases = [
            (NetError::UnknownDomain("x".into()), "NotFound"),
            (NetError::Duplicate("x".into()), "Conflict"),
            (NetError::Protected("admin".into()), "Conflict"),
            (NetError::Nft("boom".into()), "Internal"),
        ];
        for (e, kind) in cases {
            let h: HearthError = e.into();
            assert_eq!(h.kind(), kind);
        }
    }
}

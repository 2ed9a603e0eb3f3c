//! `org.hearth.Daemon1` results, served by every daemon beside its own
//! interface. See `docs/dbus-api.md`.

use serde::{Deserialize, Serialize};

use super::decode;
use crate::proxies::daemon::DaemonProxy;
use crate::HearthError;

/// What a caller may do, as the daemon sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerRole {
    /// May read and ask (the operators group).
    Operator,
    /// May change anything (the admins group).
    Admin,
}

/// `WhoAmI`: the caller as the daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Its UID.
    pub uid: u32,
    /// Its groups, primary and supplementary, in ascending order.
    pub gids: Vec<u32>,
    /// What it may do.
    pub role: CallerRole,
    /// True when it is one of the daemons' own service UIDs.
    pub service: bool,
}

/// `WhoAmI`: the caller as the daemon sees it; NotAuthorized outside the
/// operators and admins.
pub async fn who_am_i(p: &DaemonProxy<'_>) -> Result<Identity, HearthError> {
    decode("Daemon1.WhoAmI", &p.who_am_i().await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_written_in_lower_case_and_read_back() {
        let c = Identity {
            uid: 0,
            gids: vec![0, 990],
            role: CallerRole::Admin,
            service: false,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"uid":0,"gids":[0,990],"role":"admin","service":false}"#
        );
        assert_eq!(serde_json::from_str::<Identity>(&text).unwrap(), c);
        assert!(serde_json::from_str::<Identity>(
            r#"{"uid":0,"gids":[],"role":"root","service":false}"#
        )
        .is_err());
    }
}

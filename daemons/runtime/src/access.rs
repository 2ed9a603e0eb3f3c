//! Who may call what. The caller's UID and groups are asked of the bus daemon
//! for the message's sender (never taken from the message body), then matched
//! against the configured groups.

use std::collections::BTreeSet;
use std::sync::Arc;

use hearth_common::HearthError;
use serde::Deserialize;
use zbus::message::Header;
use zbus::names::BusName;

/// The `[access]` table of every daemon's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Members may ask and read.
    #[serde(default = "default_operators")]
    pub operators_group: String,
    /// Members may approve destructive actions and change anything.
    #[serde(default = "default_admins")]
    pub admins_group: String,
    /// Whether UID 0 counts as an admin (true by default: root owns the box).
    #[serde(default = "yes")]
    pub root_is_admin: bool,
    /// Users treated as admins: the users other daemons run as when they
    /// call this one on a person's behalf (hearth-intentd's user), by name.
    #[serde(default)]
    pub service_users: Vec<String>,
}

fn default_operators() -> String {
    "hearth-operators".into()
}
fn default_admins() -> String {
    "hearth-admins".into()
}
fn yes() -> bool {
    true
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            operators_group: default_operators(),
            admins_group: default_admins(),
            root_is_admin: true,
            service_users: Vec::new(),
        }
    }
}

/// What a caller must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// A member of the operators group (or an admin): may ask and read.
    Operator,
    /// A member of the admins group: may change anything.
    Admin,
}

/// A bus caller, as the bus daemon describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The sender's unique bus name.
    pub sender: String,
    /// Its UID.
    pub uid: u32,
    /// Its groups (primary and supplementary).
    pub gids: BTreeSet<u32>,
    /// True when it may read and ask.
    pub is_operator: bool,
    /// True when it may change anything.
    pub is_admin: bool,
    /// True when it is one of the configured service UIDs.
    pub is_service: bool,
}

#[derive(Debug)]
struct Resolved {
    config: AccessConfig,
    operators_gid: Option<u32>,
    admins_gid: Option<u32>,
    service_uids: Vec<u32>,
}

/// Authorization against the configured groups.
#[derive(Debug, Clone)]
pub struct Access(Arc<Resolved>);

impl Access {
    /// Resolves the configured group names. A group that does not exist on
    /// this system matches nobody (logged once).
    pub fn from_config(config: &AccessConfig) -> anyhow::Result<Access> {
        let gid = |name: &str| -> Option<u32> {
            match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => Some(g.gid.as_raw()),
                _ => {
                    tracing::warn!(
                        group = name,
                        "configured group does not exist; it matches nobody"
                    );
                    None
                }
            }
        };
        let mut service_uids = Vec::new();
        for name in &config.service_users {
            match nix::unistd::User::from_name(name) {
                Ok(Some(u)) => service_uids.push(u.uid.as_raw()),
                _ => tracing::warn!(
                    user = name.as_str(),
                    "configured service user does not exist"
                ),
            }
        }
        Ok(Access(Arc::new(Resolved {
            service_uids,
            operators_gid: gid(&config.operators_group),
            admins_gid: gid(&config.admins_group),
            config: config.clone(),
        })))
    }

    /// Classifies a UID with its groups.
    pub fn classify(&self, sender: String, uid: u32, gids: BTreeSet<u32>) -> Caller {
        let r = &self.0;
        let is_service = r.service_uids.contains(&uid);
        let is_admin = (uid == 0 && r.config.root_is_admin)
            || is_service
            || r.admins_gid.is_some_and(|g| gids.contains(&g));
        let is_operator = is_admin || r.operators_gid.is_some_and(|g| gids.contains(&g));
        Caller {
            sender,
            uid,
            gids,
            is_operator,
            is_admin,
            is_service,
        }
    }

    /// Asks the bus daemon who sent the message.
    pub async fn caller(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
    ) -> Result<Caller, HearthError> {
        let sender = hdr
            .sender()
            .ok_or_else(|| HearthError::NotAuthorized("the message has no sender".into()))?
            .to_owned();
        let dbus = zbus::fdo::DBusProxy::new(conn)
            .await
            .map_err(|e| HearthError::Internal(format!("cannot reach the bus daemon: {e}")))?;
        let creds = dbus
            .get_connection_credentials(BusName::Unique(sender.clone()))
            .await
            .map_err(|e| {
                HearthError::Internal(format!("cannot ask the caller's credentials: {e}"))
            })?;
        let uid = creds.unix_user_id().ok_or_else(|| {
            HearthError::NotAuthorized("the bus daemon gave no UID for the caller".into())
        })?;
        let gids: BTreeSet<u32> = match creds.unix_group_ids() {
            Some(g) => g.iter().copied().collect(),
            None => groups_of(uid),
        };
        Ok(self.classify(sender.to_string(), uid, gids))
    }

    /// The caller, if [`hearth_common::rights`] lets it call this
    /// message's member of `interface` (with `dry_run`): the one rule every
    /// daemon and hearth-intentd's gate apply.
    pub async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        interface: &str,
        dry_run: bool,
    ) -> Result<Caller, HearthError> {
        let member = hdr.member().map(|m| m.to_string()).unwrap_or_default();
        let role = match hearth_common::rights::need(interface, &member, dry_run) {
            hearth_common::rights::Need::Operator => Role::Operator,
            hearth_common::rights::Need::Admin => Role::Admin,
        };
        self.require(conn, hdr, role).await
    }

    /// The caller, if it has `role`; `NotAuthorized` naming what is needed
    /// otherwise.
    pub async fn require(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        role: Role,
    ) -> Result<Caller, HearthError> {
        let c = self.caller(conn, hdr).await?;
        let ok = match role {
            Role::Operator => c.is_operator,
            Role::Admin => c.is_admin,
        };
        if ok {
            Ok(c)
        } else {
            let group = match role {
                Role::Operator => format!(
                    "{} or {}",
                    self.0.config.operators_group, self.0.config.admins_group
                ),
                Role::Admin => self.0.config.admins_group.clone(),
            };
            tracing::warn!(uid = c.uid, ?role, "refused an unauthorized caller");
            Err(HearthError::NotAuthorized(format!(
                "uid {} is not a member of {group}",
                c.uid
            )))
        }
    }

    /// The configured group names.
    pub fn config(&self) -> &AccessConfig {
        &self.0.config
    }
}

/// Groups of a UID from the system's user database (when the bus daemon
/// does not report them).
fn groups_of(uid: u32) -> BTreeSet<u32> {
    let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return BTreeSet::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name.clone()) else {
        return BTreeSet::new();
    };
    nix::unistd::getgrouplist(&name, user.gid)
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_else(|_| [user.gid.as_raw()].into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access(Arc::new(Resolved {
            config: AccessConfig::default(),
            service_uids: vec![990],
            operators_gid: Some(2000),
            admins_gid: Some(2001),
        }))
    }

    #[test]
    fn roles_follow_groups() {
        let a = access();
        let op = a.classify(":1.1".into(), 1000, [1000, 2000].into());
        assert!(op.is_operator && !op.is_admin);
        let adm = a.classify(":1.2".into(), 1001, [1001, 2001].into());
        assert!(adm.is_operator && adm.is_admin);
        let nobody = a.classify(":1.3".into(), 65534, [65534].into());
        assert!(!nobody.is_operator && !nobody.is_admin);
        let root = a.classify(":1.4".into(), 0, [0].into());
        assert!(root.is_admin);
        let svc = a.classify(":1.5".into(), 990, [990].into());
        assert!(svc.is_admin && svc.is_service);
    }

    #[test]
    fn missing_group_matches_nobody() {
        let a = Access::from_config(&AccessConfig {
            operators_group: "hearth-no-such-group-xyz".into(),
            admins_group: "hearth-no-such-group-abc".into(),
            root_is_admin: false,
            service_users: vec!["hearth-no-such-user-xyz".into()],
        })
        .unwrap();
        let c = a.classify(":1.1".into(), 0, [0, 1, 2].into());
        assert!(!c.is_operator && !c.is_admin);
    }
}

//! `org.hearth.Daemon1`, served by every daemon beside its own interface.

use crate::HearthError;

/// What every daemon answers for `hearthctl status`.
#[zbus::proxy(interface = "org.hearth.Daemon1", gen_blocking = false)]
pub trait Daemon {
    /// Answers "pong" at once.
    fn ping(&self) -> Result<String, HearthError>;
    /// The caller as the daemon sees it -> `contract::daemon::Identity`;
    /// NotAuthorized outside the operators and admins groups.
    fn who_am_i(&self) -> Result<String, HearthError>;
    /// The daemon's unit name.
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    /// Its version.
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    /// Seconds since start.
    #[zbus(property)]
    fn uptime(&self) -> zbus::Result<u64>;
    /// Its last status line.
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
}

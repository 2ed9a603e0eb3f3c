//! `org.hearth.Network1`, served by hearth-netd (docs/dbus/network.md).
//! Every method returns a JSON document whose shape is a type of
//! [`crate::contract::network`]; read them with its typed calls. Absent optional values: subnet
//! `""`, port `0`, protocol `""`. `dry_run` validates and previews without
//! changing anything.

// zbus's proxy macro generates undocumented items for the signal.
#![allow(missing_docs)]

use crate::HearthError;

/// Network domains and their isolation.
#[zbus::proxy(
    interface = "org.hearth.Network1",
    default_service = "org.hearth.Network1",
    default_path = "/org/hearth/Network1",
    gen_blocking = false
)]
pub trait Network {
    /// The domains -> `[Domain]` (`contract::network::Domain`).
    fn list_domains(&self) -> Result<String, HearthError>;
    /// Domains, allows, matrix and the kernel table's state -> `Show`.
    fn show(&self) -> Result<String, HearthError>;
    /// The reachability matrix -> `Matrix`.
    fn matrix(&self) -> Result<String, HearthError>;
    /// Creates a domain (subnet "": a free /24 of the pool) -> `NetChange`.
    fn create_domain(&self, name: &str, subnet: &str, dry_run: bool)
        -> Result<String, HearthError>;
    /// Deletes a domain and every allow naming it -> `NetChange`.
    fn delete_domain(&self, name: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Lets `from` reach `to` (port 0: any; protocol "": any) -> `NetChange`.
    fn allow(
        &self,
        from: &str,
        to: &str,
        port: u32,
        protocol: &str,
        dry_run: bool,
    ) -> Result<String, HearthError>;
    /// Removes every allow from `from` to `to` -> `NetChange`.
    fn revoke(&self, from: &str, to: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Re-applies configuration and persisted changes to the kernel ->
    /// `Reconciled`.
    fn reconcile(&self) -> Result<String, HearthError>;
    /// Emitted after every change: the action and the method's `NetChange`.
    #[zbus(signal)]
    fn changed(&self, what: String, detail: String) -> zbus::Result<()>;
}

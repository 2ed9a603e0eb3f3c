//! `org.hearth.Dns1` (hearth-dnsd): the home zones' records. Every method
//! returns a JSON document string whose shape is a type of
//! [`crate::contract::dns`]; read them with its typed calls.
//! `dry_run = true` checks a change exactly as for real and changes nothing.

use crate::HearthError;

/// Client side of hearth-dnsd's interface.
#[zbus::proxy(
    interface = "org.hearth.Dns1",
    default_service = "org.hearth.Dns1",
    default_path = "/org/hearth/Dns1",
    gen_blocking = false
)]
pub trait Dns {
    /// Adds an A (IPv4) or AAAA (IPv6) record; returns the `ZoneDiff`.
    fn add_record(&self, name: &str, address: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Makes `name` a CNAME for `target`; returns the `ZoneDiff`.
    fn add_alias(&self, name: &str, target: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Removes every record of `name`; the `ZoneDiff`'s `removed` lists them.
    fn remove(&self, name: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Removes one A/AAAA record of `name`; returns the `ZoneDiff`.
    fn remove_record(
        &self,
        name: &str,
        address: &str,
        dry_run: bool,
    ) -> Result<String, HearthError>;
    /// Adds back what a removal returned (its `ZoneDiff` or a record array);
    /// returns the `ZoneDiff`.
    fn restore(&self, records: &str, dry_run: bool) -> Result<String, HearthError>;
    /// The records of one name -> `NameRecords`.
    fn describe(&self, name: &str) -> Result<String, HearthError>;
    /// Every zone with its serial -> `[Zone]`.
    fn list(&self) -> Result<String, HearthError>;
}

//! `org.hearth.Dhcp1` (hearth-dhcpd): the device inventory, reservations
//! and the state of every domain's pool. Every method returns a JSON
//! document whose shape is a type of [`crate::contract::dhcp`]; see
//! `docs/dbus/dhcp.md`. `dry_run = true` checks a change
//! exactly as for real and changes nothing.

use crate::HearthError;

/// Client side of hearth-dhcpd's interface.
#[zbus::proxy(
    interface = "org.hearth.Dhcp1",
    default_service = "org.hearth.Dhcp1",
    default_path = "/org/hearth/Dhcp1",
    gen_blocking = false
)]
pub trait Dhcp {
    /// Every device seen or reserved -> `[Device]`.
    fn list_devices(&self) -> Result<String, HearthError>;
    /// One device by MAC or hostname -> `Device`.
    fn show_device(&self, device: &str) -> Result<String, HearthError>;
    /// Each served domain's pool: size, leased, reserved, full -> `[Pool]`.
    fn pools(&self) -> Result<String, HearthError>;
    /// Reserves `address` (inside the device's domain) for a device ->
    /// `ReservationChange`.
    fn reserve(&self, device: &str, address: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Removes a device's reservation -> `ReservationChange`.
    fn release_reservation(&self, device: &str, dry_run: bool) -> Result<String, HearthError>;
    /// Forgets a device: its lease, reservation, name and inventory entry ->
    /// `Forgotten`.
    fn forget(&self, device: &str, dry_run: bool) -> Result<String, HearthError>;
}

//! `org.hearth.Dhcp1` results (hearth-dhcpd; docs/dbus/dhcp.md), and the
//! typed calls that read them.

use serde::{Deserialize, Serialize};

use super::decode;
use crate::mac::MacAddr;
use crate::proxies::dhcp::DhcpProxy;
use crate::types::{Cidr, DomainId, Ipv4};
use crate::HearthError;

/// Whether a lease was acknowledged or only offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Acknowledged: the device holds the address.
    Bound,
    /// Offered, not yet requested.
    Offered,
}

/// A device's current lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The address.
    pub address: Ipv4,
    /// Bound or offered.
    pub state: LeaseState,
    /// When it ends (Unix seconds, UTC).
    pub expires: u64,
}

/// One device of the inventory (`ListDevices`, `ShowDevice`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Its MAC.
    pub mac: MacAddr,
    /// Its vendor from the IEEE OUI list; `None` when the list is absent or
    /// the MAC is locally administered.
    pub vendor: Option<String>,
    /// The domain it was last seen in (or reserved in).
    pub domain: Option<DomainId>,
    /// Its current or last address.
    pub address: Option<Ipv4>,
    /// The host name it sent, cleaned.
    pub hostname: Option<String>,
    /// The name hearth-dhcpd made for it in hearth-dnsd (`cam1.lan.home.arpa`).
    pub name: Option<String>,
    /// First seen (Unix seconds); `None` for a device only reserved.
    pub first_seen: Option<u64>,
    /// Last seen (Unix seconds).
    pub last_seen: Option<u64>,
    /// Its lease now, if any.
    pub lease: Option<Lease>,
    /// The address reserved for it, if any.
    pub reserved: Option<Ipv4>,
}

/// One served domain's pool (`Pools`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The domain.
    pub domain: DomainId,
    /// Its bridge.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Cidr,
    /// Its gateway (router and DNS handed out).
    pub gateway: Ipv4,
    /// First address of the pool.
    pub first: Ipv4,
    /// Last address of the pool.
    pub last: Ipv4,
    /// Addresses the pool hands out.
    pub size: u32,
    /// Bound leases.
    pub leased: u32,
    /// Outstanding offers.
    pub offered: u32,
    /// Reservations in the domain.
    pub reserved: u32,
    /// Addresses neither leased, offered, reserved nor set aside.
    pub free: u32,
    /// No address left.
    pub full: bool,
}

/// Which reservation method answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationAction {
    /// `Reserve`.
    Reserve,
    /// `ReleaseReservation`.
    ReleaseReservation,
}

/// `Reserve`'s and `ReleaseReservation`'s result: the reservation made or
/// removed (or that would be, on a dry run). `address` stays at the top
/// level: the undo of `dhcp.release_reservation` reads `{result.address}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationChange {
    /// The method.
    pub action: ReservationAction,
    /// True when nothing was changed (a preview).
    pub dry_run: bool,
    /// The device's MAC.
    pub mac: MacAddr,
    /// The domain of the reservation.
    pub domain: DomainId,
    /// The address reserved or released.
    pub address: Ipv4,
    /// The device after the change (`Reserve` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

impl std::fmt::Display for ReservationChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            ReservationAction::Reserve => write!(
                f,
                "Reserves {} for {} in domain {}.",
                self.address, self.mac, self.domain
            ),
            ReservationAction::ReleaseReservation => write!(
                f,
                "Releases the reservation of {} for {} in domain {}.",
                self.address, self.mac, self.domain
            ),
        }
    }
}

/// The only value of [`Forgotten::action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgetAction {
    /// `Forget`.
    Forget,
}

/// `Forget`'s result: the device as it was before it was forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forgotten {
    /// Always `forget`.
    pub action: ForgetAction,
    /// True when nothing was changed (a preview).
    pub dry_run: bool,
    /// The device before.
    pub device: Device,
}

const IFACE: &str = "org.hearth.Dhcp1";

fn method(m: &str) -> String {
    format!("{IFACE}.{m}")
}

/// `ListDevices`: every device seen or reserved.
pub async fn devices(p: &DhcpProxy<'_>) -> Result<Vec<Device>, HearthError> {
    decode(&method("ListDevices"), &p.list_devices().await?)
}

/// `ShowDevice`: one device by MAC or host name.
pub async fn device(p: &DhcpProxy<'_>, device: &str) -> Result<Device, HearthError> {
    decode(&method("ShowDevice"), &p.show_device(device).await?)
}

/// `Pools`: each served domain's pool.
pub async fn pools(p: &DhcpProxy<'_>) -> Result<Vec<Pool>, HearthError> {
    decode(&method("Pools"), &p.pools().await?)
}

/// `Reserve`.
pub async fn reserve(
    p: &DhcpProxy<'_>,
    device: &str,
    address: &str,
    dry_run: bool,
) -> Result<ReservationChange, HearthError> {
    decode(
        &method("Reserve"),
        &p.reserve(device, address, dry_run).await?,
    )
}

/// `ReleaseReservation`.
pub async fn release_reservation(
    p: &DhcpProxy<'_>,
    device: &str,
    dry_run: bool,
) -> Result<ReservationChange, HearthError> {
    decode(
        &method("ReleaseReservation"),
        &p.release_reservation(device, dry_run).await?,
    )
}

/// `Forget`.
pub async fn forget(
    p: &DhcpProxy<'_>,
    device: &str,
    dry_run: bool,
) -> Result<Forgotten, HearthError> {
    decode(&method("Forget"), &p.forget(device, dry_run).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_device_decodes_and_round_trips() {
        let text = r#"{"mac":"00:00:0c:00:00:01","vendor":"Cisco Systems, Inc","domain":"lan","address":"10.77.1.200","hostname":"cam1","name":"cam1.lan.home.arpa","first_seen":1796300000,"last_seen":1796300420,"lease":{"address":"10.77.1.200","state":"bound","expires":1796301020},"reserved":"10.77.1.200"}"#;
        let d: Device = decode("ShowDevice", text).unwrap();
        assert_eq!(d.lease.as_ref().unwrap().state, LeaseState::Bound);
        assert_eq!(super::super::encode(&d).unwrap(), text);
    }

    #[test]
    fn a_release_keeps_the_address_at_the_top_level() {
        let text = r#"{"action":"release_reservation","dry_run":false,"mac":"00:00:0c:00:00:01","domain":"lan","address":"10.77.1.20"}"#;
        let r: ReservationChange = decode("ReleaseReservation", text).unwrap();
        assert_eq!(r.device, None);
        let v: serde_json::Value =
            serde_json::from_str(&super::super::encode(&r).unwrap()).unwrap();
        assert_eq!(v["address"], "10.77.1.20");
        assert!(decode::<ReservationChange>("x", &text.replace("}", ",\"y\":1}")).is_err());
    }
}

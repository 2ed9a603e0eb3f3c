//! `org.hearth.Dhcp1`: the device inventory and reservations, a thin
//! adapter over the [`Engine`] (docs/dbus/dhcp.md), answering with the
//! JSON of the types of [`hearth_common::contract::dhcp`]. Reads need an operator;
//! changes an admin, previews (`dry_run = true`) an operator: the rule of
//! [`hearth_common::rights`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use hearth_common::contract::dhcp as contract;
use hearth_common::contract::encode;
use hearth_common::mac::MacAddr;
use hearth_common::types::Ipv4;
use hearth_common::{names, HearthError};
use hearth_runtime::Access;
use zbus::message::Header;

use crate::engine::{Engine, LookupError, ReserveError};
use crate::oui::Oui;
use crate::server::{now, Shared};

impl From<LookupError> for HearthError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Unknown(_) => HearthError::NotFound(e.to_string()),
            LookupError::Ambiguous(..) => HearthError::InvalidArgument(e.to_string()),
        }
    }
}

impl From<ReserveError> for HearthError {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::Outside { .. } => HearthError::InvalidArgument(e.to_string()),
            ReserveError::Reserved { .. }
            | ReserveError::Already { .. }
            | ReserveError::Leased { .. } => HearthError::Conflict(e.to_string()),
            ReserveError::NoReservation(_) => HearthError::NotFound(e.to_string()),
            ReserveError::Storage(_) => HearthError::Internal(e.to_string()),
        }
    }
}

/// The served object.
#[derive(Debug, Clone)]
pub struct DhcpInterface {
    shared: Arc<Shared>,
    access: Access,
    oui: Arc<Oui>,
}

/// One device, as `ShowDevice` gives it (see docs/dbus/dhcp.md).
pub fn device_of(engine: &Engine, oui: &Oui, mac: &MacAddr, t: u64) -> contract::Device {
    let s = engine.state();
    let dev = s.devices.get(mac);
    let lease = s
        .leases
        .values()
        .filter(|l| &l.mac == mac && l.expires > t)
        .max_by_key(|l| (l.bound, l.expires));
    let res = s.reservations.get(mac);
    contract::Device {
        mac: *mac,
        vendor: oui.vendor(mac).map(str::to_string),
        domain: dev
            .map(|d| d.domain.clone())
            .or_else(|| res.map(|r| r.domain.clone())),
        address: lease
            .map(|l| l.address)
            .or(dev.and_then(|d| d.address))
            .map(Ipv4::from),
        hostname: dev.and_then(|d| d.hostname.clone()),
        name: lease.and_then(|l| l.dns_name.clone()),
        first_seen: dev.map(|d| d.first_seen),
        last_seen: dev.map(|d| d.last_seen),
        lease: lease.map(|l| contract::Lease {
            address: l.address.into(),
            state: if l.bound {
                contract::LeaseState::Bound
            } else {
                contract::LeaseState::Offered
            },
            expires: l.expires,
        }),
        reserved: res.map(|r| r.address.into()),
    }
}

impl DhcpInterface {
    /// Serves the shared state.
    pub fn new(shared: Arc<Shared>, access: Access, oui: Oui) -> Self {
        DhcpInterface {
            shared,
            access,
            oui: Arc::new(oui),
        }
    }

    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        dry_run: bool,
    ) -> Result<(), HearthError> {
        self.access
            .authorize(conn, hdr, names::DHCP.bus_name, dry_run)
            .await
            .map(|_| ())
    }
}

#[zbus::interface(name = "org.hearth.Dhcp1")]
impl DhcpInterface {
    /// Every device seen or reserved, as a JSON array.
    async fn list_devices(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        let e = self.shared.engine();
        let t = now();
        let mut macs: Vec<MacAddr> = e.state().devices.keys().copied().collect();
        macs.extend(e.state().reservations.keys().copied());
        macs.sort();
        macs.dedup();
        let list: Vec<contract::Device> = macs
            .iter()
            .map(|m| device_of(&e, &self.oui, m, t))
            .collect();
        encode(&list)
    }

    /// One device, by MAC or host name.
    async fn show_device(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        device: String,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        let e = self.shared.engine();
        let mac = e.find_device(&device)?;
        encode(&device_of(&e, &self.oui, &mac, now()))
    }

    /// Each served domain's pool.
    async fn pools(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        encode(&self.shared.pools())
    }

    /// Reserves `address` for a device the inventory knows; the address
    /// must be a host address of the device's domain, not the gateway, and
    /// neither reserved for nor leased to another device.
    async fn reserve(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        device: String,
        address: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let ip: Ipv4Addr = Ipv4::parse_field("address", &address)?.addr();
        let domains = self.shared.domains();
        let mut e = self.shared.engine();
        let mac = e.find_device(&device)?;
        let dom_id = e
            .state()
            .devices
            .get(&mac)
            .map(|d| d.domain.clone())
            .ok_or_else(|| HearthError::NotFound(format!("no device {device:?}")))?;
        let d = domains.get(&dom_id).ok_or_else(|| {
            HearthError::NotFound(format!(
                "the device's domain {dom_id} is not served (deleted, or without dhcp)"
            ))
        })?;
        let r = e.reserve(d, mac, ip, now(), dry_run)?;
        let doc = contract::ReservationChange {
            action: contract::ReservationAction::Reserve,
            dry_run,
            mac,
            domain: r.domain.clone(),
            address: r.address.into(),
            device: Some(device_of(&e, &self.oui, &mac, now())),
        };
        drop(e);
        if !dry_run {
            self.shared.update_status();
        }
        encode(&doc)
    }

    /// Removes a device's reservation.
    async fn release_reservation(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        device: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let mut e = self.shared.engine();
        let mac = match MacAddr::parse_field("device", &device) {
            Ok(m) if e.state().reservations.contains_key(&m) => m,
            _ => e.find_device(&device)?,
        };
        let r = e.release_reservation(mac, dry_run)?;
        encode(&contract::ReservationChange {
            action: contract::ReservationAction::ReleaseReservation,
            dry_run,
            mac,
            domain: r.domain,
            address: r.address.into(),
            device: None,
        })
    }

    /// Forgets a device: lease, name, reservation and inventory entry.
    async fn forget(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        device: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let (doc, names) = {
            let mut e = self.shared.engine();
            let mac = e.find_device(&device)?;
            let before = device_of(&e, &self.oui, &mac, now());
            let names = e.forget(mac, dry_run)?;
            (
                contract::Forgotten {
                    action: contract::ForgetAction::Forget,
                    dry_run,
                    device: before,
                },
                names,
            )
        };
        self.shared.send_names(names);
        encode(&doc)
    }
}

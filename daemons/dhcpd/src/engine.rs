//! The lease engine: which address a client gets, the leases, reservations
//! and the device inventory, persisted atomically (write, fsync, rename)
//! after every lasting change and before the answer leaves (offers are held
//! in memory only). No sockets, no bus:
//! [`Engine::handle`] takes a decoded request and returns the reply to
//! send and the name changes to make in hearth-dnsd.
//!
//! Invariants:
//! * an address whose lease (or offer) has not ended is never given to
//!   another client; a reserved address is never given to another client;
//! * an address a client declined (in use on the link) is set aside for
//!   `decline_hold_secs`;
//! * a full pool refuses the client (no reply), logs it and is reported by
//!   [`Engine::pools`]; nothing else changes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use hearth_common::mac::MacAddr;
use hearth_common::types::{Cidr, DnsName, DomainId};
use serde::{Deserialize, Serialize};

use crate::config::DhcpConfig;

/// A domain being served, as netd describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// The domain.
    pub name: DomainId,
    /// Its bridge (`hb-<name>`).
    pub bridge: String,
    /// Its IPv4 network.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway (this box's address there): router, DNS, server id.
    pub gateway: Ipv4Addr,
    /// First address of the pool.
    pub first: Ipv4Addr,
    /// Last address of the pool.
    pub last: Ipv4Addr,
    /// `network/prefix`.
    pub subnet: Cidr,
}

impl Domain {
    /// A domain from netd's description; the pool is `range` when given
    /// (clipped to the subnet), otherwise every host address but the
    /// gateway. `None` when the subnet holds no host to hand out.
    pub fn new(
        name: DomainId,
        bridge: String,
        network: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        range: Option<(Ipv4Addr, Ipv4Addr)>,
    ) -> Option<Domain> {
        if !(8..=30).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        let net = u32::from(network) & mask;
        let bcast = net | !mask;
        let (mut lo, mut hi) = (net + 1, bcast - 1);
        if let Some((a, b)) = range {
            lo = lo.max(u32::from(a));
            hi = hi.min(u32::from(b));
        } else if u32::from(gateway) == lo {
            lo += 1;
        } else if u32::from(gateway) == hi {
            hi -= 1;
        }
        if lo > hi {
            return None;
        }
        let subnet = Cidr::network_of(IpAddr::V4(Ipv4Addr::from(net)), prefix).ok()?;
        Some(Domain {
            subnet,
            name,
            bridge,
            network: Ipv4Addr::from(net),
            prefix,
            gateway,
            first: Ipv4Addr::from(lo),
            last: Ipv4Addr::from(hi),
        })
    }

    /// The subnet mask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - self.prefix))
    }

    /// Whether `ip` is a host address of the subnet (not the network, the
    /// broadcast or the gateway).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.mask());
        let n = u32::from(self.network);
        let x = u32::from(ip);
        x & mask == n && x != n && x != (n | !mask) && ip != self.gateway
    }

    /// Whether `ip` lies in the pool (and is not the gateway).
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
            && ip != self.gateway
    }

    /// How many addresses the pool hands out.
    pub fn pool_size(&self) -> u32 {
        let n = u32::from(self.last) - u32::from(self.first) + 1;
        if self.in_range(self.gateway) {
            n - 1
        } else {
            n
        }
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(ip))
    }
}

/// One lease or offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Its domain.
    pub domain: DomainId,
    /// The client.
    pub mac: MacAddr,
    /// The address.
    pub address: Ipv4Addr,
    /// When it ends (Unix seconds).
    pub expires: u64,
    /// Acknowledged (true) or only offered.
    pub bound: bool,
    /// The host name the client sent, cleaned.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The name hearth-dhcpd made for it in hearth-dnsd.
    #[serde(default)]
    pub dns_name: Option<String>,
}

/// An address kept for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its domain.
    pub domain: DomainId,
    /// The address.
    pub address: Ipv4Addr,
}

/// A device the inventory knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Its MAC.
    pub mac: MacAddr,
    /// The domain it was last seen in.
    pub domain: DomainId,
    /// The address it last held.
    pub address: Option<Ipv4Addr>,
    /// The host name it last sent.
    pub hostname: Option<String>,
    /// First seen (Unix seconds).
    pub first_seen: u64,
    /// Last seen (Unix seconds).
    pub last_seen: u64,
}

/// The most devices the inventory keeps: a client inventing MACs (one
/// lease each as the pool turns over) cannot grow the state file without
/// bound.
pub const MAX_DEVICES: usize = 4096;

/// Before a new device is recorded: when the inventory is full, forgets
/// the device seen longest ago that holds neither a reservation nor a
/// lease (a full inventory of such devices keeps growing past the bound
/// rather than forget one the owner pinned).
fn make_room(s: &mut State) {
    if s.devices.len() < MAX_DEVICES {
        return;
    }
    let held: std::collections::BTreeSet<MacAddr> = s
        .leases
        .values()
        .map(|l| l.mac)
        .chain(s.reservations.keys().copied())
        .collect();
    let oldest = s
        .devices
        .values()
        .filter(|d| !held.contains(&d.mac))
        .min_by_key(|d| (d.last_seen, d.mac))
        .map(|d| d.mac);
    if let Some(mac) = oldest {
        tracing::info!(%mac, "inventory full: forgetting the device seen longest ago");
        s.devices.remove(&mac);
    }
}

/// What is persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Leases and offers by address.
    pub leases: BTreeMap<Ipv4Addr, Lease>,
    /// Reservations by MAC.
    pub reservations: BTreeMap<MacAddr, Reservation>,
    /// The inventory by MAC.
    pub devices: BTreeMap<MacAddr, Device>,
    /// Addresses declined by a client, set aside until (Unix seconds).
    pub declined: BTreeMap<Ipv4Addr, u64>,
}

/// A change to make in hearth-dnsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameChange {
    /// Make `name` (if free) point at `address`; the lease is `(domain, mac)`.
    Add {
        /// The full name.
        name: DnsName,
        /// The address.
        address: Ipv4Addr,
        /// The lease's client.
        mac: MacAddr,
    },
    /// Remove the record `name` → `address` hearth-dhcpd made.
    Remove {
        /// The full name.
        name: DnsName,
        /// The address.
        address: Ipv4Addr,
    },
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Broadcast on the domain's link (client port).
    Broadcast,
    /// Unicast to a client that has its address (renewal).
    Unicast(Ipv4Addr),
}

/// What [`Engine::handle`] decided.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The reply, if any.
    pub reply: Option<(Message, Destination)>,
    /// Names to add or remove.
    pub names: Vec<NameChange>,
    /// Set when the pool was full and a client was refused.
    pub pool_full: bool,
}

/// Why a request was not served (logged at debug; no reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// Not a BOOTREQUEST, no message type, or no usable hardware address.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Relayed (giaddr set): this server serves its own links only.
    #[error("relayed requests are not served")]
    Relayed,
    /// A message type the server does not answer.
    #[error("ignored message type {0:?}")]
    Ignored(MessageType),
    /// The client chose another server.
    #[error("client chose another server")]
    OtherServer,
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state file could not be read or written.
    #[error("{path}: {source}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not valid.
    #[error("{path}: unreadable lease state: {why}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The engine over the state file.
#[derive(Debug)]
pub struct Engine {
    path: PathBuf,
    state: State,
    lease_secs: u32,
    offer_secs: u32,
    decline_hold_secs: u32,
    zone: String,
}

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "leases.json";

/// Cleans a client's host name into one DNS label: lower case, letters,
/// digits and '-', at most 63 characters, no leading or trailing '-'. Only
/// the first label of a dotted name is kept. `None` when nothing is left.
pub fn clean_hostname(raw: &str) -> Option<String> {
    let first = raw.split('.').next().unwrap_or("");
    let mut s: String = first
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    while s.ends_with('-') {
        s.pop();
    }
    let s = s.trim_start_matches('-').to_string();
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}

impl Engine {
    /// Opens (or starts) the state in `state_dir`.
    pub fn open(cfg: &DhcpConfig, state_dir: &Path) -> Result<Engine, EngineError> {
        let path = state_dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(EngineError::Storage { path, source }),
        };
        Ok(Engine {
            path,
            state,
            lease_secs: cfg.lease_secs,
            offer_secs: cfg.offer_secs,
            decline_hold_secs: cfg.decline_hold_secs,
            zone: cfg.zone().to_string(),
        })
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Writes the state (write, fsync, rename).
    pub fn save(&self) -> Result<(), EngineError> {
        let storage = |source| EngineError::Storage {
            path: self.path.clone(),
            source,
        };
        // Compact: the file is rewritten on every lasting change.
        let data =
            serde_json::to_vec(&self.state).map_err(|e| storage(std::io::Error::other(e)))?;
        hearth_common::fsutil::write_atomic(&self.path, &data, 0o600).map_err(storage)
    }

    /// Applies a change that need not survive a restart (an offer) in
    /// memory only.
    fn hold(&mut self, change: impl FnOnce(&mut State)) {
        change(&mut self.state);
    }

    /// Applies `change` to a copy of the state, writes it, and keeps it
    /// only once it is on disk.
    fn commit(&mut self, change: impl FnOnce(&mut State)) -> Result<(), EngineError> {
        let mut next = self.state.clone();
        change(&mut next);
        if next == self.state {
            return Ok(());
        }
        let old = std::mem::replace(&mut self.state, next);
        if let Err(e) = self.save() {
            self.state = old;
            return Err(e);
        }
        Ok(())
    }

    /// The full DNS name of `host` in `domain`.
    pub fn name_for(&self, host: &str, domain: &DomainId) -> Option<DnsName> {
        DnsName::parse(&format!("{host}.{domain}.{}", self.zone)).ok()
    }

    /// Whether `ip` is taken for anyone but `mac` at `now`.
    fn taken_by_other(&self, ip: Ipv4Addr, mac: MacAddr, now: u64) -> bool {
        let s = &self.state;
        if s.leases
            .get(&ip)
            .is_some_and(|l| l.mac != mac && l.expires > now)
        {
            return true;
        }
        if s.reservations
            .iter()
            .any(|(m, r)| *m != mac && r.address == ip)
        {
            return true;
        }
        s.declined.get(&ip).is_some_and(|until| *until > now)
    }

    /// The address `mac` should get in `d`, or `None` (pool full).
    fn choose(
        &self,
        d: &Domain,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let s = &self.state;
        if let Some(r) = s.reservations.get(&mac).filter(|r| r.domain == d.name) {
            return (!self.taken_by_other(r.address, mac, now)).then_some(r.address);
        }
        let usable = |ip: Ipv4Addr| d.in_pool(ip) && !self.taken_by_other(ip, mac, now);
        let current = s
            .leases
            .values()
            .find(|l| l.mac == mac && l.domain == d.name)
            .map(|l| l.address);
        let previous = s
            .devices
            .get(&mac)
            .filter(|dev| dev.domain == d.name)
            .and_then(|dev| dev.address);
        for ip in [current, requested, previous].into_iter().flatten() {
            if usable(ip) {
                return Some(ip);
            }
        }
        // Never-leased addresses first, then ones whose lease has ended.
        let range = u32::from(d.first)..=u32::from(d.last);
        range
            .clone()
            .map(Ipv4Addr::from)
            .find(|ip| usable(*ip) && !s.leases.contains_key(ip))
            .or_else(|| range.map(Ipv4Addr::from).find(|ip| usable(*ip)))
    }

    /// Whether `mac` may have `ip` in `d` now.
    fn acceptable(&self, d: &Domain, mac: MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        if let Some(r) = self
            .state
            .reservations
            .get(&mac)
            .filter(|r| r.domain == d.name)
        {
            return r.address == ip && !self.taken_by_other(ip, mac, now);
        }
        d.in_pool(ip) && !self.taken_by_other(ip, mac, now)
    }

    /// Handles one decoded request that arrived on `d`'s link.
    pub fn handle(&mut self, d: &Domain, req: &Message, now: u64) -> Result<Outcome, Dropped> {
        if req.opcode() != Opcode::BootRequest {
            return Err(Dropped::Malformed("not a BOOTREQUEST"));
        }
        if req.hlen() != 6 {
            return Err(Dropped::Malformed("hardware address is not 6 octets"));
        }
        let mac =
            MacAddr::from_slice(req.chaddr()).ok_or(Dropped::Malformed("no hardware address"))?;
        if mac.octets() == [0; 6] || mac.octets()[0] & 1 == 1 {
            return Err(Dropped::Malformed("not a unicast hardware address"));
        }
        if !req.giaddr().is_unspecified() {
            return Err(Dropped::Relayed);
        }
        let mtype = req
            .opts()
            .msg_type()
            .ok_or(Dropped::Malformed("no DHCP message type"))?;
        let requested = match req.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let server_id = match req.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let hostname = match req.opts().get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => clean_hostname(h),
            _ => None,
        };
        match mtype {
            MessageType::Discover => Ok(self.discover(d, req, mac, requested, now)),
            MessageType::Request => {
                if server_id.is_some_and(|s| s != d.gateway) {
                    // It took another server's offer: free ours.
                    let ours: Vec<Ipv4Addr> = self
                        .state
                        .leases
                        .values()
                        .filter(|l| l.mac == mac && l.domain == d.name && !l.bound)
                        .map(|l| l.address)
                        .collect();
                    let _ = self.commit(|s| {
                        for ip in ours {
                            s.leases.remove(&ip);
                        }
                    });
                    return Err(Dropped::OtherServer);
                }
                let ip = requested.unwrap_or(req.ciaddr());
                Ok(self.request(d, req, mac, ip, hostname, now))
            }
            MessageType::Decline => Ok(self.decline(d, mac, requested, now)),
            MessageType::Release => Ok(self.release(d, mac, req.ciaddr())),
            MessageType::Inform => Ok(Outcome {
                reply: Some((
                    self.reply(d, req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, false),
                    Destination::Unicast(req.ciaddr()),
                )),
                ..Outcome::default()
            }),
            other => Err(Dropped::Ignored(other)),
        }
    }

    fn discover(
        &mut self,
        d: &Domain,
        req: &Message,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Outcome {
        let Some(ip) = self.choose(d, mac, requested, now) else {
            tracing::warn!(
                domain = %d.name, %mac,
                "pool full: {} addresses {}-{} all leased, reserved or set aside; client refused",
                d.pool_size(), d.first, d.last
            );
            return Outcome {
                pool_full: true,
                ..Outcome::default()
            };
        };
        let hold = now + u64::from(self.offer_secs);
        // An ended lease of another client at this address loses its name.
        let stale_name = self
            .state
            .leases
            .get(&ip)
            .filter(|l| l.mac != mac)
            .and_then(remove_name);
        // An offer is not a lease: it is held in memory (and written with
        // the next lasting change), so a DISCOVER costs no disk write.
        self.hold(|s| {
            // One offer per client and domain; a bound lease elsewhere ends
            // (and its name goes) only when the client takes the new one.
            s.leases
                .retain(|a, l| l.bound || !(l.mac == mac && l.domain == d.name && *a != ip));
            match s.leases.get_mut(&ip) {
                Some(l) if l.mac == mac && l.bound && l.expires > now => {}
                _ => {
                    s.leases.insert(
                        ip,
                        Lease {
                            domain: d.name.clone(),
                            mac,
                            address: ip,
                            expires: hold,
                            bound: false,
                            hostname: None,
                            dns_name: None,
                        },
                    );
                }
            }
        });
        tracing::info!(domain = %d.name, %mac, %ip, "offer");
        Outcome {
            reply: Some((
                self.reply(d, req, MessageType::Offer, ip, true),
                Destination::Broadcast,
            )),
            names: stale_name.into_iter().collect(),
            ..Outcome::default()
        }
    }

    fn request(
        &mut self,
        d: &Domain,
        req: &Message,
        mac: MacAddr,
        ip: Ipv4Addr,
        hostname: Option<String>,
        now: u64,
    ) -> Outcome {
        if ip.is_unspecified() || !self.acceptable(d, mac, ip, now) {
            tracing::info!(domain = %d.name, %mac, %ip, "nak: the address is not this client's to have");
            return Outcome {
                reply: Some((
                    self.reply(d, req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, false),
                    Destination::Broadcast,
                )),
                ..Outcome::default()
            };
        }
        let expires = now + u64::from(self.lease_secs);
        let old_same: Vec<Lease> = self
            .state
            .leases
            .values()
            .filter(|l| l.mac == mac && l.domain == d.name && l.address != ip)
            .cloned()
            .collect();
        let prev = self.state.leases.get(&ip).cloned();
        let mut names: Vec<NameChange> = old_same.iter().filter_map(remove_name).collect();
        // The name stays when the host name did not change.
        let keep_name = prev
            .as_ref()
            .filter(|l| l.mac == mac && l.hostname == hostname)
            .and_then(|l| l.dns_name.clone());
        if keep_name.is_none() {
            if let Some(l) = prev.as_ref().filter(|l| l.mac == mac) {
                names.extend(remove_name(l));
            }
            if let Some(name) = hostname.as_deref().and_then(|h| self.name_for(h, &d.name)) {
                names.push(NameChange::Add {
                    name,
                    address: ip,
                    mac,
                });
            }
        }
        let committed = self.commit(|s| {
            for l in &old_same {
                s.leases.remove(&l.address);
            }
            s.leases.insert(
                ip,
                Lease {
                    domain: d.name.clone(),
                    mac,
                    address: ip,
                    expires,
                    bound: true,
                    hostname: hostname.clone(),
                    dns_name: keep_name,
                },
            );
            if !s.devices.contains_key(&mac) {
                make_room(s);
            }
            let dev = s.devices.entry(mac).or_insert_with(|| Device {
                mac,
                domain: d.name.clone(),
                address: None,
                hostname: None,
                first_seen: now,
                last_seen: now,
            });
            dev.domain = d.name.clone();
            dev.address = Some(ip);
            if hostname.is_some() {
                dev.hostname = hostname.clone();
            }
            dev.last_seen = now;
        });
        if let Err(e) = committed {
            tracing::error!("cannot record the lease, not acknowledging: {e}");
            return Outcome::default();
        }
        tracing::info!(domain = %d.name, %mac, %ip, hostname = hostname.as_deref().unwrap_or(""), "ack");
        let dest = if req.ciaddr().is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Unicast(req.ciaddr())
        };
        Outcome {
            reply: Some((self.reply(d, req, MessageType::Ack, ip, true), dest)),
            names,
            pool_full: false,
        }
    }

    fn decline(
        &mut self,
        d: &Domain,
        mac: MacAddr,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Outcome {
        let Some(ip) = requested.filter(|ip| d.is_host(*ip)) else {
            return Outcome::default();
        };
        let lease = self.state.leases.get(&ip).filter(|l| l.mac == mac).cloned();
        if lease.is_none() {
            return Outcome::default();
        }
        let until = now + u64::from(self.decline_hold_secs);
        tracing::warn!(domain = %d.name, %mac, %ip, "address conflict: the client found it in use on the link (DHCPDECLINE); set aside for {} s", self.decline_hold_secs);
        if let Err(e) = self.commit(|s| {
            s.leases.remove(&ip);
            s.declined.insert(ip, until);
        }) {
            tracing::error!("cannot record the decline: {e}");
        }
        Outcome {
            names: lease.iter().filter_map(remove_name).collect(),
            ..Outcome::default()
        }
    }

    fn release(&mut self, d: &Domain, mac: MacAddr, ip: Ipv4Addr) -> Outcome {
        let Some(lease) = self
            .state
            .leases
            .get(&ip)
            .filter(|l| l.mac == mac && l.domain == d.name)
            .cloned()
        else {
            return Outcome::default();
        };
        tracing::info!(domain = %d.name, %mac, %ip, "released");
        if let Err(e) = self.commit(|s| {
            s.leases.remove(&ip);
        }) {
            tracing::error!("cannot record the release: {e}");
        }
        Outcome {
            names: remove_name(&lease).into_iter().collect(),
            ..Outcome::default()
        }
    }

    fn reply(
        &self,
        d: &Domain,
        req: &Message,
        mtype: MessageType,
        yiaddr: Ipv4Addr,
        lease: bool,
    ) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootReply)
            .set_xid(req.xid())
            .set_flags(req.flags())
            .set_chaddr(req.chaddr())
            .set_yiaddr(yiaddr)
            .set_siaddr(Ipv4Addr::UNSPECIFIED)
            .set_giaddr(Ipv4Addr::UNSPECIFIED);
        if mtype == MessageType::Inform || (mtype == MessageType::Ack && yiaddr.is_unspecified()) {
            m.set_ciaddr(req.ciaddr());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(mtype));
        o.insert(DhcpOption::ServerIdentifier(d.gateway));
        if mtype == MessageType::Nak {
            return m;
        }
        if lease {
            o.insert(DhcpOption::AddressLeaseTime(self.lease_secs));
            o.insert(DhcpOption::Renewal(self.lease_secs / 2));
            o.insert(DhcpOption::Rebinding(self.lease_secs / 8 * 7));
        }
        o.insert(DhcpOption::SubnetMask(d.mask()));
        o.insert(DhcpOption::Router(vec![d.gateway]));
        o.insert(DhcpOption::DomainNameServer(vec![d.gateway]));
        let search = format!("{}.{}", d.name, self.zone);
        o.insert(DhcpOption::DomainName(search.clone()));
        let names: Vec<dhcproto::Name> = [search.as_str(), self.zone.as_str()]
            .iter()
            .filter_map(|n| dhcproto::Name::from_utf8(format!("{n}.")).ok())
            .collect();
        if !names.is_empty() {
            o.insert(DhcpOption::DomainSearch(names));
        }
        m
    }

    /// Ends every lease and offer whose time has passed and frees declined
    /// addresses; returns the names to remove.
    pub fn expire(&mut self, now: u64) -> Vec<NameChange> {
        let ended: Vec<Lease> = self
            .state
            .leases
            .values()
            .filter(|l| l.expires <= now)
            .cloned()
            .collect();
        let freed = self.state.declined.values().any(|u| *u <= now);
        if ended.is_empty() && !freed {
            return Vec::new();
        }
        for l in ended.iter().filter(|l| l.bound) {
            tracing::info!(domain = %l.domain, mac = %l.mac, ip = %l.address, "lease ended");
        }
        if let Err(e) = self.commit(|s| {
            for l in &ended {
                s.leases.remove(&l.address);
            }
            s.declined.retain(|_, u| *u > now);
        }) {
            tracing::error!("cannot record ended leases: {e}");
            return Vec::new();
        }
        ended.iter().filter_map(remove_name).collect()
    }

    /// Ends the leases of a domain no longer served (its reservations go
    /// too); returns the names to remove.
    pub fn drop_domain(&mut self, domain: &DomainId) -> Vec<NameChange> {
        let ended: Vec<Lease> = self
            .state
            .leases
            .values()
            .filter(|l| &l.domain == domain)
            .cloned()
            .collect();
        let has_res = self
            .state
            .reservations
            .values()
            .any(|r| &r.domain == domain);
        if ended.is_empty() && !has_res {
            return Vec::new();
        }
        if let Err(e) = self.commit(|s| {
            s.leases.retain(|_, l| &l.domain != domain);
            s.reservations.retain(|_, r| &r.domain != domain);
        }) {
            tracing::error!("cannot drop the leases of {domain}: {e}");
            return Vec::new();
        }
        ended.iter().filter_map(remove_name).collect()
    }

    /// Records that hearth-dnsd now holds `name` for the lease of `mac` at
    /// `address`. False when that lease is gone (the caller removes the
    /// name again).
    pub fn name_made(&mut self, mac: MacAddr, address: Ipv4Addr, name: &DnsName) -> bool {
        if self.state.leases.get(&address).is_none_or(|l| l.mac != mac) {
            return false;
        }
        let n = name.as_str().to_string();
        match self.commit(|s| {
            if let Some(l) = s.leases.get_mut(&address) {
                l.dns_name = Some(n);
            }
        }) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("cannot record the name {name}: {e}");
                false
            }
        }
    }

    /// Whether another lease of this daemon holds `name`.
    pub fn name_in_use(&self, name: &DnsName) -> bool {
        self.state
            .leases
            .values()
            .any(|l| l.dns_name.as_deref() == Some(name.as_str()))
    }

    /// Finds a device by MAC or host name.
    pub fn find_device(&self, device: &str) -> Result<MacAddr, LookupError> {
        if let Ok(mac) = MacAddr::parse_field("device", device) {
            if self.state.devices.contains_key(&mac) {
                return Ok(mac);
            }
            return Err(LookupError::Unknown(device.to_string()));
        }
        let want = device.to_ascii_lowercase();
        let host = want.split('.').next().unwrap_or("");
        let found: Vec<MacAddr> = self
            .state
            .devices
            .values()
            .filter(|d| {
                d.hostname.as_deref() == Some(host)
                    && (want == host
                        || self
                            .name_for(host, &d.domain)
                            .is_some_and(|n| n.as_str() == want))
            })
            .map(|d| d.mac)
            .collect();
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(LookupError::Unknown(device.to_string())),
            many => Err(LookupError::Ambiguous(
                device.to_string(),
                many.iter().map(ToString::to_string).collect(),
            )),
        }
    }

    /// Reserves `address` for the device `mac` (which the inventory knows)
    /// in its domain `d`.
    pub fn reserve(
        &mut self,
        d: &Domain,
        mac: MacAddr,
        address: Ipv4Addr,
        now: u64,
        dry_run: bool,
    ) -> Result<Reservation, ReserveError> {
        if !d.is_host(address) {
            return Err(ReserveError::Outside {
                address,
                domain: d.name.to_string(),
                subnet: format!("{}/{}", d.network, d.prefix),
                gateway: d.gateway,
            });
        }
        if let Some((m, _)) = self
            .state
            .reservations
            .iter()
            .find(|(m, r)| r.address == address && **m != mac)
        {
            return Err(ReserveError::Reserved {
                address,
                mac: m.to_string(),
            });
        }
        if let Some(l) = self
            .state
            .leases
            .get(&address)
            .filter(|l| l.mac != mac && l.expires > now)
        {
            return Err(ReserveError::Leased {
                address,
                mac: l.mac.to_string(),
            });
        }
        if let Some(r) = self.state.reservations.get(&mac) {
            if r.address == address && r.domain == d.name {
                return Err(ReserveError::Already {
                    address,
                    mac: mac.to_string(),
                });
            }
        }
        let r = Reservation {
            domain: d.name.clone(),
            address,
        };
        if !dry_run {
            let rr = r.clone();
            self.commit(|s| {
                s.reservations.insert(mac, rr);
            })
            .map_err(|e| ReserveError::Storage(e.to_string()))?;
            tracing::info!(domain = %d.name, %mac, %address, "reserved");
        }
        Ok(r)
    }

    /// Removes the reservation of `mac`.
    pub fn release_reservation(
        &mut self,
        mac: MacAddr,
        dry_run: bool,
    ) -> Result<Reservation, ReserveError> {
        let r = self
            .state
            .reservations
            .get(&mac)
            .cloned()
            .ok_or_else(|| ReserveError::NoReservation(mac.to_string()))?;
        if !dry_run {
            self.commit(|s| {
                s.reservations.remove(&mac);
            })
            .map_err(|e| ReserveError::Storage(e.to_string()))?;
            tracing::info!(%mac, address = %r.address, "reservation released");
        }
        Ok(r)
    }

    /// Forgets a device: its leases (names to remove returned), its
    /// reservation and its inventory entry.
    pub fn forget(&mut self, mac: MacAddr, dry_run: bool) -> Result<Vec<NameChange>, ReserveError> {
        let leases: Vec<Lease> = self
            .state
            .leases
            .values()
            .filter(|l| l.mac == mac)
            .cloned()
            .collect();
        if dry_run {
            return Ok(Vec::new());
        }
        self.commit(|s| {
            s.leases.retain(|_, l| l.mac != mac);
            s.reservations.remove(&mac);
            s.devices.remove(&mac);
        })
        .map_err(|e| ReserveError::Storage(e.to_string()))?;
        tracing::info!(%mac, "device forgotten");
        Ok(leases.iter().filter_map(remove_name).collect())
    }

    /// The pool of `d` at `now`.
    pub fn pool_status(&self, d: &Domain, now: u64) -> PoolStatus {
        let s = &self.state;
        let in_pool = |ip: &Ipv4Addr| d.in_pool(*ip);
        let leased = s
            .leases
            .values()
            .filter(|l| l.domain == d.name && l.bound && l.expires > now && in_pool(&l.address))
            .count() as u32;
        let offered = s
            .leases
            .values()
            .filter(|l| l.domain == d.name && !l.bound && l.expires > now && in_pool(&l.address))
            .count() as u32;
        let reserved = s
            .reservations
            .values()
            .filter(|r| r.domain == d.name)
            .count() as u32;
        let size = d.pool_size();
        let free = (u32::from(d.first)..=u32::from(d.last))
            .map(Ipv4Addr::from)
            .filter(|ip| d.in_pool(*ip))
            .filter(|ip| {
                s.leases.get(ip).is_none_or(|l| l.expires <= now)
                    && !s.reservations.values().any(|r| r.address == *ip)
                    && s.declined.get(ip).is_none_or(|u| *u <= now)
            })
            .count() as u32;
        PoolStatus {
            domain: d.name.clone(),
            bridge: d.bridge.clone(),
            subnet: d.subnet,
            gateway: d.gateway.into(),
            first: d.first.into(),
            last: d.last.into(),
            size,
            leased,
            offered,
            reserved,
            free,
            full: free == 0,
        }
    }
}

fn remove_name(l: &Lease) -> Option<NameChange> {
    let name = DnsName::parse(l.dns_name.as_deref()?).ok()?;
    Some(NameChange::Remove {
        name,
        address: l.address,
    })
}

/// One domain's pool, for `Pools` and the status line.
pub type PoolStatus = hearth_common::contract::dhcp::Pool;

/// A device that could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Nothing matches.
    #[error("no device {0:?} in the inventory (give a MAC or a host name it has sent)")]
    Unknown(String),
    /// Several devices sent that host name.
    #[error("{0:?} names several devices ({list}); give the MAC", list = .1.join(", "))]
    Ambiguous(String, Vec<String>),
}

/// A reservation change that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// Outside the device's domain.
    #[error("address {address} is not a host address of the device's domain {domain} ({subnet}, gateway {gateway})")]
    Outside {
        /// The address.
        address: Ipv4Addr,
        /// The domain.
        domain: String,
        /// Its subnet.
        subnet: String,
        /// Its gateway.
        gateway: Ipv4Addr,
    },
    /// Reserved for another device.
    #[error("address {address} is already reserved for {mac}")]
    Reserved {
        /// The address.
        address: Ipv4Addr,
        /// The other device.
        mac: String,
    },
    /// The same reservation exists.
    #[error("address {address} is already reserved for {mac}")]
    Already {
        /// The address.
        address: Ipv4Addr,
        /// The device.
        mac: String,
    },
    /// Leased to another device now.
    #[error("address {address} is leased to {mac} now")]
    Leased {
        /// The address.
        address: Ipv4Addr,
        /// The other device.
        mac: String,
    },
    /// The device has no reservation.
    #[error("device {0} has no reservation")]
    NoReservation(String),
    /// The state could not be written (nothing changed).
    #[error("{0}")]
    Storage(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use dhcproto::v4::Flags;

    fn cfg() -> DhcpConfig {
        hearth_common::config::parse(Path::new("t.toml"), "").unwrap()
    }

    #[test]
    fn a_full_inventory_forgets_the_device_seen_longest_ago_but_never_a_held_one() {
        let cams = DomainId::parse("cams").unwrap();
        let mac_of = |i: usize| {
            let b = (i as u32).to_be_bytes();
            MacAddr::parse(&format!(
                "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
                b[0], b[1], b[2], b[3]
            ))
            .unwrap()
        };
        let mut s = State::default();
        for i in 0..MAX_DEVICES {
            s.devices.insert(
                mac_of(i),
                Device {
                    mac: mac_of(i),
                    domain: cams.clone(),
                    address: None,
                    hostname: None,
                    first_seen: 100 + i as u64,
                    last_seen: 100 + i as u64,
                },
            );
        }
        // The two oldest are held: one by a lease, one by a reservation.
        s.leases.insert(
            "10.9.0.5".parse().unwrap(),
            Lease {
                domain: cams.clone(),
                mac: mac_of(0),
                address: "10.9.0.5".parse().unwrap(),
                expires: 10_000,
                bound: true,
                hostname: None,
                dns_name: None,
            },
        );
        s.reservations.insert(
            mac_of(1),
            Reservation {
                domain: cams.clone(),
                address: "10.9.0.6".parse().unwrap(),
            },
        );
        make_room(&mut s);
        assert_eq!(s.devices.len(), MAX_DEVICES - 1);
        assert!(s.devices.contains_key(&mac_of(0)));
        assert!(s.devices.contains_key(&mac_of(1)));
        assert!(
            !s.devices.contains_key(&mac_of(2)),
            "the oldest free one goes"
        );
        // Below the bound nothing is forgotten.
        make_room(&mut s);
        assert_eq!(s.devices.len(), MAX_DEVICES - 1);
    }

    fn dom(first: &str, last: &str) -> Domain {
        Domain::new(
            DomainId::parse("cams").unwrap(),
            "hb-cams".into(),
            "10.9.0.0".parse().unwrap(),
            24,
            "10.9.0.1".parse().unwrap(),
            Some((first.parse().unwrap(), last.parse().unwrap())),
        )
        .unwrap()
    }

    fn msg(mac: u8, t: MessageType, req: Option<&str>, host: Option<&str>) -> Message {
        let chaddr = [0x00, 0x11, 0x22, 0x33, 0x44, mac];
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &chaddr,
        );
        m.set_flags(Flags::default().set_broadcast());
        m.opts_mut().insert(DhcpOption::MessageType(t));
        if let Some(r) = req {
            m.opts_mut()
                .insert(DhcpOption::RequestedIpAddress(r.parse().unwrap()));
        }
        if let Some(h) = host {
            m.opts_mut().insert(DhcpOption::Hostname(h.into()));
        }
        m
    }

    fn lease(
        e: &mut Engine,
        d: &Domain,
        mac: u8,
        host: Option<&str>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        let o = e
            .handle(d, &msg(mac, MessageType::Discover, None, None), now)
            .unwrap();
        let offered = o.reply?.0.yiaddr();
        let o = e
            .handle(
                d,
                &msg(mac, MessageType::Request, Some(&offered.to_string()), host),
                now,
            )
            .unwrap();
        let (reply, _) = o.reply.unwrap();
        assert_eq!(reply.opts().msg_type(), Some(MessageType::Ack));
        Some(reply.yiaddr())
    }

    #[test]
    fn leases_persist_and_are_never_handed_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let d = dom("10.9.0.10", "10.9.0.13");
        let mut e = Engine::open(&cfg(), dir.path()).unwrap();
        let a = lease(&mut e, &d, 1, Some("Cam One"), 100).unwrap();
        assert_eq!(a, "10.9.0.10".parse::<Ipv4Addr>().unwrap());
        assert_eq!(e.state().leases[&a].hostname.as_deref(), Some("cam-one"));
        // Restart: the same client keeps its address, another gets another.
        let mut e = Engine::open(&cfg(), dir.path()).unwrap();
        assert_eq!(lease(&mut e, &d, 1, None, 200), Some(a));
        let b = lease(&mut e, &d, 2, None, 200).unwrap();
        assert_ne!(a, b);
        // Client 2 cannot take client 1's address.
        let o = e
            .handle(
                &d,
                &msg(2, MessageType::Request, Some(&a.to_string()), None),
                200,
            )
            .unwrap();
        assert_eq!(o.reply.unwrap().0.opts().msg_type(), Some(MessageType::Nak));
        // Four addresses, five clients: the fifth is refused.
        assert!(lease(&mut e, &d, 3, None, 200).is_some());
        assert!(lease(&mut e, &d, 4, None, 200).is_some());
        let o = e
            .handle(&d, &msg(5, MessageType::Discover, None, None), 200)
            .unwrap();
        assert!(o.reply.is_none() && o.pool_full);
        assert!(e.pool_status(&d, 200).full);
        // After the leases end the pool is free again.
        let names = e.expire(200 + 3601);
        assert!(names.is_empty());
        assert_eq!(e.pool_status(&d, 200 + 3601).free, 4);
    }

    #[test]
    fn reservations_declines_and_malformed_requests() {
        let dir = tempfile::tempdir().unwrap();
        let d = dom("10.9.0.10", "10.9.0.20");
        let mut e = Engine::open(&cfg(), dir.path()).unwrap();
        lease(&mut e, &d, 1, Some("cam"), 10).unwrap();
        let mac = MacAddr::parse("00:11:22:33:44:01").unwrap();
        assert_eq!(e.find_device("cam").unwrap(), mac);
        assert_eq!(e.find_device("cam.cams.home.arpa").unwrap(), mac);
        assert!(matches!(
            e.find_device("nope"),
            Err(LookupError::Unknown(_))
        ));
        let outside: Ipv4Addr = "10.9.1.5".parse().unwrap();
        assert!(matches!(
            e.reserve(&d, mac, outside, 10, false),
            Err(ReserveError::Outside { .. })
        ));
        assert!(matches!(
            e.reserve(&d, mac, d.gateway, 10, false),
            Err(ReserveError::Outside { .. })
        ));
        let r: Ipv4Addr = "10.9.0.50".parse().unwrap();
        let before = e.state().clone();
        e.reserve(&d, mac, r, 10, true).unwrap();
        assert_eq!(e.state(), &before, "a dry run changes nothing");
        e.reserve(&d, mac, r, 10, false).unwrap();
        let other = MacAddr::parse("00:11:22:33:44:02").unwrap();
        assert!(matches!(
            e.reserve(&d, other, r, 10, false),
            Err(ReserveError::Reserved { .. })
        ));
        // The reserved address is handed out (outside the range, too).
        let o = e
            .handle(&d, &msg(1, MessageType::Discover, None, None), 20)
            .unwrap();
        assert_eq!(o.reply.unwrap().0.yiaddr(), r);
        // A decline sets it aside.
        let o = e
            .handle(
                &d,
                &msg(1, MessageType::Decline, Some("10.9.0.50"), None),
                20,
            )
            .unwrap();
        assert!(o.reply.is_none());
        assert!(e.state().declined.contains_key(&r));
        // Malformed: not a request, no type, multicast MAC, relayed.
        let mut m = msg(9, MessageType::Discover, None, None);
        m.set_opcode(Opcode::BootReply);
        assert!(e.handle(&d, &m, 20).is_err());
        let mut m = msg(9, MessageType::Discover, None, None);
        m.opts_mut().remove(OptionCode::MessageType);
        assert!(e.handle(&d, &m, 20).is_err());
        let mut m = msg(9, MessageType::Discover, None, None);
        m.set_chaddr(&[0x01, 0, 0, 0, 0, 9]);
        assert!(e.handle(&d, &m, 20).is_err());
        let mut m = msg(9, MessageType::Discover, None, None);
        m.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(e.handle(&d, &m, 20).unwrap_err(), Dropped::Relayed);
        // Garbage never decodes into a request.
        for junk in [&b""[..], &[0u8; 10][..], &[1u8; 300][..]] {
            assert!(crate::server::decode(junk).is_none_or(|m| e.handle(&d, &m, 20).is_err()));
        }
    }

    #[test]
    fn hostnames_are_cleaned_into_one_label() {
        assert_eq!(
            clean_hostname("Living-Room TV.local").as_deref(),
            Some("living-room-tv")
        );
        assert_eq!(clean_hostname("--"), None);
        assert_eq!(clean_hostname(""), None);
        assert_eq!(clean_hostname(&"a".repeat(80)).map(|s| s.len()), Some(63));
    }
}

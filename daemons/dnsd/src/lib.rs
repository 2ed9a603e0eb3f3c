//! hearth-dnsd: the appliance's authoritative DNS for the home zones.
//!
//! * [`config`]: the zones served (each with SOA and NS; the name server's
//!   host and address configurable) and the listen addresses.
//! * [`engine`]: the zone engine: A, AAAA and CNAME records, their rules,
//!   SOA serials, atomic persistence in the state directory. No bus, no
//!   sockets.
//! * [`answer`]: authoritative answers from an immutable snapshot of the
//!   zone data (NXDOMAIN, NODATA, CNAME chasing inside the zones, REFUSED
//!   outside them).
//! * [`server`]: the UDP/TCP DNS server over the live snapshot: TCP through
//!   hickory-server, UDP through our own sockets (one per core) with
//!   hickory's decoder and encoder behind the fast path.
//! * [`fast`]: the UDP fast path: the common answers encoded per snapshot.
//! * [`gateways`]: answering on every domain's gateway address, as
//!   hearth-netd lists them over the bus (`gateway_port`).
//! * [`dbus`]: `org.hearth.Dns1`, a thin adapter over the engine (parse
//!   and authorize, then call the engine; errors mapped to HearthError),
//!   and the daemon's start-up.
//!
//! Invariants: records change only through the engine (and so only over
//! D-Bus in the daemon); every change raises the zone's SOA serial and is on
//! disk before any query sees it; a refused change changes nothing.
//!
//! It must never recurse, forward or answer for a name outside its zones:
//! it is never an open resolver. It holds no secrets.
#![forbid(unsafe_code)]

pub mod answer;
pub mod config;
pub mod dbus;
pub mod engine;
pub mod fast;
pub mod gateways;
pub mod server;

pub use config::{DaemonSettings, DnsSettings, ZoneConfig};
pub use engine::{
    Engine, NameRecords, Op, Record, RecordType, Zone, ZoneDiff, ZoneError, ZoneView,
};
pub use server::DnsServer;

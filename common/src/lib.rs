//! The contract every Hearth component shares.
//!
//! * [`names`]: well-known bus names, object paths and interface names.
//! * [`error`]: the `org.hearth.Error.*` D-Bus errors, returned by every daemon
//!   and understood by every client.
//! * [`types`]: validated value types (domain identifier, DNS name, address,
//!   CIDR, port, protocol). A value of one of these types is valid: parse at the
//!   edge, never re-check downstream.
//! * [`config`]: loading TOML files that reject unknown keys, with errors that
//!   name the file and the line.
//! * [`subnets`]: where a network domain's addresses may lie (private space,
//!   prefix bounds, no overlap), the rule hearth-netd enforces on every path.
//! * [`fsutil`]: atomic state writes (write, fsync, rename).
//! * [`mac`]: the validated MAC address of a device (hearth-dhcpd's inventory).
//! * [`spec`]: what a playbook asks for (identity, risk, typed parameters),
//!   read by the gate, the interpreter and hearthctl alike.
//! * [`contract`]: the typed shapes of every daemon's results (decision 001).
//! * [`rights`]: who may call which daemon method, the one rule the daemons
//!   apply to a direct caller and the intent gate to a plan's requester.
//!
//! This crate performs no I/O on the bus and holds no secrets.
#![forbid(unsafe_code)]

pub mod config;
pub mod contract;
pub mod error;
pub mod fsutil;
pub mod mac;
pub mod names;
pub mod proxies;
pub mod rights;
pub mod spec;
pub mod subnets;
pub mod types;

pub use error::HearthError;

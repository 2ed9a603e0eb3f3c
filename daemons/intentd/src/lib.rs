//! hearth-intentd's engine: the only way a request becomes a change.
//!
//! * [`gate`]: requests (text or structured) -> plans from the verified
//!   catalog -> approvals ([`policy`]) -> execution with rollback -> audit.
//! * [`exec`]: the [`exec::Executor`] that calls the daemons (D-Bus, through
//!   the allow-list only) and the [`exec::Measurer`] (hearth-attestd).
//! * [`audit`]: the append-only, hash-chained JSON-lines log and its verifier.
//! * [`interpret`]: the seam to the language model (hearth-inference).
//! * [`eval`]: `hearth-intentd eval …`, the evaluation's entry point (a hook).
//!
//! Invariants: only verified, signed playbooks run, and only their
//! allow-listed calls; a request maps to exactly one playbook or is refused
//! with nothing run; parameters are validated by the shared types whatever
//! produced them; nothing runs without its approvals and without an audit
//! record; a failed step undoes the completed ones in reverse order.
//! The gate never runs a shell or a command line.
#![forbid(unsafe_code)]

pub mod audit;
pub mod config;
pub mod dbus;
pub mod eval;
pub mod exec;
pub mod gate;
pub mod interpret;
pub mod model;
pub mod policy;

#[cfg(test)]
mod bus_tests;

pub use gate::{Gate, GateError, Outcome, Plan, Settings, Status};
pub use policy::{Approval, Caller, PolicyConfig};

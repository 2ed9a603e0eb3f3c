//! hearthctl's command line, in clap's derive form.
//!
//! This module tree uses nothing but clap and std: build.rs includes it to
//! generate the man page and the shell completions at build time.

pub mod attest;
pub mod devices;
pub mod dns;
pub mod intent;
pub mod net;
pub mod pki;

use clap::{Parser, Subcommand};

/// hearthctl: run the Hearth appliance from its own console.
///
/// Every command talks to the Hearth daemons over the system bus
/// (DBUS_SYSTEM_BUS_ADDRESS when set). Exit codes: 0 success, 1 refused or
/// failed, 2 usage or connection error.
#[derive(Debug, Parser)]
#[command(name = "hearthctl", version, propagate_version = true)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show a plan's playbook, every call with its arguments and undo, and
    /// the daemons' raw previews and results (ask, playbook).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show whether each daemon is up, its version, uptime and status.
    Status,
    /// Ask for a change in plain language (or as a structured intent).
    Ask(intent::AskArgs),
    /// Network domains and isolation (hearth-netd).
    #[command(subcommand)]
    Net(net::Command),
    /// The appliance's certificate authority (hearth-pkid).
    #[command(subcommand)]
    Pki(pki::Command),
    /// TPM attestation and measurements (hearth-attestd).
    #[command(subcommand)]
    Attest(attest::Command),
    /// Records of the home zone (hearth-dnsd).
    #[command(subcommand)]
    Dns(dns::Command),
    /// Devices on the domains, their addresses and reservations (hearth-dhcpd).
    #[command(subcommand)]
    Devices(devices::Command),
    /// The signed playbook catalog (hearth-intentd).
    #[command(subcommand)]
    Playbook(intent::PlaybookCommand),
    /// The gate's hash-chained audit log (hearth-intentd).
    #[command(subcommand)]
    Audit(intent::AuditCommand),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh or fish.
        shell: String,
    },
    /// Print the man page (roff).
    Man,
}

//! `hearthctl attest`: filled in with its daemon.

use clap::Subcommand;

/// The attest commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Not yet available: this daemon has not landed.
    Unavailable,
}

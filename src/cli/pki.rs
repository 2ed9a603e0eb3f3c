//! `hearthctl pki`: filled in with its daemon.

use clap::Subcommand;

/// The pki commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Not yet available: this daemon has not landed.
    Unavailable,
}

//! `hearthctl ask`, `playbook` and `audit`: filled in with the gate.

use clap::{Args, Subcommand};

/// `hearthctl ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The request, in plain language.
    pub text: Vec<String>,
}

/// The playbook commands.
#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Not yet available: the gate has not landed.
    Unavailable,
}

/// The audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Not yet available: the gate has not landed.
    Unavailable,
}

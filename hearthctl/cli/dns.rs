//! `hearthctl dns`: the home zones' records (hearth-dnsd).

use clap::Subcommand;

/// The dns commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every zone with its SOA serial, name server and records.
    List,
    /// Show the records of one name.
    Show {
        /// The name, e.g. nas.home.arpa.
        name: String,
    },
    /// Add an A (IPv4) or AAAA (IPv6) record.
    Add {
        /// The name, e.g. nas.home.arpa.
        name: String,
        /// The IPv4 or IPv6 address it points at.
        address: String,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Make NAME an alias (CNAME) for TARGET.
    Alias {
        /// The alias, e.g. files.home.arpa.
        name: String,
        /// The name it points at.
        target: String,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove every record of NAME, or only the one given with --address.
    Remove {
        /// The name.
        name: String,
        /// Remove only this A/AAAA record.
        #[arg(long)]
        address: Option<String>,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
}

//! `hearthctl net`: network domains and isolation (hearth-netd).

use clap::Subcommand;

/// The net commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the domains: bridge, subnet, gateway, services.
    List,
    /// Show everything: domains, allows, the matrix and the table's state.
    Show,
    /// Create a domain (a bridge hb-NAME with its subnet's first host as gateway).
    Create {
        /// Domain name (lower-case letters, digits, '-').
        name: String,
        /// IPv4 subnet such as 10.77.5.0/24; omitted: a free /24 of the pool.
        #[arg(long)]
        subnet: Option<String>,
        /// Validate and show what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a domain and every allow naming it (not the admin domain).
    Delete {
        /// Domain name.
        name: String,
        /// Validate and show what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Let domain FROM open connections to domain TO.
    Allow {
        /// Source domain.
        from: String,
        /// Destination domain.
        to: String,
        /// Only this destination port (1-65535).
        #[arg(long)]
        port: Option<u32>,
        /// Only this protocol (tcp or udp); with --port alone: both.
        #[arg(long)]
        protocol: Option<String>,
        /// Validate and show what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove every allow from FROM to TO.
    Revoke {
        /// Source domain.
        from: String,
        /// Destination domain.
        to: String,
        /// Validate and show what would happen, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The reachability matrix: what each domain may open towards each other.
    Matrix,
    /// Re-apply the configuration and persisted changes to the kernel.
    Reconcile,
}

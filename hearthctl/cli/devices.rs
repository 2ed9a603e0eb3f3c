//! `hearthctl devices`: the device inventory and reservations (hearth-dhcpd).

use clap::Subcommand;

/// The devices commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every device seen or reserved: MAC, vendor, domain, address,
    /// host name, DNS name, last seen.
    List,
    /// Show one device (by MAC or host name), with its lease and reservation.
    Show {
        /// A MAC (aa:bb:cc:00:11:22) or a host name the device sent.
        device: String,
    },
    /// Reserve an address of the device's domain for it.
    Reserve {
        /// A MAC or a host name the inventory knows.
        device: String,
        /// An IPv4 address inside the device's domain.
        address: String,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove a device's reservation.
    Unreserve {
        /// A MAC or a host name.
        device: String,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Forget a device: its lease, name, reservation and inventory entry.
    Forget {
        /// A MAC or a host name.
        device: String,
        /// Check the change and show its result without making it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each served domain's address pool: size, leased, reserved, free.
    Pools,
}

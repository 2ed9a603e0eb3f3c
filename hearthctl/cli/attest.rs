//! `hearthctl attest`: the appliance's measurements and TPM state.

use clap::Subcommand;

/// The attest commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whether the measurement log replays to the TPM register.
    Status,
    /// The runtime measurement log (binaries, models, catalog, policy, actions).
    Log {
        /// Only records of this kind (binary, model, playbook-catalog, policy, action).
        #[arg(long)]
        kind: Option<String>,
    },
    /// The boot PCRs (SHA-256 bank: 0 to 7 and 11).
    Pcrs,
}

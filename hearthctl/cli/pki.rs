//! `hearthctl pki`: the appliance's certificate authority (hearth-pkid).

use clap::Subcommand;

/// The pki commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the key ceremony: root and issuing keys in the token, the
    /// constrained root certificate, the issuing CA. Never replaces a root.
    Init,
    /// Print the root certificate (PEM) and its SHA-256 fingerprint.
    Root,
    /// Issue a certificate for a name (key generated and exported, mode 0600)
    /// or for a CSR.
    Issue {
        /// The name(s) to certify, comma-separated (DNS names within the
        /// CA's zones, or IP addresses within its subnets). Not with --csr.
        #[arg(required_unless_present = "csr", conflicts_with = "csr")]
        name: Option<String>,
        /// A PEM certificate signing request file instead of a name.
        #[arg(long, value_name = "FILE")]
        csr: Option<std::path::PathBuf>,
        /// server, client, daemon or playbook-signer.
        #[arg(long, default_value = "server")]
        profile: String,
        /// Validity in days (at most 398; 0 = the configured default, 90).
        #[arg(long, default_value_t = 0)]
        days: u32,
    },
    /// Revoke a certificate by serial (hex) or every certificate of a name;
    /// the CRL is republished.
    Revoke {
        /// Serial number (hex) or name.
        serial_or_name: String,
    },
    /// List the issued certificates.
    List,
    /// Show the certificates of a serial or name, with their PEM.
    Show {
        /// Serial number (hex) or name.
        serial_or_name: String,
    },
    /// Print the current CRL (PEM).
    Crl,
}

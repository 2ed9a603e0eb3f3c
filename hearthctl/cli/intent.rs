//! `hearthctl ask`, `playbook` and `audit` (hearth-intentd).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `hearthctl ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The request, in plain language (at most 512 characters).
    #[arg(required_unless_present = "playbook")]
    pub text: Vec<String>,
    /// Confirm without prompting (for scripts).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A structured intent instead of text: the playbook id.
    #[arg(long, conflicts_with = "text")]
    pub playbook: Option<String>,
    /// When the answer is a clarifying question, pick option N without
    /// being asked (for scripts; 1 is the first option).
    #[arg(long, value_name = "N", conflicts_with = "playbook")]
    pub choose: Option<usize>,
    /// Run the change on trial for SECONDS (10 to 3600): it is applied,
    /// then reverted automatically unless kept with `hearthctl playbook
    /// keep PLAN` in time (only plans whose every step can be undone).
    #[arg(long, value_name = "SECONDS")]
    pub trial: Option<u32>,
    /// A parameter of the structured intent, NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "playbook")]
    pub params: Vec<String>,
}

/// The playbook commands.
#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// List the verified catalog (and the files refused at load).
    List,
    /// Show one playbook: parameters, steps and their undo.
    Show {
        /// The playbook id.
        id: String,
    },
    /// Verify signed envelopes against the gate's trust anchors.
    Verify {
        /// Envelope files (<id>.dsse.json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Install a signed envelope into the catalog (hearth-admins).
    Install {
        /// Envelope file (<id>.dsse.json).
        file: PathBuf,
    },
    /// Sign playbook TOML files: with the appliance's signer key in the HSM
    /// through hearth-pkid (--pkid, hearth-admins), or with a key file
    /// (vendor builds: --key and --chain).
    Sign {
        /// Sign with the playbook-signer key held in the HSM (hearth-pkid).
        #[arg(long, conflicts_with_all = ["key", "chain"])]
        pkid: bool,
        /// PKCS#8 PEM P-256 key file of a playbook signer.
        #[arg(long, required_unless_present = "pkid", requires = "chain")]
        key: Option<PathBuf>,
        /// PEM certificate chain of the signer, its certificate first.
        #[arg(long, required_unless_present = "pkid", requires = "key")]
        chain: Option<PathBuf>,
        /// Output directory for <id>.dsse.json.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Playbook TOML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the plans waiting for approval.
    Pending,
    /// Approve a pending plan (hearth-admins).
    Approve {
        /// The plan id.
        plan_id: String,
    },
    /// Confirm your own pending plan.
    Confirm {
        /// The plan id.
        plan_id: String,
        /// Run it on trial for SECONDS: reverted unless kept in time.
        #[arg(long, value_name = "SECONDS")]
        trial: Option<u32>,
    },
    /// Cancel a pending plan, or end a change on trial by reverting it now.
    Cancel {
        /// The plan id.
        plan_id: String,
    },
    /// Keep a change on trial (it is no longer reverted).
    Keep {
        /// The plan id.
        plan_id: String,
    },
    /// List the changes on trial and when each is reverted.
    Trials,
}

/// The audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The last records (hearth-admins).
    List {
        /// How many (0: all).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Verify the hash chain: finds any edited, deleted or reordered record.
    Verify {
        /// Also check the log against hearth-attestd's event log (its replay
        /// matches the TPM register): every record that executed an action
        /// must be measured there and every measured action must be in the
        /// log, so records cut from the end are found too.
        #[arg(long)]
        against_tpm: bool,
    },
}

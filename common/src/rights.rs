//! Who may call which daemon method: the one rule hearth-netd, hearth-dnsd
//! and hearth-pkid apply to a direct caller, and hearth-intentd applies to
//! a plan's requester for every step (and undo) it would make on that
//! requester's behalf. Written once here, so that the gate cannot become a
//! confused deputy: what a daemon refuses a person directly, the gate
//! refuses them too.
//!
//! The rule is keyed by the interface, the member and the arguments that
//! change the answer. Today the only such argument is a changing method's
//! `dry_run` flag: a preview needs an operator, the change an admin. No
//! rule depends on a domain, a name or a profile: the admin domain's
//! protection in hearth-netd (it cannot be deleted, its reach cannot be
//! revoked) and hearth-pkid's profile checks refuse every caller, admins
//! included, so the gate meets them when the step runs, not here.
//!
//! hearth-pkid further narrows its configured service users to their
//! `[services.<user>]` scope; that concerns daemons calling it, never a
//! person's plan.

use crate::names;

/// What a caller must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// An operator (or an admin): reads and previews.
    Operator,
    /// An admin: changes.
    Admin,
}

impl Need {
    /// Whether a caller with these rights meets it.
    pub fn met_by(self, is_operator: bool, is_admin: bool) -> bool {
        match self {
            Need::Operator => is_operator || is_admin,
            Need::Admin => is_admin,
        }
    }

    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Need::Operator => "operator",
            Need::Admin => "admin",
        }
    }
}

/// The rule for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// What the caller must be.
    pub need: Need,
    /// The rule in words, for refusals.
    pub why: &'static str,
}

const READ: Rule = Rule {
    need: Need::Operator,
    why: "reads need an operator",
};
const PREVIEW: Rule = Rule {
    need: Need::Operator,
    why: "previews (dry_run = true) need an operator",
};
const CHANGE: Rule = Rule {
    need: Need::Admin,
    why: "changes need an admin",
};

/// Changing members of `org.hearth.Network1` (all but `Reconcile` take
/// `dry_run`).
const NET_CHANGES: &[&str] = &[
    "CreateDomain",
    "DeleteDomain",
    "Allow",
    "Revoke",
    "Reconcile",
];
/// Its reads.
const NET_READS: &[&str] = &["ListDomains", "Show", "Matrix"];
/// Changing members of `org.hearth.Dns1` (all take `dry_run`).
const DNS_CHANGES: &[&str] = &["AddRecord", "AddAlias", "Remove", "RemoveRecord", "Restore"];
/// Its reads.
const DNS_READS: &[&str] = &["Describe", "List"];
/// Changing members of `org.hearth.Pki1` (none takes `dry_run`).
const PKI_CHANGES: &[&str] = &[
    "Init",
    "IssueCertificate",
    "IssueForName",
    "IssueFromCsr",
    "IssueDaemonCertificate",
    "RevokeCertificate",
    "SignPlaybook",
];
/// Its reads.
const PKI_READS: &[&str] = &[
    "Info",
    "RootCertificate",
    "ListCertificates",
    "ShowCertificate",
    "Crl",
    "PlaybookSignerCertificate",
];
/// Changing members of `org.hearth.Dhcp1` (all take `dry_run`).
const DHCP_CHANGES: &[&str] = &["Reserve", "ReleaseReservation", "Forget"];
/// Its reads.
const DHCP_READS: &[&str] = &["ListDevices", "ShowDevice", "Pools"];
/// Reads of `org.hearth.Attestation1`.
const ATTEST_READS: &[&str] = &["Status", "Log", "Pcrs"];

/// The rule for calling `member` of `interface` with `dry_run` (false for
/// a method without the flag); `None` for a method with no rule here, which
/// the gate refuses and a daemon treats as [`Need::Admin`].
pub fn rule(interface: &str, member: &str, dry_run: bool) -> Option<Rule> {
    let (changes, reads, previews): (&[&str], &[&str], bool) = match interface {
        i if i == names::NETWORK.bus_name => (NET_CHANGES, NET_READS, true),
        i if i == names::DNS.bus_name => (DNS_CHANGES, DNS_READS, true),
        i if i == names::PKI.bus_name => (PKI_CHANGES, PKI_READS, false),
        i if i == names::ATTESTATION.bus_name => (&[], ATTEST_READS, false),
        i if i == names::DHCP.bus_name => (DHCP_CHANGES, DHCP_READS, true),
        _ => return None,
    };
    if reads.contains(&member) {
        Some(READ)
    } else if changes.contains(&member) {
        Some(if dry_run && previews { PREVIEW } else { CHANGE })
    } else {
        None
    }
}

/// What a daemon requires of a direct caller of its own `member`:
/// [`rule`]'s need, [`Need::Admin`] for a member with no rule (fail
/// closed).
pub fn need(interface: &str, member: &str, dry_run: bool) -> Need {
    rule(interface, member, dry_run).map_or(Need::Admin, |r| r.need)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_an_admin_previews_and_reads_an_operator() {
        let net = names::NETWORK.bus_name;
        for m in ["CreateDomain", "DeleteDomain", "Allow", "Revoke"] {
            assert_eq!(need(net, m, false), Need::Admin, "{m}");
            assert_eq!(need(net, m, true), Need::Operator, "{m}");
        }
        assert_eq!(need(net, "Show", false), Need::Operator);
        assert_eq!(need(net, "Reconcile", false), Need::Admin);
        assert_eq!(need(net, "NoSuchMember", false), Need::Admin);
        assert_eq!(rule(net, "NoSuchMember", false), None);
        let dns = names::DNS.bus_name;
        assert_eq!(need(dns, "AddRecord", false), Need::Admin);
        assert_eq!(need(dns, "AddRecord", true), Need::Operator);
        assert_eq!(need(dns, "List", false), Need::Operator);
        let pki = names::PKI.bus_name;
        // No preview in hearth-pkid: a dry_run flag does not lower it.
        assert_eq!(need(pki, "IssueCertificate", true), Need::Admin);
        assert_eq!(need(pki, "RevokeCertificate", false), Need::Admin);
        assert_eq!(need(pki, "ListCertificates", false), Need::Operator);
        assert_eq!(
            need(names::ATTESTATION.bus_name, "Status", false),
            Need::Operator
        );
        let dhcp = names::DHCP.bus_name;
        assert_eq!(need(dhcp, "Reserve", false), Need::Admin);
        assert_eq!(need(dhcp, "Reserve", true), Need::Operator);
        assert_eq!(need(dhcp, "ListDevices", false), Need::Operator);
        assert_eq!(rule("org.example.Other", "Allow", false), None);
    }

    #[test]
    fn needs_are_met_by_the_right_callers() {
        assert!(Need::Operator.met_by(true, false));
        assert!(Need::Operator.met_by(false, true));
        assert!(!Need::Operator.met_by(false, false));
        assert!(!Need::Admin.met_by(true, false));
        assert!(Need::Admin.met_by(true, true));
    }
}

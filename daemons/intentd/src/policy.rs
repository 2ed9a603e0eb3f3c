//! Who must agree before a plan runs.
//!
//! * `read` runs at once.
//! * `change` waits for the requester's confirmation (`hearthctl ask` prompts;
//!   `--yes` confirms in the same call).
//! * `destructive` also needs a member of hearth-admins: the requester's own
//!   confirmation counts when the requester is one; otherwise an admin
//!   approves. With `two_person = true`, an admin other than the requester
//!   must approve every destructive plan (and, with `two_person_change`,
//!   every change too). Root (uid 0) is not that second admin: an admin
//!   with sudo is still one person. `root_is_second_person = true` says
//!   otherwise (for a box whose second person really logs in as root).
//! * A pending plan expires after `pending_ttl_secs`; at most `max_pending`
//!   plans wait in all, and `max_pending_per_requester` from one requester.

use serde::{Deserialize, Serialize};

use hearth_common::spec::Risk;
use hearth_playbook::{ArgValue, RenderedStep};

/// The policy section of the gate's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Seconds a pending plan waits for its approvals.
    #[serde(default = "default_ttl")]
    pub pending_ttl_secs: u64,
    /// A second admin (not the requester) approves destructive plans.
    #[serde(default)]
    pub two_person: bool,
    /// With `two_person`, changes need a second admin too.
    #[serde(default)]
    pub two_person_change: bool,
    /// Whether root (uid 0) counts as the second admin of the two-person
    /// rule. Off by default: one admin with sudo is not two people.
    #[serde(default)]
    pub root_is_second_person: bool,
    /// Most plans waiting for agreement, all requesters together.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Most plans waiting for agreement from one requester.
    #[serde(default = "default_max_pending_per_requester")]
    pub max_pending_per_requester: usize,
    /// Playbooks whose plans always run on trial, with the window in
    /// seconds (`trial = { "net.allow" = 120 }`): applied, then reverted
    /// unless kept in time.
    #[serde(default)]
    pub trial: std::collections::BTreeMap<String, u32>,
}

fn default_max_pending() -> usize {
    64
}

fn default_max_pending_per_requester() -> usize {
    8
}

fn default_ttl() -> u64 {
    300
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            pending_ttl_secs: default_ttl(),
            two_person: false,
            two_person_change: false,
            root_is_second_person: false,
            max_pending: default_max_pending(),
            max_pending_per_requester: default_max_pending_per_requester(),
            trial: Default::default(),
        }
    }
}

/// The caller as the bus identified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Unix uid.
    pub uid: u32,
    /// Member of hearth-admins.
    pub is_admin: bool,
}

/// The approval a plan needs: the contract's type, so the gate and its
/// clients say the same.
pub use hearth_common::contract::intent::Approval;

impl PolicyConfig {
    /// The approval a plan of this risk needs.
    pub fn approval_for(&self, risk: Risk) -> Approval {
        match risk {
            Risk::Read => Approval::None,
            Risk::Change if self.two_person && self.two_person_change => Approval::TwoPerson,
            Risk::Change => Approval::Confirm,
            Risk::Destructive if self.two_person => Approval::TwoPerson,
            Risk::Destructive => Approval::Admin,
        }
    }
}

/// The agreement gathered so far for one pending plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    /// The requester confirmed.
    pub confirmed: bool,
    /// Admins who approved (uids), in order.
    pub approved_by: Vec<u32>,
}

/// Why an agreement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Only the requester confirms their plan.
    #[error("only the requester (uid {requester}) can confirm this plan")]
    NotRequester {
        /// The requester.
        requester: u32,
    },
    /// Only admins approve.
    #[error("only a member of hearth-admins can approve a plan")]
    NotAdmin,
    /// The two-person rule: the requester cannot be the second person.
    #[error("the two-person rule needs an admin other than the requester")]
    SamePerson,
    /// The two-person rule: root is not a second person unless the policy
    /// says so.
    #[error("uid 0 (root) does not count as the second person of the two-person rule (an admin with sudo is still one person): another hearth-admins member must approve, or the policy must set root_is_second_person = true")]
    RootNotSecondPerson,
    /// This plan needs no approval.
    #[error("this plan needs no approval, only the requester's confirmation")]
    NoApprovalNeeded,
    /// A step (or its undo) is a call its daemon would refuse the requester
    /// directly: the gate never makes it on their behalf.
    #[error("{0}")]
    StepNotAllowed(String),
}

/// Checks that the requester could make every call of a plan directly:
/// each step, and each undo the rollback may make, must meet the rule its
/// daemon applies to a direct caller ([`hearth_common::rights`]). The gate
/// calls the daemons with its own service identity, which they trust as an
/// admin; without this check it would be a confused deputy. A call with
/// no rule is refused.
pub fn check_rights(steps: &[RenderedStep], requester: Caller) -> Result<(), PolicyError> {
    use hearth_common::rights;
    // The bus adapter lets only operators (and admins) ask.
    let (is_operator, is_admin) = (true, requester.is_admin);
    for (i, step) in steps.iter().enumerate() {
        let calls = std::iter::once((step.call.method, Some(&step.call.args), "step")).chain(
            step.undo
                .as_ref()
                .map(|u| (u.method(), None, "the undo of step")),
        );
        for (method, args, what) in calls {
            let svc = &method.service;
            let shown = match args {
                Some(a) => {
                    let a: Vec<String> = method
                        .args
                        .iter()
                        .zip(a)
                        .map(|(n, v)| match v {
                            ArgValue::Str(s) => format!("{}={s:?}", n.name),
                            ArgValue::Num(x) => format!("{}={x}", n.name),
                        })
                        .collect();
                    format!("{} {}", method.key, a.join(" "))
                }
                None => method.key.to_string(),
            };
            let refused = match rights::rule(svc.bus_name, method.member, false) {
                Some(r) if r.need.met_by(is_operator, is_admin) => None,
                Some(r) => Some(format!(
                    "{} refuses this call to uid {} directly ({}.{}: {}, and uid {} is not an {})",
                    svc.unit,
                    requester.uid,
                    svc.bus_name,
                    method.member,
                    r.why,
                    requester.uid,
                    r.need.as_str()
                )),
                None => Some(format!(
                    "{}.{} has no access rule shared with {}",
                    svc.bus_name, method.member, svc.unit
                )),
            };
            if let Some(why) = refused {
                return Err(PolicyError::StepNotAllowed(format!(
                    "{what} {} ({shown}) is not allowed to the requester: {why}; the gate makes no call the requester could not make, nothing ran",
                    i + 1
                )));
            }
        }
    }
    Ok(())
}

impl Agreement {
    /// Records the requester's confirmation.
    pub fn confirm(&mut self, requester: Caller, by: Caller) -> Result<(), PolicyError> {
        if by.uid != requester.uid {
            return Err(PolicyError::NotRequester {
                requester: requester.uid,
            });
        }
        self.confirmed = true;
        Ok(())
    }

    /// Records an admin's approval under `policy`.
    pub fn approve(
        &mut self,
        approval: Approval,
        requester: Caller,
        by: Caller,
        policy: &PolicyConfig,
    ) -> Result<(), PolicyError> {
        match approval {
            Approval::None | Approval::Confirm => return Err(PolicyError::NoApprovalNeeded),
            Approval::Admin | Approval::TwoPerson => {}
        }
        if !by.is_admin {
            return Err(PolicyError::NotAdmin);
        }
        if approval == Approval::TwoPerson && by.uid == requester.uid {
            return Err(PolicyError::SamePerson);
        }
        if approval == Approval::TwoPerson && by.uid == 0 && !policy.root_is_second_person {
            return Err(PolicyError::RootNotSecondPerson);
        }
        if !self.approved_by.contains(&by.uid) {
            self.approved_by.push(by.uid);
        }
        Ok(())
    }

    /// What is still missing (empty: the plan may run).
    pub fn missing(&self, approval: Approval, requester: Caller) -> Vec<&'static str> {
        let mut out = Vec::new();
        if approval != Approval::None && !self.confirmed {
            out.push("the requester's confirmation");
        }
        match approval {
            Approval::None | Approval::Confirm => {}
            Approval::Admin => {
                let ok = (requester.is_admin && self.confirmed) || !self.approved_by.is_empty();
                if !ok {
                    out.push("approval by a hearth-admins member");
                }
            }
            Approval::TwoPerson => {
                if !self.approved_by.iter().any(|u| *u != requester.uid) {
                    out.push("approval by a second hearth-admins member");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Caller = Caller {
        uid: 1000,
        is_admin: false,
    };
    const ADMIN: Caller = Caller {
        uid: 0,
        is_admin: true,
    };
    const ADMIN2: Caller = Caller {
        uid: 1001,
        is_admin: true,
    };

    #[test]
    fn read_runs_at_once_and_change_needs_the_requester() {
        let p = PolicyConfig::default();
        assert_eq!(p.approval_for(Risk::Read), Approval::None);
        assert!(Agreement::default()
            .missing(Approval::None, USER)
            .is_empty());
        let a = p.approval_for(Risk::Change);
        let mut ag = Agreement::default();
        assert_eq!(ag.missing(a, USER), vec!["the requester's confirmation"]);
        assert_eq!(
            ag.confirm(USER, ADMIN2),
            Err(PolicyError::NotRequester { requester: 1000 })
        );
        ag.confirm(USER, USER).unwrap();
        assert!(ag.missing(a, USER).is_empty());
    }

    #[test]
    fn destructive_needs_an_admin() {
        let p = PolicyConfig::default();
        let a = p.approval_for(Risk::Destructive);
        assert_eq!(a, Approval::Admin);
        // A user's own confirmation is not enough.
        let mut ag = Agreement::default();
        ag.confirm(USER, USER).unwrap();
        assert_eq!(
            ag.missing(a, USER),
            vec!["approval by a hearth-admins member"]
        );
        assert_eq!(ag.approve(a, USER, USER, &p), Err(PolicyError::NotAdmin));
        ag.approve(a, USER, ADMIN, &p).unwrap();
        assert!(ag.missing(a, USER).is_empty());
        // An admin's own confirmation is.
        let mut ag = Agreement::default();
        ag.confirm(ADMIN, ADMIN).unwrap();
        assert!(ag.missing(a, ADMIN).is_empty());
    }

    #[test]
    fn the_two_person_rule_needs_a_second_admin() {
        let p = PolicyConfig {
            two_person: true,
            ..Default::default()
        };
        let a = p.approval_for(Risk::Destructive);
        assert_eq!(a, Approval::TwoPerson);
        assert_eq!(p.approval_for(Risk::Change), Approval::Confirm);
        let mut ag = Agreement::default();
        ag.confirm(ADMIN, ADMIN).unwrap();
        assert_eq!(
            ag.approve(a, ADMIN, ADMIN, &p),
            Err(PolicyError::SamePerson)
        );
        assert_eq!(
            ag.missing(a, ADMIN),
            vec!["approval by a second hearth-admins member"]
        );
        ag.approve(a, ADMIN, ADMIN2, &p).unwrap();
        assert!(ag.missing(a, ADMIN).is_empty());
        let p = PolicyConfig {
            two_person: true,
            two_person_change: true,
            ..Default::default()
        };
        assert_eq!(p.approval_for(Risk::Change), Approval::TwoPerson);
    }

    #[test]
    fn root_is_not_the_second_person_unless_the_policy_says_so() {
        let p = PolicyConfig {
            two_person: true,
            ..Default::default()
        };
        let a = p.approval_for(Risk::Destructive);
        let mut ag = Agreement::default();
        ag.confirm(ADMIN2, ADMIN2).unwrap();
        assert_eq!(
            ag.approve(a, ADMIN2, ADMIN, &p),
            Err(PolicyError::RootNotSecondPerson)
        );
        assert_eq!(
            ag.missing(a, ADMIN2),
            vec!["approval by a second hearth-admins member"]
        );
        // Root still approves where one admin is enough.
        let one = PolicyConfig::default();
        let mut ag1 = Agreement::default();
        ag1.confirm(USER, USER).unwrap();
        ag1.approve(one.approval_for(Risk::Destructive), USER, ADMIN, &one)
            .unwrap();
        // The policy says root counts.
        let p = PolicyConfig {
            root_is_second_person: true,
            ..p
        };
        ag.approve(a, ADMIN2, ADMIN, &p).unwrap();
        assert!(ag.missing(a, ADMIN2).is_empty());
    }

    #[test]
    fn approval_is_refused_where_none_is_needed() {
        let mut ag = Agreement::default();
        assert_eq!(
            ag.approve(Approval::Confirm, USER, ADMIN, &PolicyConfig::default()),
            Err(PolicyError::NoApprovalNeeded)
        );
    }
}

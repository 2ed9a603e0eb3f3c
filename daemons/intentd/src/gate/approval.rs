//! Approvals: pending plans wait for the agreement their policy asks
//! (the requester's confirmation, an admin's approval), may be cancelled,
//! and expire; a plan runs once nothing is missing.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{check_window, lock, Gate, GateError, Outcome, Pending, Plan, Status};
use crate::exec::{Executor, Measurer};
use crate::interpret::Interpreter;
use crate::policy::{Caller, PolicyError};

/// The audit record of a pending plan dropped without running (`kind`:
/// `cancelled` or `expired`).
fn dropped(kind: &str, p: &Pending) -> Value {
    json!({
        "kind": kind,
        "request": p.request,
        "caller_uid": p.requester.uid,
        "playbook": p.plan.playbook,
        "model_digests": p.models,
        "plan": p.plan,
        "approval": p.agreement,
    })
}

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    /// Pending plans: all for admins, one's own otherwise.
    pub fn list_pending(&self, caller: Caller) -> Vec<Plan> {
        self.sweep_expired();
        lock(&self.pending)
            .values()
            .filter(|p| caller.is_admin || p.requester.uid == caller.uid)
            .map(|p| p.plan.clone())
            .collect()
    }

    /// The requester confirms their plan; it runs when nothing else is missing.
    pub async fn confirm(&self, plan_id: &str, caller: Caller) -> Result<Outcome, GateError> {
        self.agree(plan_id, caller, |p| {
            p.agreement.confirm(p.requester, caller)
        })
        .await
    }

    /// The requester confirms their plan to run on trial for `secs`
    /// seconds: once every approval is there, it runs and is reverted
    /// automatically unless kept ([`Gate::keep`]) in time. Only a plan
    /// whose every step has an undo can be tried.
    pub async fn confirm_trial(
        &self,
        plan_id: &str,
        secs: u32,
        caller: Caller,
    ) -> Result<Outcome, GateError> {
        check_window(secs)?;
        {
            let mut pend = lock(&self.pending);
            if let Some(p) = pend.get_mut(plan_id) {
                if let Some(i) = p.plan.steps.iter().position(|s| s.undo.is_none()) {
                    return Err(GateError::refused(format!(
                        "{} cannot be tried: step {} ({}) has no undo",
                        p.plan.playbook.id,
                        i + 1,
                        p.plan.steps[i].call.method.key
                    )));
                }
                p.trial = Some(secs);
            }
        }
        self.confirm(plan_id, caller).await
    }

    /// The trial window the policy sets for a plan's playbook, when every
    /// step of the plan has an undo.
    pub(super) fn policy_trial(&self, plan: &Plan) -> Option<u32> {
        let secs = *self.settings.policy.trial.get(&plan.playbook.id)?;
        if plan.steps.iter().any(|s| s.undo.is_none()) {
            tracing::warn!(
                playbook = plan.playbook.id,
                "policy asks for a trial but a step has no undo: runs without one"
            );
            return None;
        }
        Some(secs)
    }

    /// An admin approves a plan; it runs when nothing else is missing.
    pub async fn approve(&self, plan_id: &str, caller: Caller) -> Result<Outcome, GateError> {
        let policy = &self.settings.policy;
        self.agree(plan_id, caller, |p| {
            p.agreement
                .approve(p.plan.approval, p.requester, caller, policy)
        })
        .await
    }

    async fn agree(
        &self,
        plan_id: &str,
        caller: Caller,
        f: impl FnOnce(&mut Pending) -> Result<(), PolicyError>,
    ) -> Result<Outcome, GateError> {
        self.not_expired(plan_id)?;
        let ready = {
            let mut pend = lock(&self.pending);
            let p = pend
                .get_mut(plan_id)
                .ok_or_else(|| GateError::NotFound(plan_id.into()))?;
            f(p)?;
            let missing = p.agreement.missing(p.plan.approval, p.requester);
            if missing.is_empty() {
                pend.remove(plan_id)
            } else {
                tracing::info!(
                    plan = plan_id,
                    by = caller.uid,
                    ?missing,
                    "agreement recorded"
                );
                return Ok(Outcome {
                    missing,
                    ..Outcome::of(Status::Pending, p.plan.clone())
                });
            }
        };
        match ready {
            Some(p) => self.execute(p).await,
            None => Err(GateError::NotFound(plan_id.into())),
        }
    }

    /// Cancels a pending plan (its requester or an admin).
    pub fn cancel(&self, plan_id: &str, caller: Caller) -> Result<Outcome, GateError> {
        self.not_expired(plan_id)?;
        let p = {
            let mut pend = lock(&self.pending);
            let p = pend
                .get(plan_id)
                .ok_or_else(|| GateError::NotFound(plan_id.into()))?;
            if p.requester.uid != caller.uid && !caller.is_admin {
                return Err(PolicyError::NotRequester {
                    requester: p.requester.uid,
                }
                .into());
            }
            pend.remove(plan_id)
                .ok_or_else(|| GateError::NotFound(plan_id.into()))?
        };
        let mut event = dropped("cancelled", &p);
        event["cancelled_by"] = json!(caller.uid);
        let rec = self.record(event)?;
        Ok(Outcome {
            audit: Some(rec),
            ..Outcome::of(Status::Cancelled, p.plan)
        })
    }

    /// Sweeps the expired plans; `plan_id` among them is
    /// [`GateError::Expired`].
    fn not_expired(&self, plan_id: &str) -> Result<(), GateError> {
        if self.sweep_expired().iter().any(|id| id == plan_id) {
            return Err(GateError::Expired(plan_id.into()));
        }
        Ok(())
    }

    /// Drops expired pending plans, recording each; returns their ids.
    pub fn sweep_expired(&self) -> Vec<String> {
        let now = SystemTime::now();
        let expired: Vec<Pending> = {
            let mut pend = lock(&self.pending);
            let ids: Vec<String> = pend
                .iter()
                .filter(|(_, p)| p.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| pend.remove(k)).collect()
        };
        let ids = expired.iter().map(|p| p.plan.plan_id.clone()).collect();
        for p in expired {
            tracing::info!(plan = %p.plan.plan_id, "pending plan expired");
            if let Err(e) = self.record(dropped("expired", &p)) {
                tracing::error!("{e}");
            }
        }
        ids
    }

    /// Whether `plan_id` is pending (expired plans are not).
    pub fn is_pending(&self, plan_id: &str) -> bool {
        self.sweep_expired();
        lock(&self.pending).contains_key(plan_id)
    }
}

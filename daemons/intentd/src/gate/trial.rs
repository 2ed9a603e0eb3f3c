//! Trial runs: a plan applied now and reverted automatically
//! unless its requester (or an admin) keeps it within the window.
//!
//! The revert is the plan's own undo calls, rendered when the steps ran and
//! kept in `<state dir>/trials.json` (written atomically), so that a
//! restart finds them: a trial left by a stopped or killed daemon is
//! reverted when the gate starts (it cannot know whether its requester
//! still reaches the box). The daemon's own clock does the revert; no
//! client has to stay connected, so a change that cuts the requester off
//! cannot strand the box. Every end of a trial (kept, reverted) is an
//! audit record measured into the TPM like an action.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use hearth_playbook::{ArgValue, Call};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{lock, now_ms, Gate, GateError, PlaybookRef, StepReport};
use crate::audit::Appended;
use crate::exec::{Executor, Measurer};
use crate::interpret::Interpreter;
use crate::policy::{Caller, PolicyError};

/// Shortest trial window, seconds.
pub const MIN_TRIAL_SECS: u32 = 10;
/// Longest trial window, seconds.
pub const MAX_TRIAL_SECS: u32 = 3600;

/// An undo call as stored: the allow-listed method's key and its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCall {
    /// `net.Revoke`, … (a key of `hearth_playbook::methods::METHODS`).
    pub call: String,
    /// The values, in the method's argument order.
    pub args: Vec<ArgValue>,
}

impl StoredCall {
    fn of(c: &Call) -> StoredCall {
        StoredCall {
            call: c.method.key.to_string(),
            args: c.args.clone(),
        }
    }

    /// The call again; only allow-listed methods come back.
    fn call(&self) -> Option<Call> {
        let method = hearth_playbook::methods::lookup(&self.call)?;
        (method.args.len() == self.args.len()).then(|| Call {
            method,
            args: self.args.clone(),
        })
    }
}

/// A change applied on trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The plan that ran.
    pub plan_id: String,
    /// Its playbook.
    pub playbook: PlaybookRef,
    /// Who asked (may keep or end it, as may an admin).
    pub requester: u32,
    /// When it is reverted unless kept (Unix milliseconds).
    pub until_ms: u64,
    /// The undo calls, in the order they run (last step first).
    pub undo: Vec<StoredCall>,
}

/// How a trial ended.
#[derive(Debug, Clone, Serialize)]
pub struct TrialEnd {
    /// The plan.
    pub plan_id: String,
    /// `kept` or `reverted`.
    pub status: &'static str,
    /// Why it was reverted (window over, restart, ended by a person).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The undo calls made, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<StepReport>,
    /// The audit record written.
    pub audit: Appended,
    /// Whether that record was measured into the TPM.
    pub measured: bool,
}

/// Reads `trials.json` (absent: none).
pub(super) fn load(path: &Path) -> Result<BTreeMap<String, Trial>, GateError> {
    match std::fs::read(path) {
        Ok(b) => {
            let v: Vec<Trial> = serde_json::from_slice(&b).map_err(|e| {
                GateError::Unavailable(format!("{}: not a list of trials: {e}", path.display()))
            })?;
            Ok(v.into_iter().map(|t| (t.plan_id.clone(), t)).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(GateError::Unavailable(format!("{}: {e}", path.display()))),
    }
}

/// Checks a requested window.
pub fn check_window(secs: u32) -> Result<(), GateError> {
    if !(MIN_TRIAL_SECS..=MAX_TRIAL_SECS).contains(&secs) {
        return Err(GateError::refused(format!(
            "a trial lasts {MIN_TRIAL_SECS} to {MAX_TRIAL_SECS} seconds, not {secs}"
        )));
    }
    Ok(())
}

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    fn save_trials(&self, trials: &BTreeMap<String, Trial>) -> Result<(), GateError> {
        let v: Vec<&Trial> = trials.values().collect();
        hearth_common::fsutil::write_json_atomic(&self.trials_path, &v)
            .map_err(|e| GateError::Unavailable(format!("{}: {e}", self.trials_path.display())))
    }

    /// Starts a trial for a plan whose steps all ran: stores the undo calls
    /// (rendered from the steps' results) before anything else. `Err`: the
    /// trial could not be stored, and the caller reverts at once.
    pub(super) fn start_trial(
        &self,
        plan: &super::Plan,
        requester: u32,
        secs: u32,
        done: &[(usize, String)],
    ) -> Result<u64, GateError> {
        let mut undo = Vec::new();
        for (i, result) in done.iter().rev() {
            let Some(u) = &plan.steps[*i].undo else {
                continue;
            };
            if super::changed_nothing(&plan.steps[*i], result) {
                continue;
            }
            let call = u.finish(result).map_err(|e| {
                GateError::refused(format!("step {}'s undo cannot be rendered: {e}", i + 1))
            })?;
            undo.push(StoredCall::of(&call));
        }
        let until_ms = now_ms(SystemTime::now()) + u64::from(secs) * 1000;
        let t = Trial {
            plan_id: plan.plan_id.clone(),
            playbook: plan.playbook.clone(),
            requester,
            until_ms,
            undo,
        };
        let mut trials = lock(&self.trials);
        trials.insert(t.plan_id.clone(), t);
        if let Err(e) = self.save_trials(&trials) {
            trials.remove(&plan.plan_id);
            return Err(e);
        }
        Ok(until_ms)
    }

    /// Whether `plan_id` is a change on trial.
    pub fn is_trial(&self, plan_id: &str) -> bool {
        lock(&self.trials).contains_key(plan_id)
    }

    /// The changes on trial the caller may see (all for admins).
    pub fn list_trials(&self, caller: Caller) -> Vec<Trial> {
        lock(&self.trials)
            .values()
            .filter(|t| caller.is_admin || t.requester == caller.uid)
            .cloned()
            .collect()
    }

    fn take_trial(&self, plan_id: &str, caller: Option<Caller>) -> Result<Trial, GateError> {
        let mut trials = lock(&self.trials);
        let t = trials
            .get(plan_id)
            .ok_or_else(|| GateError::NotFound(format!("{plan_id} (no change on trial)")))?;
        if let Some(c) = caller {
            if t.requester != c.uid && !c.is_admin {
                return Err(PolicyError::NotRequester {
                    requester: t.requester,
                }
                .into());
            }
        }
        let t = trials
            .remove(plan_id)
            .ok_or_else(|| GateError::NotFound(plan_id.into()))?;
        if let Err(e) = self.save_trials(&trials) {
            trials.insert(t.plan_id.clone(), t);
            return Err(e);
        }
        Ok(t)
    }

    /// The requester (or an admin) keeps a change on trial.
    pub async fn keep(&self, plan_id: &str, caller: Caller) -> Result<TrialEnd, GateError> {
        let t = self.take_trial(plan_id, Some(caller))?;
        let rec = self.record(json!({
            "kind": "kept",
            "plan_id": t.plan_id,
            "playbook": t.playbook,
            "caller_uid": t.requester,
            "kept_by": caller.uid,
        }))?;
        let measured = self.measured(&t.playbook.id, &rec).await;
        tracing::info!(plan = plan_id, by = caller.uid, "trial kept");
        Ok(TrialEnd {
            plan_id: t.plan_id,
            status: "kept",
            reason: None,
            undo: vec![],
            audit: rec,
            measured,
        })
    }

    /// Ends a trial now by reverting it (its requester or an admin).
    pub async fn end_trial(&self, plan_id: &str, caller: Caller) -> Result<TrialEnd, GateError> {
        let t = self.take_trial(plan_id, Some(caller))?;
        let reason = format!("ended by uid {}", caller.uid);
        self.revert(t, reason).await
    }

    /// Reverts the trials whose window is over; returns how they ended.
    pub async fn revert_due(&self) -> Vec<TrialEnd> {
        let now = now_ms(SystemTime::now());
        let due: Vec<String> = lock(&self.trials)
            .values()
            .filter(|t| t.until_ms <= now)
            .map(|t| t.plan_id.clone())
            .collect();
        self.revert_each(due, "the trial window ended without a keep")
            .await
    }

    /// Reverts every trial found at start (left by a daemon that stopped
    /// during the window).
    pub async fn revert_left_trials(&self) -> Vec<TrialEnd> {
        let ids: Vec<String> = lock(&self.trials).keys().cloned().collect();
        self.revert_each(ids, "hearth-intentd restarted during the trial")
            .await
    }

    /// Reverts the trials of `ids` for `reason`; a failure is logged and
    /// does not stop the others.
    async fn revert_each(&self, ids: Vec<String>, reason: &str) -> Vec<TrialEnd> {
        let mut out = Vec::new();
        for id in ids {
            match self.take_trial(&id, None) {
                Ok(t) => match self.revert(t, reason.into()).await {
                    Ok(end) => out.push(end),
                    Err(e) => tracing::error!(plan = id, "trial revert not recorded: {e}"),
                },
                Err(e) => tracing::error!(plan = id, "trial not reverted: {e}"),
            }
        }
        out
    }

    /// Runs a trial's undo calls (a failing one does not stop the others)
    /// and records the revert.
    async fn revert(&self, t: Trial, reason: String) -> Result<TrialEnd, GateError> {
        tracing::info!(plan = %t.plan_id, "reverting trial: {reason}");
        let mut reports = Vec::new();
        for s in &t.undo {
            let Some(call) = s.call() else {
                tracing::error!(call = s.call, "stored undo is not an allow-listed call");
                continue;
            };
            let r = self.executor.call(&call).await;
            if let Err(e) = &r {
                tracing::error!(call = call.method.key, "trial undo failed: {e}");
            }
            reports.push(StepReport::of(call, r));
        }
        let rec = self.record(json!({
            "kind": "reverted",
            "plan_id": t.plan_id,
            "playbook": t.playbook,
            "caller_uid": t.requester,
            "reason": reason,
            "result": { "undo": reports },
        }))?;
        let measured = self.measured(&t.playbook.id, &rec).await;
        Ok(TrialEnd {
            plan_id: t.plan_id,
            status: "reverted",
            reason: Some(reason),
            undo: reports,
            audit: rec,
            measured,
        })
    }

    async fn measured(&self, playbook: &str, rec: &Appended) -> bool {
        match self.anchor(playbook, rec).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("record {} not measured: {e}", rec.seq);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_calls_come_back_only_for_allow_listed_methods() {
        let ok = StoredCall {
            call: "net.Revoke".into(),
            args: vec![ArgValue::Str("a".into()), ArgValue::Str("b".into())],
        };
        assert_eq!(ok.call().map(|c| c.method.key), Some("net.Revoke"));
        let unknown = StoredCall {
            call: "net.Flush".into(),
            args: vec![],
        };
        assert!(unknown.call().is_none());
        let short = StoredCall {
            call: "net.Revoke".into(),
            args: vec![],
        };
        assert!(short.call().is_none(), "wrong number of values");
    }

    #[test]
    fn windows_outside_the_bounds_are_refused() {
        assert!(check_window(MIN_TRIAL_SECS).is_ok());
        assert!(check_window(MAX_TRIAL_SECS).is_ok());
        assert!(check_window(MIN_TRIAL_SECS - 1).is_err());
        assert!(check_window(MAX_TRIAL_SECS + 1).is_err());
    }
}

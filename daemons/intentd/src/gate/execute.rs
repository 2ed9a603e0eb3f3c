//! Execution: an agreed plan runs write-ahead (its intent record written
//! and measured into the TPM first, or nothing runs), step by step through
//! the executor; a failed step undoes the completed ones in reverse order;
//! the outcome is recorded and measured.

use hearth_playbook::{Call, RenderedStep};
use serde_json::json;

use super::{Gate, GateError, Outcome, Pending, Plan, Status, StepReport};
use crate::audit::Appended;
use crate::exec::{ExecError, Executor, Measurer};
use crate::interpret::Interpreter;

/// True when a step's answer says it changed nothing (an allow already in
/// force): its undo would take away what was there before, so it is not
/// run.
pub(super) fn changed_nothing(step: &RenderedStep, result: &str) -> bool {
    hearth_common::contract::describe::change(step.call.method.key, result)
        .is_some_and(|d| d.nothing)
}

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    /// Measures an audit record's hash (the chain's head after it) into the
    /// TPM as an `action` named `<playbook>@<seq>`.
    pub(super) async fn anchor(&self, playbook: &str, rec: &Appended) -> Result<(), ExecError> {
        let name = format!("{playbook}@{}", rec.seq);
        self.measurer.measure("action", &name, &rec.hash).await
    }

    /// Runs the undo of each step done, last first (a failing undo does
    /// not stop the others).
    async fn undo_done(&self, plan: &Plan, done: &[(usize, String)]) -> Vec<StepReport> {
        let mut rollback = Vec::new();
        for (i, result) in done.iter().rev() {
            let step = &plan.steps[*i];
            let Some(undo) = &step.undo else { continue };
            if changed_nothing(step, result) {
                continue;
            }
            match undo.finish(result) {
                Ok(call) => {
                    let r = self.executor.call(&call).await;
                    if let Err(e) = &r {
                        tracing::error!(call = call.method.key, "undo failed: {e}");
                    }
                    rollback.push(StepReport::of(call, r));
                }
                Err(e) => {
                    tracing::error!("undo of step {} cannot be rendered: {e}", i + 1);
                    rollback.push(StepReport {
                        call: Call {
                            method: undo.method(),
                            args: vec![],
                        },
                        ok: false,
                        result: None,
                        error: Some(e.to_string()),
                    });
                }
            }
        }
        rollback
    }

    /// Runs an agreed plan, write-ahead: the intent record (plan id,
    /// playbook, parameters, who agreed) is appended, fsynced and measured
    /// into the TPM before the first step; if it cannot be written or
    /// measured nothing runs (fail closed). The outcome record follows the
    /// steps and is measured too.
    pub(super) async fn execute(&self, p: Pending) -> Result<Outcome, GateError> {
        let plan = p.plan;
        let intent = match self.record(json!({
            "kind": "intent",
            "plan_id": plan.plan_id,
            "request": p.request,
            "caller_uid": p.requester.uid,
            "playbook": plan.playbook,
            "params": plan.params,
            "model_digests": p.models,
            "plan": plan,
            "approval": p.agreement,
        })) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(plan = %plan.plan_id, "intent record not written: {e}");
                return Err(GateError::Unavailable(format!(
                    "plan {} not run: its intent record cannot be written to the audit log ({e}); nothing was changed",
                    plan.plan_id
                )));
            }
        };
        if let Err(e) = self.anchor(&plan.playbook.id, &intent).await {
            let reason = format!(
                "plan {} not run: its intent record (audit seq {}) cannot be measured into the TPM through hearth-attestd ({e}); nothing was changed",
                plan.plan_id, intent.seq
            );
            tracing::error!("{reason}");
            self.record(json!({
                "kind": "aborted",
                "plan_id": plan.plan_id,
                "intent_seq": intent.seq,
                "playbook": plan.playbook,
                "reason": reason,
            }))?;
            return Err(GateError::Unavailable(reason));
        }
        tracing::info!(plan = %plan.plan_id, playbook = %plan.playbook.id, "executing");
        let mut done: Vec<(usize, String)> = Vec::new();
        let mut reports = Vec::new();
        let mut failure: Option<ExecError> = None;
        for (i, step) in plan.steps.iter().enumerate() {
            let answer = self.executor.call(&step.call).await;
            reports.push(StepReport::of(step.call.clone(), answer.clone()));
            match answer {
                Ok(result) => done.push((i, result)),
                Err(e) => {
                    tracing::warn!(
                        step = i + 1,
                        call = step.call.method.key,
                        "step failed: {e}"
                    );
                    failure = Some(e);
                    break;
                }
            }
        }
        let mut rollback = Vec::new();
        if failure.is_some() {
            rollback = self.undo_done(&plan, &done).await;
        }
        // On trial: the undo calls are stored before the outcome is
        // recorded; a trial that cannot be stored is reverted at once (it
        // would not survive a restart).
        let mut trial_until_ms = None;
        if let (None, Some(secs)) = (&failure, p.trial) {
            match self.start_trial(&plan, p.requester.uid, secs, &done) {
                Ok(until) => trial_until_ms = Some(until),
                Err(e) => {
                    tracing::error!(plan = %plan.plan_id, "trial not stored: {e}");
                    failure = Some(ExecError {
                        name: "org.hearth.Intent.trial".into(),
                        message: format!("the trial could not be stored ({e}); reverted"),
                    });
                    rollback = self.undo_done(&plan, &done).await;
                }
            }
        }
        let status = match (&failure, trial_until_ms) {
            (Some(_), _) => Status::Failed,
            (None, Some(_)) => Status::Trial,
            (None, None) => Status::Executed,
        };
        let mut event = json!({
            "kind": if failure.is_some() { "failed" } else { "executed" },
            "plan_id": plan.plan_id,
            "intent_seq": intent.seq,
            "request": p.request,
            "caller_uid": p.requester.uid,
            "playbook": plan.playbook,
            "model_digests": p.models,
            "plan": plan,
            "approval": p.agreement,
            "result": { "steps": reports, "rollback": rollback,
                        "error": failure.as_ref().map(|e| e.to_string()) },
        });
        if let Some(until) = trial_until_ms {
            event["trial_until_ms"] = json!(until);
        }
        let rec = self.record(event)?;
        // The steps ran: an outcome that cannot be measured now is reported
        // (and found missing by the verification against the TPM log).
        let measured = match self.anchor(&plan.playbook.id, &rec).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("outcome record {} not measured: {e}", rec.seq);
                false
            }
        };
        Ok(Outcome {
            steps: reports,
            rollback,
            error: failure.map(|e| e.to_string()),
            audit: Some(rec),
            measured: Some(measured),
            trial_until_ms,
            ..Outcome::of(status, plan)
        })
    }
}

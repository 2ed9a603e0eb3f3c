//! Requests become plans: a text request through the interpreter, or a
//! structured one (a playbook id and parameters), both bounded in size;
//! the playbook is taken from the verified catalog, its parameters
//! validated, the caller's rights checked, the daemons asked for a dry run,
//! and the plan either run at once (no approval needed) or kept pending.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hearth_common::spec::{Context, ParamKind, Params};
use hearth_playbook::catalog::Installed;
use serde_json::{json, Value};

use super::{
    cut, lock, now_ms, random_id, Gate, GateError, Outcome, Pending, Plan, PlaybookRef, Status,
};
use crate::exec::{Executor, Measurer};
use crate::interpret::{Interpretation, Interpreter, ModelDigest};
use crate::policy::{Agreement, Approval, Caller};

/// Longest text request, in characters.
pub const MAX_TEXT: usize = 512;

/// Longest playbook id a structured intent may name, in bytes.
pub const MAX_PLAYBOOK_ID: usize = 64;

/// Most parameters of a structured intent.
pub const MAX_PARAMS: usize = 16;

/// Longest parameter name, in bytes.
pub const MAX_PARAM_NAME: usize = 64;

/// Longest parameter value, in bytes of compact JSON (a string's quotes
/// not counted).
pub const MAX_PARAM_VALUE: usize = 512;

/// Longest `params_json` accepted on the bus, in bytes, before parsing.
pub const MAX_PARAMS_JSON: usize = 16 * 1024;

/// Checks the sizes of a structured intent; the reason names the field and
/// the bound, never the oversize content.
fn check_structured(playbook: &str, params: &BTreeMap<String, Value>) -> Result<(), String> {
    if playbook.len() > MAX_PLAYBOOK_ID {
        return Err(format!(
            "the playbook id has {} bytes; at most {MAX_PLAYBOOK_ID}",
            playbook.len()
        ));
    }
    if params.len() > MAX_PARAMS {
        return Err(format!(
            "{} parameters given; at most {MAX_PARAMS}",
            params.len()
        ));
    }
    for (name, value) in params {
        if name.len() > MAX_PARAM_NAME {
            return Err(format!(
                "a parameter name has {} bytes; at most {MAX_PARAM_NAME}",
                name.len()
            ));
        }
        let size = match value {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
        if size > MAX_PARAM_VALUE {
            return Err(format!(
                "parameter \"{name}\" has {size} bytes; at most {MAX_PARAM_VALUE}"
            ));
        }
    }
    Ok(())
}

fn explanation(pb: &Installed, params: &Params, approval: Approval) -> String {
    let spec = &pb.playbook.spec;
    let args: Vec<String> = spec
        .params
        .iter()
        .filter_map(|p| {
            params.get(&p.name).map(|v| match v {
                Value::String(s) => format!("{}={s}", p.name),
                other => format!("{}={other}", p.name),
            })
        })
        .collect();
    let what = spec.description.trim_end_matches('.');
    let line = if args.is_empty() {
        format!(
            "{}: {what} ({}; {}).",
            spec.id,
            spec.risk.as_str(),
            approval.describe()
        )
    } else {
        format!(
            "{}: {what} with {} ({}; {}).",
            spec.id,
            args.join(", "),
            spec.risk.as_str(),
            approval.describe()
        )
    };
    line.replace(['\n', '\r'], " ")
}

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    /// A text request (at most [`MAX_TEXT`] characters).
    pub async fn ask(&self, text: &str, caller: Caller) -> Result<Outcome, GateError> {
        self.sweep_expired();
        let request = json!({ "text": text });
        let trimmed = text.trim();
        if trimmed.is_empty() {
            let e = GateError::refused("the request is empty");
            return Err(self.refuse(caller, &request, &[], e));
        }
        let n = text.chars().count();
        if n > MAX_TEXT {
            let e = GateError::refused(format!(
                "the request has {n} characters; at most {MAX_TEXT}"
            ));
            let short = json!({ "text": text.chars().take(MAX_TEXT).collect::<String>(), "truncated_from": n });
            return Err(self.refuse(caller, &short, &[], e));
        }
        if let Some(why) = self.language_refusal() {
            tracing::warn!("plain-language request refused: {why}");
            let e = GateError::refused(format!(
                "plain-language requests are refused: {why}; a structured intent still works (hearthctl ask --playbook ID --param k=v)"
            ));
            return Err(self.refuse(caller, &request, &[], e));
        }
        let ctx = match self.executor.context().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("domains unavailable for interpretation: {e}");
                Context::default()
            }
        };
        let interp = self.interpreter.clone();
        let owned = trimmed.to_string();
        let ctx2 = ctx.clone();
        let (interpretation, models) = tokio::task::spawn_blocking(move || {
            (interp.interpret(&owned, &ctx2), interp.model_digests())
        })
        .await
        .map_err(|e| GateError::Unavailable(format!("interpreter failed: {e}")))?;
        match interpretation {
            Interpretation::Refusal { reason, candidates } => {
                let e = GateError::Refused { reason, candidates };
                Err(self.refuse(caller, &request, &models, e))
            }
            Interpretation::Clarify { question, options } => {
                self.record(json!({
                    "kind": "clarify",
                    "request": request,
                    "caller_uid": caller.uid,
                    "model_digests": models,
                    "question": question,
                    "options": options,
                }))?;
                Err(GateError::Clarify { question, options })
            }
            Interpretation::Plan {
                playbook,
                params,
                confidence,
            } => {
                // Four decimals are what a reader needs; a short decimal also reads
                // back exactly, so the audit record's hash stays verifiable.
                let confidence = (f64::from(confidence) * 1e4).round() / 1e4;
                let source = json!({ "kind": "text", "confidence": confidence });
                self.plan(
                    &playbook,
                    &params,
                    Some(ctx),
                    caller,
                    request,
                    models,
                    source,
                )
                .await
            }
        }
    }

    /// A structured intent: playbook id and raw parameters.
    pub async fn ask_structured(
        &self,
        playbook: &str,
        params: &BTreeMap<String, Value>,
        caller: Caller,
    ) -> Result<Outcome, GateError> {
        self.sweep_expired();
        if let Err(reason) = check_structured(playbook, params) {
            let names: Vec<&str> = params
                .keys()
                .take(MAX_PARAMS)
                .map(|k| cut(k, MAX_PARAM_NAME))
                .collect();
            let short = json!({
                "playbook": cut(playbook, MAX_PLAYBOOK_ID),
                "param_names": names,
                "oversize": reason,
            });
            let e = GateError::refused(reason);
            return Err(self.refuse(caller, &short, &[], e));
        }
        let request = json!({ "playbook": playbook, "params": params });
        let source = json!({ "kind": "structured" });
        self.plan(playbook, params, None, caller, request, vec![], source)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan(
        &self,
        id: &str,
        raw: &BTreeMap<String, Value>,
        ctx: Option<Context>,
        caller: Caller,
        request: Value,
        models: Vec<ModelDigest>,
        source: Value,
    ) -> Result<Outcome, GateError> {
        let inst = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let Some(inst) = inst else {
            let e = GateError::refused(format!("{id:?} is not in the signed catalog"));
            return Err(self.refuse(caller, &request, &models, e));
        };
        let needs_domains = inst
            .playbook
            .spec
            .params
            .iter()
            .any(|p| matches!(p.kind, ParamKind::ExistingDomain | ParamKind::NewDomain));
        let ctx = match ctx {
            Some(c) if !c.domains.is_empty() || !needs_domains => c,
            _ if needs_domains => match self.executor.context().await {
                Ok(c) => c,
                Err(e) => {
                    let e = GateError::Unavailable(format!(
                        "cannot read the network domains from hearth-netd: {e}"
                    ));
                    return Err(self.refuse(caller, &request, &models, e));
                }
            },
            _ => Context::default(),
        };
        let (params, steps) = match inst.playbook.plan(raw, &ctx) {
            Ok(x) => x,
            Err(hearth_playbook::format::PlanError::Param(p)) => {
                return Err(self.refuse(caller, &request, &models, GateError::InvalidParams(p)))
            }
            Err(hearth_playbook::format::PlanError::Render(r)) => {
                let e = GateError::refused(r.to_string());
                return Err(self.refuse(caller, &request, &models, e));
            }
        };
        // The steps run with the gate's identity, which the daemons trust:
        // each must be one the requester could make directly.
        if let Err(e) = crate::policy::check_rights(&steps, caller) {
            tracing::warn!(uid = caller.uid, playbook = id, "refused: {e}");
            return Err(self.refuse(caller, &request, &models, e.into()));
        }
        let spec = &inst.playbook.spec;
        let approval = self.settings.policy.approval_for(spec.risk);
        let mut preview = Vec::new();
        if approval != Approval::None {
            for (i, s) in steps.iter().enumerate() {
                match self.executor.preview(&s.call).await {
                    None => {}
                    Some(Ok(p)) => {
                        let v = serde_json::from_str(&p).unwrap_or(Value::String(p));
                        preview.push(json!({ "call": s.call.method.key, "preview": v }));
                    }
                    // The first step's dry run is the real call's answer
                    // now: a plan that cannot run is not offered. A daemon
                    // that did not answer judged nothing: shown, not decisive.
                    Some(Err(e)) if i == 0 && !e.is_unanswered() => {
                        let e = GateError::refused(format!(
                                "{} would fail ({}): {}",
                                s.call.method.key, e.name, e.message
                            ));
                        return Err(self.refuse(caller, &request, &models, e));
                    }
                    // A later step's dry run sees the state before the
                    // steps ahead of it run: shown, not decisive.
                    Some(Err(e)) => preview.push(json!({
                        "call": s.call.method.key,
                        "preview": {
                            "error": e.to_string(),
                            "note": if e.is_unanswered() {
                                "no answer to the dry run; checked again when it runs"
                            } else {
                                "previewed before the steps ahead of it ran; checked again when it runs"
                            },
                        },
                    })),
                }
            }
        }
        let created = SystemTime::now();
        let expires = created + Duration::from_secs(self.settings.policy.pending_ttl_secs);
        let plan = Plan {
            plan_id: random_id(),
            playbook: PlaybookRef {
                id: spec.id.clone(),
                version: spec.version,
                digest: inst.playbook.digest.clone(),
            },
            explanation: explanation(&inst, &params, approval),
            params,
            steps,
            risk: spec.risk,
            approval,
            preview,
            requester: caller.uid,
            expires_at_ms: if approval == Approval::None {
                0
            } else {
                now_ms(expires)
            },
            source,
        };
        let pending = Pending {
            plan,
            requester: caller,
            agreement: Agreement::default(),
            expires,
            request,
            models,
            trial: None,
        };
        let mut pending = pending;
        pending.trial = self.policy_trial(&pending.plan);
        if approval == Approval::None {
            return self.execute(pending).await;
        }
        let out = Outcome {
            missing: pending.agreement.missing(approval, caller),
            ..Outcome::of(Status::Pending, pending.plan.clone())
        };
        let full = {
            let mut pend = lock(&self.pending);
            let policy = &self.settings.policy;
            let mine = pend
                .values()
                .filter(|p| p.requester.uid == caller.uid)
                .count();
            let reason = if pend.len() >= policy.max_pending {
                Some(format!(
                    "{} plans are pending (waiting for agreement); at most {}: approve, cancel or let some expire first",
                    pend.len(),
                    policy.max_pending
                ))
            } else if mine >= policy.max_pending_per_requester {
                Some(format!(
                    "uid {} has {mine} pending plans; at most {}: confirm, cancel or let some expire first",
                    caller.uid, policy.max_pending_per_requester
                ))
            } else {
                None
            };
            match reason {
                Some(r) => Some((r, pending)),
                None => {
                    pend.insert(out.plan.plan_id.clone(), pending);
                    None
                }
            }
        };
        if let Some((reason, p)) = full {
            let e = GateError::refused(reason);
            return Err(self.refuse(caller, &p.request, &p.models, e));
        }
        Ok(out)
    }
}

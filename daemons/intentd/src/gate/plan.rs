//! The plan types: what a plan is (the playbook, its validated
//! parameters, its rendered steps, the approval it needs and the daemons'
//! previews) and what a gate operation reports ([`Outcome`]).

use hearth_common::contract::intent::Status;
use hearth_common::spec::{Params, Risk};
use hearth_playbook::{Call, RenderedStep};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Appended;
use crate::exec::ExecError;
use crate::policy::Approval;

/// The playbook a plan uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRef {
    /// Id.
    pub id: String,
    /// Version.
    pub version: u64,
    /// SHA-256 of the signed TOML, hex.
    pub digest: String,
}

/// A plan, as shown to people and scripts.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Its id (for Confirm/Approve/Cancel).
    pub plan_id: String,
    /// The playbook.
    pub playbook: PlaybookRef,
    /// Validated parameters, after defaults.
    pub params: Params,
    /// The concrete calls, each with its pending undo.
    pub steps: Vec<RenderedStep>,
    /// One line saying what will happen.
    pub explanation: String,
    /// The playbook's risk.
    pub risk: Risk,
    /// What approval it needs.
    pub approval: Approval,
    /// Previews given by the daemons, one per step that has one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Value>,
    /// Who asked.
    pub requester: u32,
    /// When it expires (Unix milliseconds); 0 for plans that ran at once.
    pub expires_at_ms: u64,
    /// How the request was read: `structured`, or the interpreter's
    /// confidence for text.
    pub source: Value,
}

/// One call made.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The call.
    #[serde(flatten)]
    pub call: Call,
    /// It succeeded.
    pub ok: bool,
    /// Its result (JSON text or plain value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Its error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepReport {
    /// The report of `call` from its daemon's answer.
    pub(super) fn of(call: Call, answer: Result<String, ExecError>) -> StepReport {
        let (result, error) = match answer {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_string())),
        };
        StepReport {
            call,
            ok: error.is_none(),
            result,
            error,
        }
    }
}

/// What a gate operation produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// State.
    pub status: Status,
    /// The plan.
    pub plan: Plan,
    /// What is still needed (pending plans).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<&'static str>,
    /// Steps run, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// Undo calls made after a failure, in order (reverse of the steps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<StepReport>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The audit record written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<Appended>,
    /// Whether the record's digest was measured into the TPM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<bool>,
    /// For a change on trial: when it is reverted unless kept (Unix
    /// milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_until_ms: Option<u64>,
}

impl Outcome {
    /// An outcome of `status` for `plan` before anything ran or was
    /// recorded; the stage that makes it fills in the rest.
    pub(super) fn of(status: Status, plan: Plan) -> Outcome {
        Outcome {
            status,
            plan,
            missing: vec![],
            steps: vec![],
            rollback: vec![],
            error: None,
            audit: None,
            measured: None,
            trial_until_ms: None,
        }
    }
}

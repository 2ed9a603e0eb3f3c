//! The gate engine: request -> plan -> approvals -> execution with rollback
//! -> audit (and TPM measurement). No bus here: the D-Bus adapter converts
//! types and identifies the caller; this module decides.
//!
//! This file holds the [`Gate`] itself (its state, opening it, the audit
//! log's records), its [`Settings`] and [`GateError`]; each stage is a
//! module of its own, every one adding methods to [`Gate`]:
//! * `playbooks`: the verified, measured catalog; installing playbooks;
//! * `request`: text and structured requests -> plans (size bounds,
//!   validation, rights, the daemons' previews);
//! * `plan`: the plan types ([`Plan`], [`Outcome`], …);
//! * `approval`: pending plans, confirmation, approval, cancel, expiry;
//! * `execute`: running an agreed plan with its undo on failure;
//! * `trial`: changes on trial, reverted unless kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_common::types::ParseError;
use hearth_playbook::catalog::Installed;
use hearth_playbook::{Refusal, RollbackState, TrustConfig, TrustStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{self, Appended, AuditLog, Verification};
use crate::exec::{Executor, Measurer};
use crate::interpret::{Interpreter, ModelDigest};
use crate::policy::{Agreement, Caller, PolicyConfig, PolicyError};

mod approval;
mod execute;
mod plan;
mod playbooks;
mod request;
mod trial;

use execute::changed_nothing;
/// An outcome's state is the contract's own type, the one hearthctl reads.
pub use hearth_common::contract::intent::Status;
pub use plan::{Outcome, Plan, PlaybookRef, StepReport};
pub use request::{
    MAX_PARAMS, MAX_PARAMS_JSON, MAX_PARAM_NAME, MAX_PARAM_VALUE, MAX_PLAYBOOK_ID, MAX_TEXT,
};
pub use trial::{check_window, Trial, TrialEnd, MAX_TRIAL_SECS, MIN_TRIAL_SECS};

/// A string cut to at most `max` bytes, on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Where the gate keeps things and how it decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory of `<id>.dsse.json` envelopes.
    pub catalog_dir: PathBuf,
    /// Trust anchors and CRLs.
    #[serde(default)]
    pub trust: TrustConfig,
    /// Approval policy.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The audit log (default: `<state dir>/audit.jsonl`).
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
}

/// A failure or refusal of a gate operation. Nothing ran.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The request was refused (too long, several actions, outside the
    /// catalog, …).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
        /// Closest playbooks, when known.
        candidates: Vec<String>,
    },
    /// The interpreter is not sure what was meant: a question and the
    /// plans it could mean (nothing ran; one is chosen as a structured
    /// intent).
    #[error("not sure what was meant: {question}")]
    Clarify {
        /// The question.
        question: String,
        /// The plans offered.
        options: Vec<crate::interpret::ClarifyOption>,
    },
    /// A parameter is missing or invalid.
    #[error("refused: {0}")]
    InvalidParams(#[from] ParseError),
    /// No such pending plan.
    #[error("no pending plan {0}")]
    NotFound(String),
    /// The plan waited too long.
    #[error("plan {0} expired; ask again")]
    Expired(String),
    /// The caller may not do this.
    #[error("{0}")]
    NotAuthorized(#[from] PolicyError),
    /// A needed daemon or file is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// The audit log could not be written: nothing is run without a record.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// A playbook file was refused.
    #[error(transparent)]
    Playbook(#[from] Refusal),
}

impl GateError {
    /// A refusal with no closest playbooks to offer.
    pub(crate) fn refused(reason: impl Into<String>) -> Self {
        GateError::Refused {
            reason: reason.into(),
            candidates: vec![],
        }
    }
}

struct Pending {
    plan: Plan,
    requester: Caller,
    agreement: Agreement,
    expires: SystemTime,
    request: Value,
    models: Vec<ModelDigest>,
    /// Run on trial for this many seconds.
    trial: Option<u32>,
}

/// The gate.
pub struct Gate<E: Executor, I: Interpreter + ?Sized, M: Measurer> {
    settings: Settings,
    trust: RwLock<TrustStore>,
    rollback: Mutex<RollbackState>,
    catalog: RwLock<BTreeMap<String, Installed>>,
    refused: RwLock<Vec<Refusal>>,
    /// The text path's language file: the SHA-256 of the signed language
    /// file the interpreter accepted, or why plain-language requests are
    /// refused (missing, refused, not measured, not what was trained).
    language: RwLock<Result<String, String>>,
    pending: Mutex<BTreeMap<String, Pending>>,
    audit: Mutex<AuditLog>,
    audit_path: PathBuf,
    executor: E,
    interpreter: Arc<I>,
    measurer: M,
    /// Catalog files (name, SHA-256 of the envelope) measured by
    /// [`Gate::reload_measured`].
    measured_playbooks: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Changes on trial, by plan id, as stored in `trials_path`.
    trials: Mutex<BTreeMap<String, Trial>>,
    trials_path: PathBuf,
}

fn now_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 12];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !ok {
        // Never reached on Linux; still unique enough within one process.
        let n = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&n.to_le_bytes()[..12]);
    }
    hex::encode(b)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    /// Opens the gate: trust store, anti-rollback state and audit log under
    /// `state_dir`, then loads the catalog (refused files are logged).
    pub fn open(
        settings: Settings,
        state_dir: &Path,
        executor: E,
        interpreter: Arc<I>,
        measurer: M,
    ) -> Result<Self, GateError> {
        let trust = TrustStore::load(&settings.trust)
            .map_err(|e| GateError::Unavailable(format!("trust anchors: {e}")))?;
        let rollback = RollbackState::load(&state_dir.join("playbook-versions.json"))
            .map_err(|e| GateError::Unavailable(e.to_string()))?;
        let audit_path = settings
            .audit_log
            .clone()
            .unwrap_or_else(|| state_dir.join("audit.jsonl"));
        let audit = AuditLog::open(&audit_path)?;
        for (id, secs) in &settings.policy.trial {
            check_window(*secs)
                .map_err(|e| GateError::Unavailable(format!("policy.trial.\"{id}\": {e}")))?;
        }
        let trials_path = state_dir.join("trials.json");
        let trials = trial::load(&trials_path)?;
        let gate = Gate {
            settings,
            trust: RwLock::new(trust),
            rollback: Mutex::new(rollback),
            catalog: RwLock::new(BTreeMap::new()),
            refused: RwLock::new(Vec::new()),
            language: RwLock::new(Err("the catalog is not loaded yet".into())),
            pending: Mutex::new(BTreeMap::new()),
            audit: Mutex::new(audit),
            audit_path,
            executor,
            interpreter,
            measurer,
            measured_playbooks: Mutex::new(std::collections::BTreeSet::new()),
            trials: Mutex::new(trials),
            trials_path,
        };
        gate.reload()?;
        Ok(gate)
    }

    /// Verifies the audit log.
    pub fn audit_verify(&self) -> Result<Verification, GateError> {
        // Hold the lock so no append interleaves with the read.
        let _g = lock(&self.audit);
        Ok(audit::verify(&self.audit_path)?)
    }

    /// Verifies the audit log's chain and checks it against hearth-attestd's
    /// event log (see [`audit::verify_against_events`]).
    pub fn audit_verify_against(&self, events: &[Value]) -> Result<Verification, GateError> {
        let _g = lock(&self.audit);
        Ok(audit::verify_against_events(&self.audit_path, events)?)
    }

    /// The last `limit` audit records.
    pub fn audit_list(&self, limit: usize) -> Result<Vec<Value>, GateError> {
        let _g = lock(&self.audit);
        Ok(audit::list(&self.audit_path, limit)?)
    }

    fn record(&self, event: Value) -> Result<Appended, GateError> {
        Ok(lock(&self.audit).append(&event)?)
    }

    fn refuse(
        &self,
        caller: Caller,
        request: &Value,
        models: &[ModelDigest],
        err: GateError,
    ) -> GateError {
        let (reason, candidates) = match &err {
            GateError::Refused { reason, candidates } => (reason.clone(), candidates.clone()),
            other => (other.to_string(), Vec::new()),
        };
        let rec = self.record(json!({
            "kind": "refused",
            "request": request,
            "caller_uid": caller.uid,
            "model_digests": models,
            "reason": reason,
            "candidates": candidates,
        }));
        match rec {
            Ok(_) => err,
            Err(e) => e,
        }
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

//! The gate engine: request -> plan -> approvals -> execution with rollback
//! -> audit (and TPM measurement). No bus here: the D-Bus adapter converts
//! types and identifies the caller; this module decides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_common::catalog::{Context, ParamKind, Params, Risk};
use hearth_common::types::ParseError;
use hearth_playbook::catalog::{self, Installed, Summary};
use hearth_playbook::{Call, Refusal, RenderedStep, RollbackState, TrustConfig, TrustStore};
use rustls_pki_types::UnixTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{self, Appended, AuditLog, Verification};
use crate::exec::{ExecError, Executor, Measurer};
use crate::interpret::{Interpretation, Interpreter, ModelDigest};
use crate::policy::{Agreement, Approval, Caller, PolicyConfig, PolicyError};

mod trial;
pub use trial::{check_window, Trial, TrialEnd, MAX_TRIAL_SECS, MIN_TRIAL_SECS};

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
        /// The plans offered (`playbook`, `params`, `summary`).
        options: Vec<Value>,
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

/// The outcome's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for approvals.
    Pending,
    /// Every step ran.
    Executed,
    /// A step failed; completed steps were undone.
    Failed,
    /// Cancelled before running.
    Cancelled,
    /// Every step ran on trial: reverted at `trial_until_ms` unless kept.
    Trial,
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

/// True when a step's answer says it changed nothing (an allow already in
/// force): its undo would take away what was there before, so it is not
/// run.
fn changed_nothing(step: &RenderedStep, result: &str) -> bool {
    hearth_common::contract::describe::change(step.call.method.key, result)
        .is_some_and(|d| d.nothing)
}

/// The gate.
pub struct Gate<E: Executor, I: Interpreter + ?Sized, M: Measurer> {
    settings: Settings,
    trust: RwLock<TrustStore>,
    rollback: Mutex<RollbackState>,
    catalog: RwLock<BTreeMap<String, Installed>>,
    refused: RwLock<Vec<Refusal>>,
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

    /// Re-reads the trust anchors and CRLs (an appliance CA or CRL that
    /// appeared since, a new CRL), then the catalog directory. When the
    /// trust files cannot be read or parsed the catalog is emptied (fail
    /// closed: a signer revoked by the CRL that cannot be read must not keep
    /// running) and the error names the file; a later reload that succeeds
    /// restores it.
    pub fn reload(&self) -> Result<usize, GateError> {
        let loaded = self.load_catalog()?;
        Ok(self.apply_catalog(loaded))
    }

    /// As [`Gate::reload`] (the daemon's ReloadCatalog and InstallPlaybook),
    /// and every playbook file not measured yet is measured into the TPM
    /// (kind `playbook-catalog`, its file name, the SHA-256 of the envelope,
    /// as at start) before it joins the catalog. A file that cannot be
    /// measured, or that changed since it was verified, is left out (not
    /// usable) and the error names it; the others are served.
    pub async fn reload_measured(&self) -> Result<usize, GateError> {
        use sha2::{Digest, Sha256};
        let mut loaded = self.load_catalog()?;
        let mut left_out = Vec::new();
        let ids: Vec<String> = loaded.playbooks.keys().cloned().collect();
        for id in ids {
            let Some(inst) = loaded.playbooks.get(&id) else {
                continue;
            };
            let name = inst
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("{id}.dsse.json"));
            // Measure the bytes whose payload is the playbook verified.
            let digest = match std::fs::read(&inst.file) {
                Ok(bytes) => {
                    let same = serde_json::from_slice::<hearth_playbook::dsse::Envelope>(&bytes)
                        .ok()
                        .and_then(|e| e.payload_bytes().ok())
                        .is_some_and(|p| hex::encode(Sha256::digest(&p)) == inst.playbook.digest);
                    if same {
                        Ok(hex::encode(Sha256::digest(&bytes)))
                    } else {
                        Err("it changed since it was verified".to_string())
                    }
                }
                Err(e) => Err(format!("it cannot be read: {e}")),
            };
            let result = match digest {
                Ok(d) if lock(&self.measured_playbooks).contains(&(name.clone(), d.clone())) => {
                    Ok(())
                }
                Ok(d) => match self.measurer.measure("playbook-catalog", &name, &d).await {
                    Ok(()) => {
                        lock(&self.measured_playbooks).insert((name.clone(), d));
                        Ok(())
                    }
                    Err(e) => Err(format!("hearth-attestd: {e}")),
                },
                Err(e) => Err(e),
            };
            if let Err(why) = result {
                tracing::error!(file = %name, "playbook not measured, left out of the catalog: {why}");
                loaded.playbooks.remove(&id);
                left_out.push(format!("{name} ({why})"));
            }
        }
        let n = self.apply_catalog(loaded);
        if left_out.is_empty() {
            Ok(n)
        } else {
            Err(GateError::Unavailable(format!(
                "not measured into the TPM, so left out of the catalog until a reload measures them: {}",
                left_out.join("; ")
            )))
        }
    }

    /// Reloads the trust store and verifies the catalog directory (see
    /// [`Gate::reload`]); installs nothing.
    fn load_catalog(&self) -> Result<catalog::Loaded, GateError> {
        let fresh = match TrustStore::load(&self.settings.trust) {
            Ok(t) => t,
            Err(e) => {
                self.catalog
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                tracing::error!(error = %e, "trust anchors or CRLs unusable: every playbook is refused");
                return Err(GateError::Unavailable(format!(
                    "trust anchors: {e}; every playbook is refused until it is fixed"
                )));
            }
        };
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let mut rb = lock(&self.rollback);
        catalog::load_dir(&trust, &mut rb, &self.settings.catalog_dir, UnixTime::now()).map_err(
            |e| GateError::Unavailable(format!("{}: {e}", self.settings.catalog_dir.display())),
        )
    }

    /// Serves `loaded` as the catalog; the number of playbooks.
    fn apply_catalog(&self, loaded: catalog::Loaded) -> usize {
        let specs: Vec<_> = loaded
            .playbooks
            .values()
            .map(|i| i.playbook.spec.clone())
            .collect();
        self.interpreter.set_catalog(&specs);
        let n = loaded.playbooks.len();
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = loaded.playbooks;
        *self.refused.write().unwrap_or_else(|p| p.into_inner()) = loaded.refused;
        n
    }

    /// The accepted playbooks.
    pub fn catalog(&self) -> Vec<Summary> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|i| i.summary())
            .collect()
    }

    /// One accepted playbook's full spec and steps, as JSON.
    pub fn show(&self, id: &str) -> Option<Value> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let i = cat.get(id)?;
        Some(json!({
            "summary": i.summary(),
            "spec": i.playbook.spec,
            "steps": i.playbook.steps.iter().map(|s| json!({
                "call": s.call.method.key,
                "args": s.call.method.args.iter().zip(&s.call.args).map(|(a, t)| (a.name.to_string(), Value::String(t.source()))).collect::<serde_json::Map<_, _>>(),
                "undo": s.undo.as_ref().map(|u| json!({
                    "call": u.method.key,
                    "args": u.method.args.iter().zip(&u.args).map(|(a, t)| (a.name.to_string(), Value::String(t.source()))).collect::<serde_json::Map<_, _>>(),
                })),
                "irreversible": s.irreversible,
            })).collect::<Vec<_>>(),
        }))
    }

    /// The files refused at the last load.
    pub fn refused(&self) -> Vec<Refusal> {
        self.refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Verifies an envelope against the trust store and the anti-rollback
    /// state without installing it.
    pub fn verify_envelope(&self, name: &str, bytes: &[u8]) -> Result<Summary, GateError> {
        let label = Path::new(name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("envelope"));
        let rb = lock(&self.rollback);
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let r = catalog::verify_bytes(&trust, &rb, &label, bytes, UnixTime::now());
        drop(trust);
        drop(rb);
        match r {
            Ok(i) => Ok(i.summary()),
            Err(r) => {
                tracing::warn!(kind = r.kind.as_str(), "{r}");
                Err(r.into())
            }
        }
    }

    /// Installs an envelope (admins only), then reloads, measuring it (and
    /// any other file not measured yet) before it can be used
    /// ([`Gate::reload_measured`]).
    pub async fn install(
        &self,
        name: &str,
        bytes: &[u8],
        caller: Caller,
    ) -> Result<Summary, GateError> {
        if !caller.is_admin {
            return Err(PolicyError::NotAdmin.into());
        }
        let label = Path::new(name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("envelope"));
        let inst = {
            let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
            let mut rb = lock(&self.rollback);
            catalog::install_bytes(
                &trust,
                &mut rb,
                &label,
                bytes,
                &self.settings.catalog_dir,
                UnixTime::now(),
            )
        };
        let inst = match inst {
            Ok(i) => i,
            Err(r) => {
                tracing::warn!(kind = r.kind.as_str(), "{r}");
                self.record(json!({
                    "kind": "install-refused", "caller_uid": caller.uid,
                    "file": name, "refusal": r,
                }))?;
                return Err(r.into());
            }
        };
        self.record(json!({
            "kind": "installed", "caller_uid": caller.uid,
            "playbook": {"id": inst.playbook.spec.id, "version": inst.playbook.spec.version, "digest": inst.playbook.digest},
            "signer": inst.signer,
        }))?;
        self.reload_measured().await?;
        Ok(inst.summary())
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

    /// A text request (at most [`MAX_TEXT`] characters).
    pub async fn ask(&self, text: &str, caller: Caller) -> Result<Outcome, GateError> {
        self.sweep_expired();
        let request = json!({ "text": text });
        let trimmed = text.trim();
        if trimmed.is_empty() {
            let e = GateError::Refused {
                reason: "the request is empty".into(),
                candidates: vec![],
            };
            return Err(self.refuse(caller, &request, &[], e));
        }
        let n = text.chars().count();
        if n > MAX_TEXT {
            let e = GateError::Refused {
                reason: format!("the request has {n} characters; at most {MAX_TEXT}"),
                candidates: vec![],
            };
            let short = json!({ "text": text.chars().take(MAX_TEXT).collect::<String>(), "truncated_from": n });
            return Err(self.refuse(caller, &short, &[], e));
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
                let options: Vec<Value> = options
                    .iter()
                    .map(|o| json!({ "playbook": o.playbook, "params": o.params, "summary": o.summary }))
                    .collect();
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
            let e = GateError::Refused {
                reason,
                candidates: vec![],
            };
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
            let e = GateError::Refused {
                reason: format!("{id:?} is not in the signed catalog"),
                candidates: vec![],
            };
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
                let e = GateError::Refused {
                    reason: r.to_string(),
                    candidates: vec![],
                };
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
                        let e = GateError::Refused {
                            reason: format!(
                                "{} would fail ({}): {}",
                                s.call.method.key, e.name, e.message
                            ),
                            candidates: vec![],
                        };
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
            status: Status::Pending,
            missing: pending.agreement.missing(approval, caller),
            plan: pending.plan.clone(),
            steps: vec![],
            rollback: vec![],
            error: None,
            audit: None,
            measured: None,
            trial_until_ms: None,
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
            let e = GateError::Refused {
                reason,
                candidates: vec![],
            };
            return Err(self.refuse(caller, &p.request, &p.models, e));
        }
        Ok(out)
    }

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
                    return Err(GateError::Refused {
                        reason: format!(
                            "{} cannot be tried: step {} ({}) has no undo",
                            p.plan.playbook.id,
                            i + 1,
                            p.plan.steps[i].call.method.key
                        ),
                        candidates: vec![],
                    });
                }
                p.trial = Some(secs);
            }
        }
        self.confirm(plan_id, caller).await
    }

    /// The trial window the policy sets for a plan's playbook, when every
    /// step of the plan has an undo.
    fn policy_trial(&self, plan: &Plan) -> Option<u32> {
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
        if self.sweep_expired().iter().any(|id| id == plan_id) {
            return Err(GateError::Expired(plan_id.into()));
        }
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
                    status: Status::Pending,
                    plan: p.plan.clone(),
                    missing,
                    steps: vec![],
                    rollback: vec![],
                    error: None,
                    audit: None,
                    measured: None,
                    trial_until_ms: None,
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
        if self.sweep_expired().iter().any(|id| id == plan_id) {
            return Err(GateError::Expired(plan_id.into()));
        }
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
        let rec = self.record(json!({
            "kind": "cancelled",
            "request": p.request,
            "caller_uid": p.requester.uid,
            "cancelled_by": caller.uid,
            "playbook": p.plan.playbook,
            "model_digests": p.models,
            "plan": p.plan,
            "approval": p.agreement,
        }))?;
        Ok(Outcome {
            status: Status::Cancelled,
            plan: p.plan,
            missing: vec![],
            steps: vec![],
            rollback: vec![],
            error: None,
            audit: Some(rec),
            measured: None,
            trial_until_ms: None,
        })
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
            if let Err(e) = self.record(json!({
                "kind": "expired",
                "request": p.request,
                "caller_uid": p.requester.uid,
                "playbook": p.plan.playbook,
                "model_digests": p.models,
                "plan": p.plan,
                "approval": p.agreement,
            })) {
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

    /// Measures an audit record's hash (the chain's head after it) into the
    /// TPM as an `action` named `<playbook>@<seq>`.
    async fn anchor(&self, playbook: &str, rec: &Appended) -> Result<(), ExecError> {
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
                    rollback.push(StepReport {
                        ok: r.is_ok(),
                        result: r.as_ref().ok().cloned(),
                        error: r.err().map(|e| e.to_string()),
                        call,
                    });
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
    async fn execute(&self, p: Pending) -> Result<Outcome, GateError> {
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
            match self.executor.call(&step.call).await {
                Ok(result) => {
                    reports.push(StepReport {
                        call: step.call.clone(),
                        ok: true,
                        result: Some(result.clone()),
                        error: None,
                    });
                    done.push((i, result));
                }
                Err(e) => {
                    tracing::warn!(
                        step = i + 1,
                        call = step.call.method.key,
                        "step failed: {e}"
                    );
                    reports.push(StepReport {
                        call: step.call.clone(),
                        ok: false,
                        result: None,
                        error: Some(e.to_string()),
                    });
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
            status,
            plan,
            missing: vec![],
            steps: reports,
            rollback,
            error: failure.map(|e| e.to_string()),
            audit: Some(rec),
            measured: Some(measured),
            trial_until_ms,
        })
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

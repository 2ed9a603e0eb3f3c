//! `org.hearth.Intent1` results (hearth-intentd, the intent gate; see
//! `docs/dbus/intent.md`), and the typed calls that read them.
//!
//! hearth-intentd keeps its own internal types (they hold the playbook
//! crate's calls and templates); these are their *wire view*: what the
//! gate writes, as every client reads it. hearth-intentd's tests serialize
//! the gate's real values and decode them here, so the two cannot drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::decode;
use crate::proxies::intent::IntentProxy;
use crate::spec::{PlaybookSpec, Risk};
use crate::HearthError;

/// A concrete argument value of a call: a number (`q`, `u`) or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgValue {
    /// A number.
    Num(u64),
    /// A string.
    Str(String),
}

impl std::fmt::Display for ArgValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgValue::Num(n) => write!(f, "{n}"),
            ArgValue::Str(s) => f.write_str(s),
        }
    }
}

/// The playbook a plan uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookRef {
    /// Its id (`net.allow`).
    pub id: String,
    /// Its version.
    pub version: u64,
    /// SHA-256 of the signed TOML, hex.
    pub digest: String,
}

/// The approval a plan needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Runs at once.
    None,
    /// The requester confirms.
    Confirm,
    /// The requester confirms and a hearth-admins member agrees.
    Admin,
    /// The requester confirms and another hearth-admins member approves.
    TwoPerson,
}

impl Approval {
    /// `none`, `confirm`, `admin` or `two-person`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Approval::None => "none",
            Approval::Confirm => "confirm",
            Approval::Admin => "admin",
            Approval::TwoPerson => "two-person",
        }
    }

    /// Words for a plan's one-line summary.
    pub fn describe(&self) -> &'static str {
        match self {
            Approval::None => "runs at once",
            Approval::Confirm => "needs your confirmation",
            Approval::Admin => "needs your confirmation and a hearth-admins member",
            Approval::TwoPerson => "needs your confirmation and a second hearth-admins member",
        }
    }
}

/// An undo call waiting for its step's result: its arguments are the
/// playbook's templates (`{result.serial}`) with the parameters filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UndoCall {
    /// The allow-listed method (`net.Revoke`).
    pub call: String,
    /// Its arguments by name, as template text.
    pub args: BTreeMap<String, String>,
}

/// One step of a plan: its concrete call and what reverts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// The allow-listed method (`net.Allow`).
    pub call: String,
    /// Its arguments by name.
    pub args: BTreeMap<String, ArgValue>,
    /// What reverts it, once its result is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoCall>,
    /// True when it cannot be reverted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

/// A dry run that failed or got no answer while the plan was made (a later
/// step's; the first step's refusal refuses the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewFailure {
    /// The error, `org.hearth.Error.X: message`.
    pub error: String,
    /// Why it does not decide (checked again when the step runs).
    pub note: String,
}

/// What a step's dry run answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PreviewAnswer {
    /// The dry run failed or got no answer.
    Failed(PreviewFailure),
    /// The daemon's answer: the JSON of its change type (a `NetChange`,
    /// `ZoneDiff`, …), or a plain string when it was not JSON.
    Answer(Value),
}

impl PreviewAnswer {
    /// The answer as the daemon sent it (a string as is; JSON as text).
    pub fn text(&self) -> String {
        match self {
            PreviewAnswer::Answer(Value::String(s)) => s.clone(),
            PreviewAnswer::Answer(v) => v.to_string(),
            PreviewAnswer::Failed(f) => serde_json::to_string(f).unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for PreviewAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreviewAnswer::Answer(v) => write!(f, "{v}"),
            PreviewAnswer::Failed(x) => {
                write!(f, "{}", serde_json::to_value(x).unwrap_or_default())
            }
        }
    }
}

/// One step's preview in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// The step's method.
    pub call: String,
    /// What its dry run answered.
    pub preview: PreviewAnswer,
}

/// How the request was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A structured intent (`AskStructured`).
    Structured,
    /// Plain text, read by the interpreter.
    Text {
        /// The interpreter's confidence, 0 to 1.
        confidence: f64,
    },
}

/// A plan, as `Ask` and `ListPending` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Its id (for Confirm, Approve, Cancel).
    pub plan_id: String,
    /// The playbook.
    pub playbook: PlaybookRef,
    /// The validated parameters, after defaults.
    pub params: BTreeMap<String, Value>,
    /// The concrete calls, each with its pending undo.
    pub steps: Vec<PlanStep>,
    /// One line saying what will happen.
    pub explanation: String,
    /// The playbook's risk.
    pub risk: Risk,
    /// What approval it needs.
    pub approval: Approval,
    /// The daemons' previews, one per step that has one (plans waiting for
    /// approval only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preview: Vec<Preview>,
    /// Who asked (uid).
    pub requester: u32,
    /// When it expires (Unix milliseconds); 0 for plans that ran at once.
    pub expires_at_ms: u64,
    /// How the request was read.
    pub source: Source,
}

/// The state of an [`Outcome`].
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

/// One call the gate made (a step, a rollback or a trial's undo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepReport {
    /// The allow-listed method.
    pub call: String,
    /// Its arguments by name.
    pub args: BTreeMap<String, ArgValue>,
    /// It succeeded.
    pub ok: bool,
    /// Its result, as text (the daemon's JSON, or a plain value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where an audit record went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Appended {
    /// Its sequence number (0-based).
    pub seq: u64,
    /// Its hash, hex.
    pub hash: String,
}

/// What a gate operation on a plan produced (`Ask`, `AskStructured`,
/// `Confirm`, `ConfirmTrial`, `Approve`, `Cancel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The state.
    pub status: Status,
    /// The plan.
    pub plan: Plan,
    /// What is still needed (pending plans): "the requester's confirmation", …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// The steps run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
    /// The undo calls made after a failure, in order (reverse of the steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<StepReport>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The audit record written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Appended>,
    /// Whether that record was measured into the TPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<bool>,
    /// For a change on trial: when it is reverted unless kept (Unix
    /// milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_until_ms: Option<u64>,
}

/// The `status` of a [`Clarify`]: always `clarify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClarifyStatus {
    /// `clarify`.
    Clarify,
}

/// A plan a clarifying question offers; chosen with
/// `AskStructured(playbook, params)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClarifyOption {
    /// The playbook id.
    pub playbook: String,
    /// Raw parameters (validated by the gate when chosen).
    pub params: BTreeMap<String, Value>,
    /// The plan in plain words.
    pub summary: String,
}

/// `Ask`'s answer when the interpreter is not sure what was meant: a
/// question and the plans it could mean. Nothing was planned or run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clarify {
    /// `clarify`.
    pub status: ClarifyStatus,
    /// The question.
    pub question: String,
    /// The plans offered.
    pub options: Vec<ClarifyOption>,
}

/// `Ask`'s result: an [`Outcome`], or a [`Clarify`] question.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// The request was planned (and run, for a read).
    Outcome(Box<Outcome>),
    /// A question; nothing ran.
    Clarify(Clarify),
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        if v.get("status").and_then(Value::as_str) == Some("clarify") {
            Clarify::deserialize(v)
                .map(Answer::Clarify)
                .map_err(D::Error::custom)
        } else {
            Outcome::deserialize(v)
                .map(|o| Answer::Outcome(Box::new(o)))
                .map_err(D::Error::custom)
        }
    }
}

/// An undo call as stored for a trial: the method and its values in
/// argument order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCall {
    /// The allow-listed method.
    pub call: String,
    /// Its values, in the method's argument order.
    pub args: Vec<ArgValue>,
}

/// A change on trial, as `ListTrials` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Kept (`Keep`).
    Kept,
    /// Reverted (window over, restart, or `Cancel`).
    Reverted,
}

/// `Keep`'s result, and `Cancel`'s for a change on trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialEnd {
    /// The plan.
    pub plan_id: String,
    /// Kept or reverted.
    pub status: TrialStatus,
    /// Why it was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The undo calls made, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<StepReport>,
    /// The audit record written.
    pub audit: Appended,
    /// Whether that record was measured into the TPM.
    pub measured: bool,
}

/// `Cancel`'s result: the cancelled plan's [`Outcome`], or for a change on
/// trial the [`TrialEnd`] of its revert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Ended {
    /// A pending plan, cancelled.
    Outcome(Box<Outcome>),
    /// A change on trial, reverted now.
    Trial(TrialEnd),
}

impl<'de> Deserialize<'de> for Ended {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        if v.get("plan").is_some() {
            Outcome::deserialize(v)
                .map(|o| Ended::Outcome(Box::new(o)))
                .map_err(D::Error::custom)
        } else {
            TrialEnd::deserialize(v)
                .map(Ended::Trial)
                .map_err(D::Error::custom)
        }
    }
}

/// A playbook of the catalog, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Its id.
    pub id: String,
    /// Its version.
    pub version: u64,
    /// Its risk.
    pub risk: Risk,
    /// What it does.
    pub description: String,
    /// SHA-256 of the playbook's TOML, hex.
    pub digest: String,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

/// A playbook file refused at load or install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The file.
    pub file: String,
    /// The kind (`unsigned`, `tampered`, `rolled-back`, …).
    pub kind: String,
    /// The details.
    pub reason: String,
}

/// `Catalog`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The verified playbooks.
    pub playbooks: Vec<Summary>,
    /// The files refused at the last load.
    pub refused: Vec<Refusal>,
}

/// `ReloadCatalog`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reloaded {
    /// How many playbooks the catalog holds now.
    pub playbooks: usize,
    /// The files refused.
    pub refused: Vec<Refusal>,
}

/// One step of a playbook as `ShowPlaybook` gives it: the templates, not
/// yet filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookStep {
    /// The allow-listed method.
    pub call: String,
    /// Its arguments by name, as template text (`{from}`).
    pub args: BTreeMap<String, String>,
    /// Its undo, if any (`null`: none).
    pub undo: Option<UndoCall>,
    /// True when it cannot be reverted.
    pub irreversible: bool,
}

/// `ShowPlaybook`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookShown {
    /// As in the catalog.
    pub summary: Summary,
    /// Its spec: what it does and asks for.
    pub spec: PlaybookSpec,
    /// Its steps.
    pub steps: Vec<PlaybookStep>,
}

/// `AuditVerify`'s and `AuditVerifyAgainst`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// True when the whole chain holds (and, against the TPM, every action
    /// record is measured and every measured action is recorded).
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// The problems found, each naming the line (1-based).
    pub problems: Vec<String>,
}

/// The request an audit record is about, as the gate recorded it (one of
/// a text, a structured intent, or their cut forms when oversize).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRequest {
    /// The text asked (cut to 512 characters when longer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The length of an oversize text, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<u64>,
    /// The playbook of a structured intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// Its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, Value>>,
    /// An oversize structured intent's parameter names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_names: Option<Vec<String>>,
    /// Why a structured intent was oversize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oversize: Option<String>,
}

/// An audit record's event. Every kind (`intent`, `executed`, `failed`,
/// `refused`, `clarify`, `kept`, …) carries its own details besides the
/// fields listings read, which are typed here; the rest stays as recorded
/// (`details`), so this type does not refuse unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The kind of record.
    pub kind: String,
    /// Who asked (or agreed), when a person is behind it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_uid: Option<u32>,
    /// The playbook, for records about a plan or an install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<PlaybookRef>,
    /// The request, for records about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<AuditRequest>,
    /// Everything else the record holds.
    #[serde(flatten)]
    pub details: BTreeMap<String, Value>,
}

/// One audit record, as `AuditList` gives it (a line of the log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Its sequence number (0-based).
    pub seq: u64,
    /// When it was written (Unix milliseconds).
    pub time: u64,
    /// The previous record's hash (64 zeros for the first).
    pub prev: String,
    /// What happened.
    pub event: AuditEvent,
    /// SHA-256 of the record without `hash`, hex.
    pub hash: String,
}

const IFACE: &str = "org.hearth.Intent1";

fn method(m: &str) -> String {
    format!("{IFACE}.{m}")
}

/// `Ask`: a plain-language request (at most 512 characters).
pub async fn ask(p: &IntentProxy<'_>, text: &str) -> Result<Answer, HearthError> {
    decode(&method("Ask"), &p.ask(text).await?)
}

/// `AskStructured`: a playbook id and a JSON object of raw parameters.
pub async fn ask_structured(
    p: &IntentProxy<'_>,
    playbook: &str,
    params_json: &str,
) -> Result<Outcome, HearthError> {
    decode(
        &method("AskStructured"),
        &p.ask_structured(playbook, params_json).await?,
    )
}

/// `Confirm`: the requester confirms a pending plan.
pub async fn confirm(p: &IntentProxy<'_>, plan_id: &str) -> Result<Outcome, HearthError> {
    decode(&method("Confirm"), &p.confirm(plan_id).await?)
}

/// `ConfirmTrial`: confirms a pending plan to run on trial for `seconds`.
pub async fn confirm_trial(
    p: &IntentProxy<'_>,
    plan_id: &str,
    seconds: u32,
) -> Result<Outcome, HearthError> {
    decode(
        &method("ConfirmTrial"),
        &p.confirm_trial(plan_id, seconds).await?,
    )
}

/// `Approve`: a hearth-admins member approves a pending plan.
pub async fn approve(p: &IntentProxy<'_>, plan_id: &str) -> Result<Outcome, HearthError> {
    decode(&method("Approve"), &p.approve(plan_id).await?)
}

/// `Cancel`: a pending plan's outcome, or a change on trial reverted now.
pub async fn cancel(p: &IntentProxy<'_>, plan_id: &str) -> Result<Ended, HearthError> {
    decode(&method("Cancel"), &p.cancel(plan_id).await?)
}

/// `Keep`: keeps a change on trial.
pub async fn keep(p: &IntentProxy<'_>, plan_id: &str) -> Result<TrialEnd, HearthError> {
    decode(&method("Keep"), &p.keep(plan_id).await?)
}

/// `ListTrials`: the changes on trial.
pub async fn trials(p: &IntentProxy<'_>) -> Result<Vec<Trial>, HearthError> {
    decode(&method("ListTrials"), &p.list_trials().await?)
}

/// `ListPending`: the plans waiting for approval.
pub async fn pending(p: &IntentProxy<'_>) -> Result<Vec<Plan>, HearthError> {
    decode(&method("ListPending"), &p.list_pending().await?)
}

/// `Catalog`: the verified playbooks and the refused files.
pub async fn catalog(p: &IntentProxy<'_>) -> Result<Catalog, HearthError> {
    decode(&method("Catalog"), &p.catalog().await?)
}

/// `ShowPlaybook`: one playbook's spec and steps.
pub async fn show_playbook(p: &IntentProxy<'_>, id: &str) -> Result<PlaybookShown, HearthError> {
    decode(&method("ShowPlaybook"), &p.show_playbook(id).await?)
}

/// `VerifyPlaybook`: an envelope verified, nothing installed.
pub async fn verify_playbook(
    p: &IntentProxy<'_>,
    file_name: &str,
    envelope_json: &str,
) -> Result<Summary, HearthError> {
    decode(
        &method("VerifyPlaybook"),
        &p.verify_playbook(file_name, envelope_json).await?,
    )
}

/// `InstallPlaybook`: an envelope installed (admins).
pub async fn install_playbook(
    p: &IntentProxy<'_>,
    file_name: &str,
    envelope_json: &str,
) -> Result<Summary, HearthError> {
    decode(
        &method("InstallPlaybook"),
        &p.install_playbook(file_name, envelope_json).await?,
    )
}

/// `ReloadCatalog` (admins).
pub async fn reload_catalog(p: &IntentProxy<'_>) -> Result<Reloaded, HearthError> {
    decode(&method("ReloadCatalog"), &p.reload_catalog().await?)
}

/// `AuditVerify`: the audit log's hash chain.
pub async fn audit_verify(p: &IntentProxy<'_>) -> Result<Verification, HearthError> {
    decode(&method("AuditVerify"), &p.audit_verify().await?)
}

/// `AuditVerifyAgainst`: the chain, and the log against hearth-attestd's
/// event log (`event_log`, the JSON of `Attestation1.Log`).
pub async fn audit_verify_against(
    p: &IntentProxy<'_>,
    event_log: &str,
) -> Result<Verification, HearthError> {
    decode(
        &method("AuditVerifyAgainst"),
        &p.audit_verify_against(event_log).await?,
    )
}

/// `AuditList`: the last `limit` records (0: all), oldest first (admins).
pub async fn audit_list(p: &IntentProxy<'_>, limit: u32) -> Result<Vec<AuditRecord>, HearthError> {
    decode(&method("AuditList"), &p.audit_list(limit).await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ask_answers_an_outcome_or_a_question() {
        let q = r#"{"status":"clarify","question":"Which?","options":[{"playbook":"net.allow","params":{"from":"iot"},"summary":"Allow iot"}]}"#;
        match decode::<Answer>("Ask", q).unwrap() {
            Answer::Clarify(c) => assert_eq!(c.options[0].playbook, "net.allow"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            super::super::encode(&decode::<Answer>("Ask", q).unwrap()).unwrap(),
            q
        );
        let e = decode::<Answer>(
            "Ask",
            r#"{"status":"clarify","question":"?","options":[],"x":1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn an_audit_record_keeps_its_details() {
        let r = r#"{"event":{"caller_uid":1000,"kind":"refused","reason":"no","request":{"text":"hi"}},"hash":"ab","prev":"00","seq":3,"time":5}"#;
        let rec: AuditRecord = decode("AuditList", r).unwrap();
        assert_eq!(
            rec.event.request.as_ref().unwrap().text.as_deref(),
            Some("hi")
        );
        assert_eq!(rec.event.details["reason"], "no");
        let again: Value = serde_json::from_str(r).unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), again);
    }
}

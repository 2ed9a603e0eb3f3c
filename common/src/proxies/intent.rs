//! `org.hearth.Intent1`, served by hearth-intentd (docs/dbus/intent.md).
//! Every method returns a JSON document whose shape is a type of
//! [`crate::contract::intent`]; read them with its typed calls.

use crate::HearthError;

/// The intent gate.
#[zbus::proxy(
    interface = "org.hearth.Intent1",
    default_service = "org.hearth.Intent1",
    default_path = "/org/hearth/Intent1",
    gen_blocking = false
)]
pub trait Intent {
    /// A plain-language request (at most 512 characters) -> `Answer`
    /// (an `Outcome`, or a `Clarify` question).
    fn ask(&self, text: &str) -> Result<String, HearthError>;
    /// A structured intent: playbook id and a JSON object of parameters ->
    /// `Outcome`.
    fn ask_structured(&self, playbook: &str, params_json: &str) -> Result<String, HearthError>;
    /// The requester confirms a pending plan -> `Outcome`.
    fn confirm(&self, plan_id: &str) -> Result<String, HearthError>;
    /// The requester confirms a pending plan to run on trial for `seconds`
    /// (10 to 3600): applied, then reverted unless kept -> `Outcome`
    /// (status `trial`, `trial_until_ms`).
    fn confirm_trial(&self, plan_id: &str, seconds: u32) -> Result<String, HearthError>;
    /// Keeps a change on trial -> `TrialEnd` (status `kept`).
    fn keep(&self, plan_id: &str) -> Result<String, HearthError>;
    /// The changes on trial -> `[Trial]`.
    fn list_trials(&self) -> Result<String, HearthError>;
    /// A hearth-admins member approves a pending plan -> `Outcome`.
    fn approve(&self, plan_id: &str) -> Result<String, HearthError>;
    /// Cancels a pending plan, or ends a change on trial by reverting it
    /// now -> `Ended` (an `Outcome`, or a `TrialEnd` with status `reverted`).
    fn cancel(&self, plan_id: &str) -> Result<String, HearthError>;
    /// Pending plans -> `[Plan]`.
    fn list_pending(&self) -> Result<String, HearthError>;
    /// The verified playbooks and the refused files -> `Catalog`.
    fn catalog(&self) -> Result<String, HearthError>;
    /// One playbook's spec and steps -> `PlaybookShown`.
    fn show_playbook(&self, id: &str) -> Result<String, HearthError>;
    /// Verifies an envelope without installing it -> Summary.
    fn verify_playbook(&self, file_name: &str, envelope_json: &str) -> Result<String, HearthError>;
    /// Installs an envelope (admins) -> Summary.
    fn install_playbook(&self, file_name: &str, envelope_json: &str)
        -> Result<String, HearthError>;
    /// Re-reads the catalog directory (admins) -> `Reloaded`.
    fn reload_catalog(&self) -> Result<String, HearthError>;
    /// The audit log's hash chain -> `Verification`.
    fn audit_verify(&self) -> Result<String, HearthError>;
    /// The audit chain, and every action record against `event_log`
    /// (hearth-attestd's event log, which replays to its TPM register):
    /// `Verification`.
    fn audit_verify_against(&self, event_log: &str) -> Result<String, HearthError>;
    /// The last `limit` audit records (0: all), oldest first (admins) ->
    /// `[AuditRecord]`.
    fn audit_list(&self, limit: u32) -> Result<String, HearthError>;
}

//! The `org.hearth.Intent1` adapter: identifies the caller through the bus,
//! converts arguments and results, maps errors. All decisions are the gate's.
//! Documented in docs/dbus/intent.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use hearth_common::HearthError;
use hearth_runtime::{Access, Role};
use serde::Serialize;
use serde_json::{json, Value};
use zbus::message::Header;

use crate::exec::{DbusExecutor, DbusMeasurer};
use crate::gate::{Gate, GateError, MAX_PARAMS_JSON};
use crate::interpret::Interpreter;
use crate::policy::Caller;

/// The gate as the daemon runs it.
pub type DaemonGate = Gate<DbusExecutor, dyn Interpreter, DbusMeasurer>;

/// The served object.
pub struct IntentInterface {
    gate: Arc<DaemonGate>,
    access: Access,
}

impl IntentInterface {
    /// Serves `gate`, authorizing callers with `access`.
    pub fn new(gate: Arc<DaemonGate>, access: Access) -> Self {
        IntentInterface { gate, access }
    }

    async fn caller(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        role: Role,
    ) -> Result<Caller, HearthError> {
        let c = self.access.require(conn, hdr, role).await?;
        Ok(Caller {
            uid: c.uid,
            is_admin: c.is_admin,
        })
    }
}

/// Maps a gate error to its named D-Bus error.
pub fn to_hearth(e: GateError) -> HearthError {
    match e {
        GateError::Refused { reason, candidates } if !candidates.is_empty() => {
            HearthError::InvalidArgument(format!(
                "refused: {reason} (closest: {})",
                candidates.join(", ")
            ))
        }
        GateError::Refused { .. }
        | GateError::Clarify { .. }
        | GateError::InvalidParams(_)
        | GateError::Playbook(_) => HearthError::InvalidArgument(e.to_string()),
        GateError::NotFound(_) | GateError::Expired(_) => HearthError::NotFound(e.to_string()),
        GateError::NotAuthorized(_) => HearthError::NotAuthorized(e.to_string()),
        GateError::Unavailable(_) | GateError::Audit(_) => HearthError::Internal(e.to_string()),
    }
}

/// `Ask`'s answer when the interpreter is not sure what was meant.
pub fn clarify_document(
    question: String,
    options: Vec<hearth_common::contract::intent::ClarifyOption>,
) -> hearth_common::contract::intent::Clarify {
    hearth_common::contract::intent::Clarify {
        status: hearth_common::contract::intent::ClarifyStatus::Clarify,
        question,
        options,
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, HearthError> {
    serde_json::to_string(v).map_err(|e| HearthError::Internal(format!("cannot encode: {e}")))
}

#[zbus::interface(name = "org.hearth.Intent1")]
impl IntentInterface {
    /// A plain-language request (at most 512 characters) -> Outcome JSON.
    async fn ask(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        text: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        match self.gate.ask(&text, c).await {
            Ok(out) => to_json(&out),
            // Not a failure: the answer is a question with the plans it
            // could mean; nothing ran.
            Err(GateError::Clarify { question, options }) => {
                to_json(&clarify_document(question, options))
            }
            Err(e) => Err(to_hearth(e)),
        }
    }

    /// A structured intent: playbook id and a JSON object of parameters.
    async fn ask_structured(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        playbook: String,
        params_json: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        if params_json.len() > MAX_PARAMS_JSON {
            return Err(HearthError::InvalidArgument(format!(
                "params_json has {} bytes; at most {MAX_PARAMS_JSON}",
                params_json.len()
            )));
        }
        let params: BTreeMap<String, Value> = if params_json.trim().is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(&params_json).map_err(|e| {
                HearthError::InvalidArgument(format!(
                    "invalid params_json {:?}{}: expected a JSON object ({e})",
                    crate::gate::cut(&params_json, 200),
                    if params_json.len() > 200 { "…" } else { "" }
                ))
            })?
        };
        let out = self
            .gate
            .ask_structured(&playbook, &params, c)
            .await
            .map_err(to_hearth)?;
        to_json(&out)
    }

    /// The requester confirms a pending plan.
    async fn confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        plan_id: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        let out = self.gate.confirm(&plan_id, c).await.map_err(to_hearth)?;
        to_json(&out)
    }

    /// The requester confirms a pending plan to run on trial: applied,
    /// then reverted after `seconds` unless kept with `Keep`.
    async fn confirm_trial(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        plan_id: String,
        seconds: u32,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        let out = self
            .gate
            .confirm_trial(&plan_id, seconds, c)
            .await
            .map_err(to_hearth)?;
        to_json(&out)
    }

    /// Keeps a change on trial (its requester or an admin).
    async fn keep(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        plan_id: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        let out = self.gate.keep(&plan_id, c).await.map_err(to_hearth)?;
        to_json(&out)
    }

    /// The changes on trial (all for admins, one's own otherwise).
    async fn list_trials(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        to_json(&self.gate.list_trials(c))
    }

    /// A hearth-admins member approves a pending plan.
    async fn approve(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        plan_id: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        let out = self.gate.approve(&plan_id, c).await.map_err(to_hearth)?;
        to_json(&out)
    }

    /// Cancels a pending plan, or ends a change on trial by reverting it
    /// now (requester or admin).
    async fn cancel(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        plan_id: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        if self.gate.is_trial(&plan_id) {
            let end = self.gate.end_trial(&plan_id, c).await.map_err(to_hearth)?;
            return to_json(&end);
        }
        let out = self.gate.cancel(&plan_id, c).map_err(to_hearth)?;
        to_json(&out)
    }

    /// Pending plans (all for admins, one's own otherwise).
    async fn list_pending(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Operator).await?;
        to_json(&self.gate.list_pending(c))
    }

    /// The verified catalog and the files refused at load.
    async fn catalog(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Operator).await?;
        to_json(&self.gate.catalog_document())
    }

    /// One playbook's spec and steps.
    async fn show_playbook(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        id: String,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Operator).await?;
        let v = self
            .gate
            .show(&id)
            .ok_or_else(|| HearthError::NotFound(format!("no playbook {id:?} in the catalog")))?;
        to_json(&v)
    }

    /// Verifies an envelope without installing it.
    async fn verify_playbook(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        file_name: String,
        envelope_json: String,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Operator).await?;
        let s = self
            .gate
            .verify_envelope(&file_name, envelope_json.as_bytes())
            .map_err(to_hearth)?;
        to_json(&s)
    }

    /// Installs an envelope into the catalog (admins).
    async fn install_playbook(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        file_name: String,
        envelope_json: String,
    ) -> Result<String, HearthError> {
        let c = self.caller(conn, &hdr, Role::Admin).await?;
        let s = self
            .gate
            .install(&file_name, envelope_json.as_bytes(), c)
            .await
            .map_err(to_hearth)?;
        to_json(&s)
    }

    /// Re-reads the catalog directory (admins).
    async fn reload_catalog(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Admin).await?;
        let n = self.gate.reload_measured().await.map_err(to_hearth)?;
        to_json(&json!({ "playbooks": n, "refused": self.gate.refused() }))
    }

    /// Verifies the audit log's hash chain.
    async fn audit_verify(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Operator).await?;
        to_json(&self.gate.audit_verify().map_err(to_hearth)?)
    }

    /// Verifies the audit log's hash chain and checks it against
    /// hearth-attestd's event log (`Attestation1.Log`, a JSON array): every
    /// record that executes an action must be measured there, and every
    /// action measured must be in the audit log.
    async fn audit_verify_against(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        event_log: String,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Operator).await?;
        let events: Vec<Value> = serde_json::from_str(&event_log).map_err(|e| {
            HearthError::InvalidArgument(format!(
                "event_log: not a JSON array of attestation events ({e})"
            ))
        })?;
        to_json(&self.gate.audit_verify_against(&events).map_err(to_hearth)?)
    }

    /// The last `limit` audit records (0: all), oldest first (admins).
    async fn audit_list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        limit: u32,
    ) -> Result<String, HearthError> {
        self.caller(conn, &hdr, Role::Admin).await?;
        to_json(&self.gate.audit_list(limit as usize).map_err(to_hearth)?)
    }
}

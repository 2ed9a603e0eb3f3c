//! `org.hearth.Attestation1`: a thin adapter over the [`Engine`]: it asks the
//! bus who the caller is, authorizes, runs the engine on the blocking pool,
//! and maps errors to `org.hearth.Error.*`.
//!
//! Reads are authorized by [`hearth_common::rights`], the table
//! hearth-netd, hearth-dnsd, hearth-pkid and the intent gate use. `Measure`
//! has no rule there: only the uids in `measurement_uids` may call it (the
//! engine checks), whatever their groups.

use std::sync::Arc;

use hearth_attestation::eventlog::{self, Kind};
use hearth_common::contract::attestation as wire;
use hearth_common::contract::encode;
use hearth_common::rights::{self, Need};
use hearth_common::{names, HearthError};
use hearth_runtime::{Access, Role};

use crate::engine::{Engine, EngineError};

/// The D-Bus interface value.
pub struct AttestationInterface {
    engine: Arc<Engine>,
    access: Access,
}

impl AttestationInterface {
    /// Serves `engine`, authorizing callers with `access`.
    pub fn new(engine: Arc<Engine>, access: Access) -> Self {
        AttestationInterface { engine, access }
    }
}

/// The role a direct caller of `member` needs, from the shared table (a
/// member without a rule needs an admin: fail closed).
fn role_for(member: &str) -> Role {
    match rights::need(names::ATTESTATION.bus_name, member, false) {
        Need::Operator => Role::Operator,
        Need::Admin => Role::Admin,
    }
}

impl AttestationInterface {
    /// Checks the caller against [`role_for`] the member of this message.
    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &zbus::message::Header<'_>,
    ) -> Result<(), HearthError> {
        let member = hdr.member().map(|m| m.to_string()).unwrap_or_default();
        self.access.require(conn, hdr, role_for(&member)).await?;
        Ok(())
    }
}

fn to_bus(e: EngineError) -> HearthError {
    match e {
        EngineError::Invalid { .. } => HearthError::InvalidArgument(e.to_string()),
        EngineError::NotAuthorized(_) => HearthError::NotAuthorized(e.to_string()),
        other => HearthError::Internal(other.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, HearthError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| HearthError::Internal(format!("worker failed: {e}")))?
        .map_err(to_bus)
}

fn kind(k: Kind) -> wire::MeasurementKind {
    match k {
        Kind::Binary => wire::MeasurementKind::Binary,
        Kind::Model => wire::MeasurementKind::Model,
        Kind::PlaybookCatalog => wire::MeasurementKind::PlaybookCatalog,
        Kind::Policy => wire::MeasurementKind::Policy,
        Kind::Action => wire::MeasurementKind::Action,
    }
}

/// A log record as the contract writes it (the same fields and order).
fn event(e: eventlog::Event) -> wire::Event {
    wire::Event {
        recnum: e.recnum,
        register: e.register,
        digest: e.digest,
        event_type: e.event_type,
        content: wire::Measurement {
            kind: kind(e.content.kind),
            name: e.content.name,
            sha256: e.content.sha256,
        },
    }
}

#[zbus::interface(name = "org.hearth.Attestation1")]
impl AttestationInterface {
    /// Records a measurement (kind: binary, model, playbook-catalog, policy,
    /// action) and extends the TPM register. Only the uids listed in
    /// `measurement_uids` may call it. Returns the record number.
    async fn measure(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        kind: String,
        name: String,
        sha256: String,
    ) -> Result<u64, HearthError> {
        let caller = self.access.caller(conn, &hdr).await?;
        let uid = caller.uid;
        let event = blocking(&self.engine, move |e| e.measure(uid, &kind, &name, &sha256)).await?;
        tracing::info!(
            recnum = event.recnum,
            kind = %event.content.kind,
            name = %event.content.name,
            uid,
            "measured"
        );
        Ok(event.recnum)
    }

    /// Log and register agreement, as a JSON document.
    async fn status(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        let status: wire::Status = blocking(&self.engine, |e| e.status()).await?;
        encode(&status)
    }

    /// The runtime event log, as a JSON array of records.
    async fn log(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        let log = blocking(&self.engine, |e| Ok(e.log())).await?;
        encode(&log.into_iter().map(event).collect::<Vec<_>>())
    }

    /// The boot PCRs (SHA-256, 0-7 and 11), as a JSON object index -> hex.
    async fn pcrs(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        let pcrs: wire::Pcrs = blocking(&self.engine, |e| e.pcrs()).await?;
        encode(&pcrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_follow_the_shared_rights_table() {
        for m in ["Status", "Log", "Pcrs"] {
            assert_eq!(role_for(m), Role::Operator, "{m}");
            assert!(rights::rule(names::ATTESTATION.bus_name, m, false).is_some());
        }
        // No rule: an admin only (Measure never goes through this; it is
        // limited to measurement_uids).
        assert_eq!(role_for("NoSuchMember"), Role::Admin);
        assert_eq!(
            rights::rule(names::ATTESTATION.bus_name, "Measure", false),
            None
        );
    }
}

//! `org.hearth.Attestation1`: a thin adapter over the [`Engine`]: it asks the
//! bus who the caller is, authorizes, runs the engine on the blocking pool,
//! and maps errors to `org.hearth.Error.*`.

use std::sync::Arc;

use hearth_common::HearthError;
use hearth_daemon::{Access, Role};

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

fn json<T: serde::Serialize>(v: &T) -> Result<String, HearthError> {
    serde_json::to_string(v).map_err(|e| HearthError::Internal(e.to_string()))
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
        self.access.require(conn, &hdr, Role::Operator).await?;
        json(&blocking(&self.engine, |e| e.status()).await?)
    }

    /// The runtime event log, as a JSON array of records.
    async fn log(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.access.require(conn, &hdr, Role::Operator).await?;
        json(&blocking(&self.engine, |e| Ok(e.log())).await?)
    }

    /// The boot PCRs (SHA-256, 0-7 and 11), as a JSON object index -> hex.
    async fn pcrs(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.access.require(conn, &hdr, Role::Operator).await?;
        json(&blocking(&self.engine, |e| e.pcrs()).await?)
    }
}

//! `org.hearth.Network1`: the thin bus adapter over [`Engine`].
//!
//! Each method authorizes the caller (reads: Operator; changes: Admin, dry
//! runs: Operator: the rule of [`hearth_common::rights`], which hearth-intentd
//! applies to a plan's requester too), hands plain strings to the engine (which validates them:
//! nothing is re-validated here), maps [`crate::NetError`] to the named
//! [`HearthError`], and returns the JSON of the result types of
//! [`hearth_common::contract::network`] (see docs/dbus/network.md). After
//! every successful change that changes something it emits
//! `Changed(what, detail)` with the change's diff.
//!
//! Kernel work is a few milliseconds of netlink, done under a std mutex that
//! is never held across an await.

// zbus's interface macro generates an undocumented helper for the signal.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex, MutexGuard};

use hearth_common::contract::encode;
use hearth_common::{names, HearthError};
use hearth_runtime::{Access, Caller};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;

use crate::engine::{Engine, Request};
use crate::watch::Watcher;

/// The served object.
pub struct NetworkInterface {
    engine: Arc<Mutex<Engine>>,
    access: Access,
    _watcher: Option<Watcher>,
}

impl NetworkInterface {
    /// Serves `engine`, authorizing with `access`; `watcher` (the guard of
    /// the table) lives as long as the interface.
    pub fn new(engine: Engine, access: Access, watcher: Option<Watcher>) -> NetworkInterface {
        NetworkInterface {
            engine: Arc::new(Mutex::new(engine)),
            access,
            _watcher: watcher,
        }
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        match self.engine.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The caller, if [`hearth_common::rights`] lets it call the member of
    /// this message (with `dry_run`).
    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        dry_run: bool,
    ) -> Result<Caller, HearthError> {
        self.access
            .authorize(conn, hdr, names::NETWORK.bus_name, dry_run)
            .await
    }

    async fn change(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        emitter: &SignalEmitter<'_>,
        req: Request,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        let caller = self.authorize(conn, hdr, dry_run).await?;
        let result = self.engine().request(&req, dry_run);
        let doc = match result {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(uid = caller.uid, ?req, dry_run, "refused: {e}");
                return Err(e.into());
            }
        };
        let text = encode(&doc)?;
        if !dry_run && !doc.is_empty() {
            tracing::info!(uid = caller.uid, ?req, "network changed: {doc}");
            let what = doc.action.as_str();
            if let Err(e) = NetworkInterface::changed(emitter, what, &text).await {
                tracing::warn!("could not emit Changed: {e}");
            }
        }
        Ok(text)
    }
}

#[zbus::interface(name = "org.hearth.Network1")]
impl NetworkInterface {
    /// The domains, as a JSON array.
    async fn list_domains(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        encode(&self.engine().list())
    }

    /// Everything: domains, allows, matrix and the table's state.
    async fn show(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        encode(&self.engine().show())
    }

    /// The reachability matrix.
    async fn matrix(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        encode(&self.engine().matrix())
    }

    /// Creates a domain (`subnet` "": a free /24 of the pool).
    async fn create_domain(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        subnet: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        let req = Request::Create { name, subnet };
        self.change(conn, &hdr, &emitter, req, dry_run).await
    }

    /// Deletes a domain and every allow naming it.
    async fn delete_domain(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        name: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        let req = Request::Delete { name };
        self.change(conn, &hdr, &emitter, req, dry_run).await
    }

    /// Lets `from` open connections to `to` (port 0: any; protocol "": any).
    #[allow(clippy::too_many_arguments)]
    async fn allow(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        from: String,
        to: String,
        port: u32,
        protocol: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        let req = Request::Allow {
            from,
            to,
            port,
            protocol,
        };
        self.change(conn, &hdr, &emitter, req, dry_run).await
    }

    /// Removes every allow from `from` to `to`.
    async fn revoke(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        from: String,
        to: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        let req = Request::Revoke { from, to };
        self.change(conn, &hdr, &emitter, req, dry_run).await
    }

    /// Re-applies configuration and persisted changes to the kernel.
    async fn reconcile(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, false).await?;
        let rep = self.engine().reconcile()?;
        encode(&rep.to_contract())
    }

    /// Emitted after every successful change.
    #[zbus(signal)]
    pub async fn changed(emitter: &SignalEmitter<'_>, what: &str, detail: &str)
        -> zbus::Result<()>;
}

//! `org.hearth.Pki1`: a thin adapter over the [`Engine`]. It authorizes the
//! caller, runs the (blocking, token-bound) engine call on the blocking
//! pool, and returns JSON documents (see `docs/dbus/pki.md`). It never logs
//! keys or PINs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_common::{names, HearthError};
use hearth_daemon::{Access, Caller};
use serde::Serialize;
use zbus::message::Header;

use crate::config::ServiceScope;
use crate::{Engine, PkiError, Profile};

/// How often the CRL's freshness is checked.
pub const CRL_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The served interface.
pub struct PkiInterface {
    engine: Arc<Mutex<Engine>>,
    access: Access,
    services: BTreeMap<String, ServiceScope>,
}

/// What an admin-only call does, for the scope check of service users.
#[derive(Debug, Clone, Copy)]
enum Act<'a> {
    /// The key ceremony.
    Ceremony,
    /// `IssueCertificate`: profile server, key exported.
    IssueServer,
    /// `IssueForName`, `IssueFromCsr`: any profile.
    IssueAny,
    /// `IssueDaemonCertificate` for these names.
    DaemonCertificate(&'a str),
    /// `RevokeCertificate`.
    Revoke,
    /// `SignPlaybook`.
    SignPlaybook,
}

impl Act<'_> {
    fn method(&self) -> &'static str {
        match self {
            Act::Ceremony => "Init",
            Act::IssueServer => "IssueCertificate",
            Act::IssueAny => "IssueForName/IssueFromCsr",
            Act::DaemonCertificate(_) => "IssueDaemonCertificate",
            Act::Revoke => "RevokeCertificate",
            Act::SignPlaybook => "SignPlaybook",
        }
    }
}

impl PkiInterface {
    /// Serves `engine`, authorizing callers with `access`.
    pub fn new(engine: Engine, access: Access) -> PkiInterface {
        let services = engine.services().clone();
        for name in services.keys() {
            if !access.config().service_users.contains(name) {
                tracing::warn!(
                    user = name.as_str(),
                    "[services] names a user that is not in [access] service_users; its scope is unused"
                );
            }
        }
        PkiInterface {
            engine: Arc::new(Mutex::new(engine)),
            access,
            services,
        }
    }

    /// The caller, if [`hearth_common::rights`] lets it call the member of
    /// this message (the rule hearth-intentd applies to a plan's requester
    /// too).
    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
    ) -> Result<Caller, HearthError> {
        self.access
            .authorize(conn, hdr, names::PKI.bus_name, false)
            .await
    }

    /// An admin, or a service user whose `[services.<user>]` scope grants
    /// `act`. A service user is never an admin here.
    async fn require_admin(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        act: Act<'_>,
    ) -> Result<Caller, HearthError> {
        let c = self.authorize(conn, hdr).await?;
        if !c.is_service {
            return Ok(c);
        }
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default();
        let scope = self.services.get(&user);
        let ok = match (act, scope) {
            (_, None) => false,
            (Act::DaemonCertificate(names), Some(s)) => s.allows_daemon_names(names),
            (Act::IssueServer, Some(s)) => s.issue_server,
            (Act::Revoke, Some(s)) => s.revoke,
            (Act::Ceremony | Act::IssueAny | Act::SignPlaybook, Some(_)) => false,
        };
        if ok {
            return Ok(c);
        }
        let what = match act {
            Act::DaemonCertificate(names) => format!("{} for {names:?}", act.method()),
            _ => act.method().to_string(),
        };
        tracing::warn!(
            uid = c.uid,
            user,
            act = what,
            "refused a service user outside its scope"
        );
        Err(HearthError::NotAuthorized(format!(
            "uid {} ({user}) is a hearth-pkid service user and may not call {what}: not in its [services.{user}] scope",
            c.uid
        )))
    }

    /// Spawns the task that regenerates the CRL before it expires.
    pub fn spawn_crl_refresher(&self) -> tokio::task::JoinHandle<()> {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CRL_CHECK_INTERVAL);
            loop {
                tick.tick().await;
                let e = engine.clone();
                let res = tokio::task::spawn_blocking(move || lock(&e).refresh_crl_if_due()).await;
                match res {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "CRL refresh failed"),
                    Err(err) => tracing::error!(error = %err, "CRL refresh task failed"),
                }
            }
        })
    }

    async fn call<T, F>(&self, f: F) -> Result<T, HearthError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<T, PkiError> + Send + 'static,
    {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&engine)))
            .await
            .map_err(|e| HearthError::Internal(format!("engine task failed: {e}")))?
            .map_err(|e| {
                tracing::warn!(error = %e, "request refused or failed");
                HearthError::from(e)
            })
    }

    async fn json<T, F>(&self, f: F) -> Result<String, HearthError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&mut Engine) -> Result<T, PkiError> + Send + 'static,
    {
        let v = self.call(f).await?;
        serde_json::to_string(&v).map_err(|e| HearthError::Internal(format!("JSON: {e}")))
    }
}

fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

fn profile(s: &str) -> Result<Profile, HearthError> {
    Profile::parse_field("profile", s).map_err(HearthError::from)
}

#[zbus::interface(name = "org.hearth.Pki1")]
impl PkiInterface {
    /// Runs the key ceremony (idempotent); JSON `CaInfo`.
    async fn init(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::Ceremony).await?;
        tracing::info!(uid = c.uid, "Init");
        self.json(|e| e.init()).await
    }

    /// The CA's certificates and constraints; JSON `CaInfo`.
    async fn info(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.json(|e| e.info()).await
    }

    /// The root certificate, PEM.
    async fn root_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.call(|e| e.root_pem()).await
    }

    /// Issues a `server` certificate for `name`, its key generated and
    /// exported; JSON `Issued`.
    async fn issue_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        days: u32,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::IssueServer).await?;
        tracing::info!(uid = c.uid, name, days, "IssueCertificate");
        self.json(move |e| e.issue_for_name(&name, days, Profile::Server))
            .await
    }

    /// Issues a certificate of `profile` for `name`, key generated and
    /// exported; JSON `Issued`.
    async fn issue_for_name(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        profile_name: String,
        days: u32,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::IssueAny).await?;
        let p = profile(&profile_name)?;
        tracing::info!(uid = c.uid, name, profile = %p, days, "IssueForName");
        self.json(move |e| e.issue_for_name(&name, days, p)).await
    }

    /// Issues a certificate for a PEM CSR; JSON `Issued`.
    async fn issue_from_csr(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        csr_pem: String,
        profile_name: String,
        days: u32,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::IssueAny).await?;
        let p = profile(&profile_name)?;
        tracing::info!(uid = c.uid, profile = %p, days, "IssueFromCsr");
        self.json(move |e| e.issue_from_csr(&csr_pem, days, p))
            .await
    }

    /// Issues a `daemon` certificate with a fresh key for a Hearth daemon;
    /// JSON `DaemonCertificate` (the key is in the reply, never on disk).
    async fn issue_daemon_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<String, HearthError> {
        let c = self
            .require_admin(conn, &hdr, Act::DaemonCertificate(&name))
            .await?;
        tracing::info!(uid = c.uid, name, "IssueDaemonCertificate");
        let (cert, root) = self
            .call(move |e| Ok((e.issue_daemon_certificate(&name)?, e.root_pem()?)))
            .await?;
        let not_after = cert
            .not_after
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| HearthError::Internal(format!("time: {e}")))?;
        let doc = serde_json::json!({
            "serial": cert.serial,
            "not_after": not_after,
            "chain_pem": cert.chain_pem,
            "key_pem": cert.key_pem.as_str(),
            "root_pem": root,
        });
        Ok(doc.to_string())
    }

    /// Revokes by serial or name; JSON `{"revoked": [...]}`.
    async fn revoke_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        serial_or_name: String,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::Revoke).await?;
        tracing::info!(uid = c.uid, serial_or_name, "RevokeCertificate");
        let revoked = self.call(move |e| e.revoke(&serial_or_name)).await?;
        Ok(serde_json::json!({ "revoked": revoked }).to_string())
    }

    /// Every issued certificate; JSON array of `Summary`.
    async fn list_certificates(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.json(|e| Ok(e.list())).await
    }

    /// The records for a serial or name; JSON array of `Record`.
    async fn show_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        serial_or_name: String,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.json(move |e| e.show(&serial_or_name)).await
    }

    /// The current CRL, PEM (regenerated first if due).
    async fn crl(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.call(|e| e.crl_pem()).await
    }

    /// Signs `payload` with the playbook-signer key in the token; JSON
    /// `PlaybookSignature`.
    async fn sign_playbook(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        payload: String,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::SignPlaybook).await?;
        tracing::info!(uid = c.uid, bytes = payload.len(), "SignPlaybook");
        self.json(move |e| e.sign_playbook(payload.as_bytes()))
            .await
    }

    /// The playbook signer's certificate then the issuing CA, PEM.
    async fn playbook_signer_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        self.call(|e| e.playbook_signer_chain()).await
    }
}

//! `org.hearth.Pki1`: a thin adapter over the [`Engine`]. It authorizes the
//! caller, runs the (blocking, token-bound) engine call on the blocking
//! pool, and returns the types of [`hearth_common::contract::pki`] as JSON
//! (see `docs/dbus/pki.md`): an issuance or revocation answers the diff of
//! the inventory before and after it. It never logs keys or PINs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_common::contract::encode;
use hearth_common::contract::pki as wire;
use hearth_common::types::{Address, DnsName};
use hearth_common::{names, HearthError};
use hearth_runtime::{Access, Caller};
use time::OffsetDateTime;
use zbus::message::Header;

use crate::ca::{CaInfo, Issued, PlaybookSignature, Summary};
use crate::config::ServiceScope;
use crate::inventory::{KeySource, Record};
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

    /// Runs a change `f` and returns its result with the inventory before
    /// and after it.
    async fn change<T, F>(&self, f: F) -> Result<(T, Vec<Record>, Vec<Record>), HearthError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Engine) -> Result<T, PkiError> + Send + 'static,
    {
        self.call(move |e| {
            let before = e.certificates().to_vec();
            let out = f(e)?;
            Ok((out, before, e.certificates().to_vec()))
        })
        .await
    }

    /// Runs an issuance and answers the certificate the inventory gained.
    async fn issue<F>(&self, f: F) -> Result<String, HearthError>
    where
        F: FnOnce(&mut Engine) -> Result<Issued, PkiError> + Send + 'static,
    {
        let (issued, before, after) = self.change(f).await?;
        let new = gained(&before, &after, &issued.record.serial)?;
        encode(&wire::Issued {
            serial: new.serial,
            names: new.names,
            profile: new.profile,
            key_type: new.key_type,
            key_source: new.key_source,
            not_before: new.not_before,
            not_after: new.not_after,
            certificate: new.certificate,
            chain_pem: issued.chain_pem,
            key_path: issued.key_path.map(|p| p.display().to_string()),
            chain_path: issued.chain_path.map(|p| p.display().to_string()),
        })
    }
}

/// The one certificate `after` holds that `before` does not, which must be
/// `serial` (anything else is a broken invariant, not a result).
fn gained(
    before: &[Record],
    after: &[Record],
    serial: &str,
) -> Result<wire::Certificate, HearthError> {
    let diff = wire::CertificateDiff::between(&certificates(before)?, &certificates(after)?);
    match diff.issued.as_slice() {
        [one] if one.serial == serial && diff.revoked.is_empty() => after
            .iter()
            .find(|r| r.serial == serial)
            .map(certificate)
            .transpose()?
            .ok_or_else(|| {
                HearthError::Internal(format!("certificate {serial} is not in the inventory"))
            }),
        _ => Err(HearthError::Internal(format!(
            "the inventory changed unexpectedly while issuing {serial}: {diff}"
        ))),
    }
}

fn rfc3339(t: OffsetDateTime) -> Result<String, HearthError> {
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| HearthError::Internal(format!("time: {e}")))
}

fn cert_name(s: &str) -> Result<wire::CertName, HearthError> {
    if let Ok(a) = Address::parse(s) {
        return Ok(wire::CertName::Address(a));
    }
    DnsName::parse(s)
        .map(wire::CertName::Dns)
        .map_err(|e| HearthError::Internal(format!("inventory: {e}")))
}

fn cert_names(names: &[String]) -> Result<Vec<wire::CertName>, HearthError> {
    names.iter().map(|n| cert_name(n)).collect()
}

fn profile_of(p: Profile) -> wire::Profile {
    match p {
        Profile::Server => wire::Profile::Server,
        Profile::Client => wire::Profile::Client,
        Profile::Daemon => wire::Profile::Daemon,
        Profile::PlaybookSigner => wire::Profile::PlaybookSigner,
    }
}

fn key_source_of(k: KeySource) -> wire::KeySource {
    match k {
        KeySource::Csr => wire::KeySource::Csr,
        KeySource::Export => wire::KeySource::Export,
        KeySource::Daemon => wire::KeySource::Daemon,
        KeySource::Token => wire::KeySource::Token,
    }
}

/// An inventory record as the contract writes it.
fn certificate(r: &Record) -> Result<wire::Certificate, HearthError> {
    Ok(wire::Certificate {
        serial: r.serial.clone(),
        names: cert_names(&r.names)?,
        profile: profile_of(r.profile),
        key_type: r.key_type.clone(),
        key_source: key_source_of(r.key_source),
        not_before: rfc3339(r.not_before)?,
        not_after: rfc3339(r.not_after)?,
        revoked: match &r.revoked {
            Some(rev) => Some(wire::Revocation {
                at: rfc3339(rev.at)?,
            }),
            None => None,
        },
        certificate: r.certificate.clone(),
    })
}

fn certificates(rs: &[Record]) -> Result<Vec<wire::Certificate>, HearthError> {
    rs.iter().map(certificate).collect()
}

fn ca_info(i: CaInfo) -> Result<wire::CaInfo, HearthError> {
    let bad = |e: hearth_common::types::ParseError| HearthError::Internal(e.to_string());
    Ok(wire::CaInfo {
        created: i.created,
        root_sha256: i.root_sha256,
        root_pem: i.root_pem,
        issuing_pem: i.issuing_pem,
        zones: i
            .zones
            .iter()
            .map(|z| DnsName::parse(z))
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        subnets: i
            .subnets
            .iter()
            .map(|c| hearth_common::types::Cidr::parse(c))
            .collect::<Result<_, _>>()
            .map_err(bad)?,
    })
}

fn summary(s: &Summary) -> Result<wire::CertificateSummary, HearthError> {
    Ok(wire::CertificateSummary {
        serial: s.serial.clone(),
        names: cert_names(&s.names)?,
        profile: profile_of(s.profile),
        status: match s.status {
            "revoked" => wire::CertificateStatus::Revoked,
            "expired" => wire::CertificateStatus::Expired,
            _ => wire::CertificateStatus::Valid,
        },
        not_after: rfc3339(s.not_after)?,
    })
}

fn signature(s: PlaybookSignature) -> wire::PlaybookSignature {
    wire::PlaybookSignature {
        algorithm: s.algorithm.to_string(),
        signature: s.signature,
        serial: s.serial,
        chain_pem: s.chain_pem,
    }
}

fn lock(engine: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    engine.lock().unwrap_or_else(|e| e.into_inner())
}

fn profile(s: &str) -> Result<Profile, HearthError> {
    crate::inventory::parse_profile("profile", s).map_err(HearthError::from)
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
        encode(&ca_info(self.call(|e| e.init()).await?)?)
    }

    /// The CA's certificates and constraints; JSON `CaInfo`.
    async fn info(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        encode(&ca_info(self.call(|e| e.info()).await?)?)
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
        self.issue(move |e| e.issue_for_name(&name, days, Profile::Server))
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
        self.issue(move |e| e.issue_for_name(&name, days, p)).await
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
        self.issue(move |e| e.issue_from_csr(&csr_pem, days, p))
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
        let ((cert, root), before, after) = self
            .change(move |e| Ok((e.issue_daemon_certificate(&name)?, e.root_pem()?)))
            .await?;
        let new = gained(&before, &after, &cert.serial)?;
        encode(&wire::DaemonCertificate {
            serial: new.serial,
            names: new.names,
            profile: new.profile,
            not_before: new.not_before,
            not_after: new.not_after,
            chain_pem: cert.chain_pem.clone(),
            key_pem: cert.key_pem.to_string(),
            root_pem: root,
        })
    }

    /// Revokes by serial or name; JSON `CertificateDiff` (what became revoked).
    async fn revoke_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        serial_or_name: String,
    ) -> Result<String, HearthError> {
        let c = self.require_admin(conn, &hdr, Act::Revoke).await?;
        tracing::info!(uid = c.uid, serial_or_name, "RevokeCertificate");
        let (_, before, after) = self.change(move |e| e.revoke(&serial_or_name)).await?;
        encode(&wire::CertificateDiff::between(
            &certificates(&before)?,
            &certificates(&after)?,
        ))
    }

    /// Every issued certificate; JSON array of `Summary`.
    async fn list_certificates(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        let list = self.call(|e| Ok(e.list())).await?;
        encode(&list.iter().map(summary).collect::<Result<Vec<_>, _>>()?)
    }

    /// The records for a serial or name; JSON array of `Record`.
    async fn show_certificate(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        serial_or_name: String,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr).await?;
        encode(&certificates(
            &self.call(move |e| e.show(&serial_or_name)).await?,
        )?)
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
        encode(&signature(
            self.call(move |e| e.sign_playbook(payload.as_bytes()))
                .await?,
        ))
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

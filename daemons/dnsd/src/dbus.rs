//! `org.hearth.Dns1`: the only way records change. A thin adapter over the
//! [`Engine`]: authorize the caller, parse each argument into its validated
//! type (errors name the argument), run the engine, return its result (the
//! types of [`hearth_common::contract::dns`]) as a JSON string. See
//! `docs/dbus/dns.md`.
//!
//! Changes need [`Role::Admin`]; previews (`dry_run = true`), `List` and
//! `Describe` need [`Role::Operator`]: the rule of [`hearth_common::rights`],
//! which hearth-intentd applies to a plan's requester too.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use hearth_common::contract::encode;
use hearth_common::types::{Address, DnsName};
use hearth_common::{names, HearthError};
use hearth_runtime::Access;
use serde::Deserialize;
use zbus::message::Header;

use crate::config::{validate, DaemonSettings};
use crate::engine::{Engine, Op, Record, ZoneError};
use crate::server::DnsServer;

impl From<ZoneError> for HearthError {
    fn from(e: ZoneError) -> Self {
        match e {
            ZoneError::InvalidArgument(m) => HearthError::InvalidArgument(m),
            ZoneError::NotFound(m) => HearthError::NotFound(m),
            ZoneError::Conflict(m) => HearthError::Conflict(m),
            ZoneError::Config(m) | ZoneError::Storage(m) => HearthError::Internal(m),
        }
    }
}

/// The served `org.hearth.Dns1` object.
#[derive(Debug, Clone)]
pub struct DnsInterface {
    engine: Arc<Mutex<Engine>>,
    access: Access,
}

impl DnsInterface {
    /// Serves `engine`, authorizing callers with `access`.
    pub fn new(engine: Engine, access: Access) -> Self {
        DnsInterface {
            engine: Arc::new(Mutex::new(engine)),
            access,
        }
    }

    async fn authorize(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        dry_run: bool,
    ) -> Result<(), HearthError> {
        self.access
            .authorize(conn, hdr, names::DNS.bus_name, dry_run)
            .await
            .map(|_| ())
    }

    fn with_engine<T>(&self, f: impl FnOnce(&mut Engine) -> T) -> T {
        let mut guard = match self.engine.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn apply(&self, op: Op, dry_run: bool) -> Result<String, HearthError> {
        let diff = self.with_engine(|e| e.apply(&op, dry_run))?;
        encode(&diff)
    }
}

/// A removal's diff as `Restore` reads it: only `removed` is used (other
/// fields are let through, so the diff of an older daemon in a plan's undo
/// still restores).
#[derive(Deserialize)]
struct Removal {
    removed: Vec<Record>,
}

/// Parses `Restore`'s argument: the diff a removal answered (a
/// [`hearth_common::contract::dns::ZoneDiff`], its `removed` list) or a bare
/// array of records.
pub fn parse_records(text: &str) -> Result<Vec<Record>, HearthError> {
    let bad = |why: String| {
        HearthError::InvalidArgument(format!(
            "invalid records {text:?}: {why}; give the diff a removal answered or a JSON array of records"
        ))
    };
    let parsed = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Record>>(text)
    } else {
        serde_json::from_str::<Removal>(text).map(|r| r.removed)
    };
    parsed.map_err(|e| bad(e.to_string()))
}

#[zbus::interface(name = "org.hearth.Dns1")]
impl DnsInterface {
    /// Adds an A (IPv4) or AAAA (IPv6) record to `name`.
    async fn add_record(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        address: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let op = Op::AddRecord {
            name: DnsName::parse_field("name", &name)?,
            address: Address::parse_field("address", &address)?,
        };
        self.apply(op, dry_run)
    }

    /// Makes `name` an alias (CNAME) for `target`.
    async fn add_alias(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        target: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let op = Op::AddAlias {
            name: DnsName::parse_field("name", &name)?,
            target: DnsName::parse_field("target", &target)?,
        };
        self.apply(op, dry_run)
    }

    /// Removes every record of `name`; the result's `removed` lists them.
    async fn remove(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let op = Op::Remove {
            name: DnsName::parse_field("name", &name)?,
        };
        self.apply(op, dry_run)
    }

    /// Removes one A/AAAA record of `name`.
    async fn remove_record(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
        address: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let op = Op::RemoveRecord {
            name: DnsName::parse_field("name", &name)?,
            address: Address::parse_field("address", &address)?,
        };
        self.apply(op, dry_run)
    }

    /// Adds back what a removal returned (its Change document, or an array
    /// of records of one name), as one change.
    async fn restore(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        records: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, dry_run).await?;
        let records = parse_records(&records)?;
        self.apply(Op::Restore { records }, dry_run)
    }

    /// The records of one name (empty when unused).
    async fn describe(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, true).await?;
        let name = DnsName::parse_field("name", &name)?;
        let d = self.with_engine(|e| e.describe(&name))?;
        encode(&d)
    }

    /// Every zone with its serial, name server and records.
    async fn list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, true).await?;
        let l = self.with_engine(|e| e.list());
        encode(&l)
    }
}

/// The daemon's start-up, run by `hearth_runtime::main` before the bus name is
/// taken: check the configuration, load the zones, bind and start the DNS
/// server (so READY=1 means DNS is being served), return the interface.
pub async fn start(
    ctx: hearth_runtime::Context,
    cfg: DaemonSettings,
) -> anyhow::Result<DnsInterface> {
    let settings = cfg.dns();
    validate(&settings).with_context(|| format!("{}", ctx.config_path.display()))?;
    let engine = Engine::open(&settings.zones, &ctx.state_dir)?;
    let server = DnsServer::start(&settings.listen, engine.view()).await?;
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let zones: Vec<&str> = engine.zones().iter().map(|z| z.name.as_str()).collect();
    ctx.notifier.status(&format!(
        "serving {} on {}",
        zones.join(", "),
        addrs.join(", ")
    ));
    tokio::spawn(server.run());
    if let Some(port) = cfg.gateway_port {
        let poll = std::time::Duration::from_secs(u64::from(cfg.gateway_poll_secs.max(1)));
        tokio::spawn(crate::gateways::follow(
            ctx.connection.clone(),
            engine.view(),
            port,
            poll,
        ));
    }
    Ok(DnsInterface::new(engine, ctx.access))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn restore_takes_a_removal_diff_or_a_list() {
        let doc = r#"{"zone":"home.arpa","serial_before":2,"serial_after":3,"added":[],
            "removed":[{"name":"a.home.arpa","type":"A","value":"10.0.0.1","ttl":300}],
            "dry_run":false}"#;
        let r = parse_records(doc).unwrap();
        assert_eq!(
            (r[0].name.as_str(), r[0].rtype.as_str()),
            ("a.home.arpa", "A")
        );
        // The document of a daemon before the typed diff, in an old plan.
        let old = r#"{"zone":"home.arpa","serial":3,"name":"a.home.arpa","added":[],
            "removed":[{"name":"a.home.arpa","type":"A","value":"10.0.0.1","ttl":300}]}"#;
        assert_eq!(parse_records(old).unwrap(), r);
        let r = parse_records(r#"[{"name":"b.home.arpa","type":"CNAME","value":"a.home.arpa"}]"#)
            .unwrap();
        assert_eq!(r[0].ttl, 0);
        let e = parse_records(r#"{"zone":"x"}"#).unwrap_err();
        assert!(e.message().contains("removed"), "{}", e.message());
        let e = parse_records(r#"[{"name":"a..b","type":"A","value":"1.2.3.4"}]"#).unwrap_err();
        assert!(e.message().contains("a..b"), "{}", e.message());
        let e = parse_records(r#"[{"name":"a.home.arpa","type":"MX","value":"x"}]"#).unwrap_err();
        assert!(e.message().contains("MX"), "{}", e.message());
    }

    #[test]
    fn zone_errors_keep_their_kind() {
        let e: HearthError = ZoneError::Conflict("dup".into()).into();
        assert_eq!(e.kind(), "Conflict");
        let e: HearthError = ZoneError::Storage("disk".into()).into();
        assert_eq!(e.kind(), "Internal");
    }
}

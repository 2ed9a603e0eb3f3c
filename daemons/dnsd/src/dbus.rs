//! `org.hearth.Dns1`: the only way records change. A thin adapter over the
//! [`Engine`]: authorize the caller, parse each argument into its validated
//! type (errors name the argument), run the engine, return its result as a
//! JSON string. See `docs/dbus/dns.md`.
//!
//! Changes need [`Role::Admin`]; previews (`dry_run = true`), `List` and
//! `Describe` need [`Role::Operator`]: the rule of [`hearth_common::rights`],
//! which hearth-intentd applies to a plan's requester too.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use hearth_common::types::{Address, DnsName};
use hearth_common::{names, HearthError};
use hearth_daemon::Access;
use serde::Serialize;
use zbus::message::Header;

use crate::config::{validate, DaemonSettings};
use crate::engine::{Engine, Op, RecordView, ZoneError};
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
        let change = self.with_engine(|e| e.apply(&op, dry_run))?;
        to_json(&change)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, HearthError> {
    serde_json::to_string(value)
        .map_err(|e| HearthError::Internal(format!("cannot encode the result: {e}")))
}

/// Parses `Restore`'s argument: a Change document (its `removed` list) or a
/// bare array of records.
pub fn parse_records(text: &str) -> Result<Vec<RecordView>, HearthError> {
    let bad = |why: String| {
        HearthError::InvalidArgument(format!(
            "invalid records {text:?}: {why}; give the Change document a removal returned or a JSON array of records"
        ))
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let list = match value {
        serde_json::Value::Object(mut m) => m
            .remove("removed")
            .ok_or_else(|| bad("the document has no \"removed\" list".into()))?,
        other => other,
    };
    serde_json::from_value(list).map_err(|e| bad(e.to_string()))
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
        to_json(&d)
    }

    /// Every zone with its serial, name server and records.
    async fn list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, HearthError> {
        self.authorize(conn, &hdr, true).await?;
        let l = self.with_engine(|e| e.list());
        to_json(&l)
    }
}

/// The daemon's start-up, run by `hearth_daemon::main` before the bus name is
/// taken: check the configuration, load the zones, bind and start the DNS
/// server (so READY=1 means DNS is being served), return the interface.
pub async fn start(
    ctx: hearth_daemon::Context,
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
    fn restore_takes_a_change_document_or_a_list() {
        let doc = r#"{"zone":"home.arpa","serial":3,"name":"a.home.arpa","added":[],
            "removed":[{"name":"a.home.arpa","type":"A","value":"10.0.0.1","ttl":300}]}"#;
        let r = parse_records(doc).unwrap();
        assert_eq!(
            (r[0].name.as_str(), r[0].rtype.as_str()),
            ("a.home.arpa", "A")
        );
        let r = parse_records(r#"[{"name":"b.home.arpa","type":"CNAME","value":"a.home.arpa"}]"#)
            .unwrap();
        assert_eq!(r[0].ttl, 0);
        let e = parse_records(r#"{"zone":"x"}"#).unwrap_err();
        assert!(e.message().contains("removed"), "{}", e.message());
        let e = parse_records(r#"[{"name":"a..b","type":"A","value":"1.2.3.4"}]"#).unwrap_err();
        assert!(e.message().contains("a..b"), "{}", e.message());
    }

    #[test]
    fn zone_errors_keep_their_kind() {
        let e: HearthError = ZoneError::Conflict("dup".into()).into();
        assert_eq!(e.kind(), "Conflict");
        let e: HearthError = ZoneError::Storage("disk".into()).into();
        assert_eq!(e.kind(), "Internal");
    }
}

//! Running calls: the [`Executor`] trait and its D-Bus implementation, and
//! the [`Measurer`] that measures executed actions into the TPM through
//! hearth-attestd.
//!
//! The D-Bus executor can call only [`hearth_playbook::methods::METHODS`]:
//! a [`Call`] is built from that table by rendering a verified playbook; the
//! executor checks its arguments against the table's types and makes the
//! matching call of the typed proxies in [`hearth_common::proxies`] (no
//! message body is built by hand). Its tests hold the two together: every
//! key of the table has a proxy call, which reaches the table's member with
//! the table's signature.

use std::future::Future;
use std::sync::Arc;

use hearth_common::contract::{self, network::Domain as NetDomain};
use hearth_common::proxies::{
    attestation::AttestationProxy, dhcp::DhcpProxy, dns::DnsProxy, network::NetworkProxy,
    pki::PkiProxy,
};
use hearth_common::spec::Context;
use hearth_common::HearthError;
use hearth_playbook::methods::{Arg, ArgType, Method};
use hearth_playbook::{ArgValue, Call};
use tokio::sync::OnceCell;

/// A call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ExecError {
    /// The D-Bus error name (`org.hearth.Error.Conflict`, …) or a local kind.
    pub name: String,
    /// Its message.
    pub message: String,
}

impl ExecError {
    /// True when no daemon answered (not on the bus, no reply, the
    /// connection failed): the call was never judged, so this says nothing
    /// about whether it would succeed later.
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self.name.as_str(),
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.Timeout"
                | "org.freedesktop.DBus.Error.TimedOut"
                | "org.freedesktop.DBus.Error.Disconnected"
                | "org.hearth.Error.ZBus"
        )
    }
}

/// Something that runs allow-listed calls.
pub trait Executor: Send + Sync + 'static {
    /// Makes the call; returns the method's string result.
    fn call(&self, call: &Call) -> impl Future<Output = Result<String, ExecError>> + Send;

    /// The change a call would make, when its daemon offers a preview
    /// (`None` when it offers none); `Err` is the daemon's refusal of the
    /// dry run, which the real call would meet too.
    fn preview(
        &self,
        call: &Call,
    ) -> impl Future<Output = Option<Result<String, ExecError>>> + Send;

    /// What validation needs: the existing domains (from hearth-netd).
    fn context(&self) -> impl Future<Output = Result<Context, ExecError>> + Send;
}

/// Measures the digest of an executed action's audit record.
pub trait Measurer: Send + Sync + 'static {
    /// `org.hearth.Attestation1.Measure(kind, name, sha256)`.
    fn measure(
        &self,
        kind: &str,
        name: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;
}

/// What validation needs out of hearth-netd's `ListDomains` answer
/// ([`hearth_common::contract::network::Domain`]): every domain, and those
/// marked as the admin domain, which the interpreter never proposes to
/// delete or cut off.
pub fn context_from_domains(text: &str) -> Result<Context, ExecError> {
    let list: Vec<NetDomain> =
        contract::decode("org.hearth.Network1.ListDomains", text).map_err(|e| ExecError {
            name: "org.hearth.Error.Internal".into(),
            message: e.message(),
        })?;
    Ok(Context {
        domains: list.iter().map(|d| d.name.clone()).collect(),
        protected: list
            .iter()
            .filter(|d| d.admin)
            .map(|d| d.name.clone())
            .collect(),
    })
}

/// Calls the daemons over D-Bus, through the typed proxies of
/// [`hearth_common::proxies`] only.
#[derive(Debug, Clone)]
pub struct DbusExecutor {
    conn: zbus::Connection,
    /// Made on first use (a proxy is only a name, a path and an interface
    /// over the connection; making one sends nothing).
    proxies: Arc<OnceCell<Proxies>>,
}

/// One proxy per daemon a playbook may call.
#[derive(Debug)]
struct Proxies {
    dns: DnsProxy<'static>,
    net: NetworkProxy<'static>,
    pki: PkiProxy<'static>,
    dhcp: DhcpProxy<'static>,
    attest: AttestationProxy<'static>,
}

impl Proxies {
    async fn new(conn: &zbus::Connection) -> zbus::Result<Self> {
        Ok(Proxies {
            dns: DnsProxy::new(conn).await?,
            net: NetworkProxy::new(conn).await?,
            pki: PkiProxy::new(conn).await?,
            dhcp: DhcpProxy::new(conn).await?,
            attest: AttestationProxy::new(conn).await?,
        })
    }

    /// Makes the typed call; `dry_run` goes to the methods that take it.
    async fn call(&self, t: Typed<'_>, dry_run: bool) -> Result<String, HearthError> {
        match t {
            Typed::DnsAddRecord(name, address) => self.dns.add_record(name, address, dry_run).await,
            Typed::DnsAddAlias(name, target) => self.dns.add_alias(name, target, dry_run).await,
            Typed::DnsRemove(name) => self.dns.remove(name, dry_run).await,
            Typed::DnsRemoveRecord(name, address) => {
                self.dns.remove_record(name, address, dry_run).await
            }
            Typed::DnsRestore(records) => self.dns.restore(records, dry_run).await,
            Typed::DnsList => self.dns.list().await,
            Typed::NetListDomains => self.net.list_domains().await,
            Typed::NetShow => self.net.show().await,
            Typed::NetMatrix => self.net.matrix().await,
            Typed::NetCreateDomain(name, subnet) => {
                self.net.create_domain(name, subnet, dry_run).await
            }
            Typed::NetDeleteDomain(name) => self.net.delete_domain(name, dry_run).await,
            Typed::NetAllow(from, to, port, protocol) => {
                self.net.allow(from, to, port, protocol, dry_run).await
            }
            Typed::NetRevoke(from, to) => self.net.revoke(from, to, dry_run).await,
            Typed::PkiIssueCertificate(name, days) => self.pki.issue_certificate(name, days).await,
            Typed::PkiRevokeCertificate(which) => self.pki.revoke_certificate(which).await,
            Typed::PkiListCertificates => self.pki.list_certificates().await,
            Typed::DhcpListDevices => self.dhcp.list_devices().await,
            Typed::DhcpReserve(device, address) => {
                self.dhcp.reserve(device, address, dry_run).await
            }
            Typed::DhcpReleaseReservation(device) => {
                self.dhcp.release_reservation(device, dry_run).await
            }
            Typed::AttestStatus => self.attest.status().await,
        }
    }
}

/// An allow-listed call with its arguments in the proxy method's types: one
/// variant per key of [`hearth_playbook::methods::METHODS`]. [`Typed::new`]
/// is the only way to make one, so the proxies are called with nothing but
/// the table's methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed<'a> {
    DnsAddRecord(&'a str, &'a str),
    DnsAddAlias(&'a str, &'a str),
    DnsRemove(&'a str),
    DnsRemoveRecord(&'a str, &'a str),
    DnsRestore(&'a str),
    DnsList,
    NetListDomains,
    NetShow,
    NetMatrix,
    NetCreateDomain(&'a str, &'a str),
    NetDeleteDomain(&'a str),
    NetAllow(&'a str, &'a str, u32, &'a str),
    NetRevoke(&'a str, &'a str),
    PkiIssueCertificate(&'a str, u32),
    PkiRevokeCertificate(&'a str),
    PkiListCertificates,
    DhcpListDevices,
    DhcpReserve(&'a str, &'a str),
    DhcpReleaseReservation(&'a str),
    AttestStatus,
}

impl<'a> Typed<'a> {
    /// Checks the rendered `args` against `method`'s argument types (and
    /// number ranges) and names the proxy call. A key of the table without
    /// a call here is an error (and fails this module's tests).
    fn new(method: &'static Method, args: &'a [ArgValue]) -> Result<Self, ExecError> {
        let mut a = Args::new(method, args)?;
        let t = match method.key {
            "dns.AddRecord" => Typed::DnsAddRecord(a.str()?, a.str()?),
            "dns.AddAlias" => Typed::DnsAddAlias(a.str()?, a.str()?),
            "dns.Remove" => Typed::DnsRemove(a.str()?),
            "dns.RemoveRecord" => Typed::DnsRemoveRecord(a.str()?, a.str()?),
            "dns.Restore" => Typed::DnsRestore(a.str()?),
            "dns.List" => Typed::DnsList,
            "net.ListDomains" => Typed::NetListDomains,
            "net.Show" => Typed::NetShow,
            "net.Matrix" => Typed::NetMatrix,
            "net.CreateDomain" => Typed::NetCreateDomain(a.str()?, a.str()?),
            "net.DeleteDomain" => Typed::NetDeleteDomain(a.str()?),
            "net.Allow" => Typed::NetAllow(a.str()?, a.str()?, a.u32()?, a.str()?),
            "net.Revoke" => Typed::NetRevoke(a.str()?, a.str()?),
            "pki.IssueCertificate" => Typed::PkiIssueCertificate(a.str()?, a.u32()?),
            "pki.RevokeCertificate" => Typed::PkiRevokeCertificate(a.str()?),
            "pki.ListCertificates" => Typed::PkiListCertificates,
            "dhcp.ListDevices" => Typed::DhcpListDevices,
            "dhcp.Reserve" => Typed::DhcpReserve(a.str()?, a.str()?),
            "dhcp.ReleaseReservation" => Typed::DhcpReleaseReservation(a.str()?),
            "attest.Status" => Typed::AttestStatus,
            other => {
                return Err(local(
                    "render",
                    format!("{other} is allow-listed but the executor has no proxy call for it"),
                ))
            }
        };
        a.finish()?;
        Ok(t)
    }
}

/// A call's rendered arguments, taken in order, each checked against the
/// table's type for its position.
struct Args<'a> {
    method: &'static Method,
    values: &'a [ArgValue],
    next: usize,
}

impl<'a> Args<'a> {
    fn new(method: &'static Method, values: &'a [ArgValue]) -> Result<Self, ExecError> {
        if values.len() != method.args.len() {
            return Err(local(
                "render",
                format!(
                    "{}: {} arguments given, {} expected",
                    method.key,
                    values.len(),
                    method.args.len()
                ),
            ));
        }
        Ok(Args {
            method,
            values,
            next: 0,
        })
    }

    fn take(&mut self) -> Result<(&'static Arg, &'a ArgValue), ExecError> {
        let i = self.next;
        self.next += 1;
        match (self.method.args.get(i), self.values.get(i)) {
            (Some(a), Some(v)) => Ok((a, v)),
            _ => Err(local(
                "render",
                format!(
                    "{}: the proxy call takes more arguments than the table",
                    self.method.key
                ),
            )),
        }
    }

    fn wrong_type(&self, a: &Arg) -> ExecError {
        local(
            "render",
            format!(
                "{}: argument {} has the wrong type",
                self.method.key, a.name
            ),
        )
    }

    /// The next argument, a string (`s`).
    fn str(&mut self) -> Result<&'a str, ExecError> {
        let (a, v) = self.take()?;
        match (a.ty, v) {
            (ArgType::Str, ArgValue::Str(s)) => Ok(s),
            _ => Err(self.wrong_type(a)),
        }
    }

    /// The next argument, an unsigned 32-bit number (`u`).
    fn u32(&mut self) -> Result<u32, ExecError> {
        let (a, v) = self.take()?;
        match (a.ty, v) {
            (ArgType::U32, ArgValue::Num(n)) => u32::try_from(*n)
                .map_err(|_| local("render", format!("{} {n} exceeds u32", a.name))),
            _ => Err(self.wrong_type(a)),
        }
    }

    /// Every argument was taken.
    fn finish(&self) -> Result<(), ExecError> {
        if self.next == self.method.args.len() {
            Ok(())
        } else {
            Err(local(
                "render",
                format!(
                    "{}: the proxy call takes fewer arguments than the table",
                    self.method.key
                ),
            ))
        }
    }
}

impl DbusExecutor {
    /// Uses an open bus connection.
    pub fn new(conn: zbus::Connection) -> Self {
        DbusExecutor {
            conn,
            proxies: Arc::default(),
        }
    }

    /// Calls `method` with `args` through its proxy; a dry-run method gets
    /// the trailing `dry_run` flag.
    async fn dispatch(
        &self,
        method: &'static Method,
        args: &[ArgValue],
        dry_run: bool,
    ) -> Result<String, ExecError> {
        let typed = Typed::new(method, args)?;
        let proxies = self
            .proxies
            .get_or_try_init(|| Proxies::new(&self.conn))
            .await
            .map_err(zbus_error)?;
        proxies
            .call(typed, dry_run)
            .await
            .map_err(|e| hearth_error(method, e))
    }
}

fn local(kind: &str, message: String) -> ExecError {
    ExecError {
        name: format!("org.hearth.Intent.{kind}"),
        message,
    }
}

/// A proxy's error for an allow-listed call: an answer of the wrong type
/// is the reply's fault (the daemon did answer), the rest as
/// [`proxy_error`].
fn hearth_error(method: &Method, e: HearthError) -> ExecError {
    match e {
        HearthError::ZBus(zbus::Error::Variant(v)) => {
            local("reply", format!("{}: {v}", method.key))
        }
        other => proxy_error(other),
    }
}

/// A proxy's error: a daemon's named refusal (`org.hearth.Error.*`) keeps
/// its name and message, the bus's own errors as [`zbus_error`].
fn proxy_error(e: HearthError) -> ExecError {
    match e {
        HearthError::ZBus(z) => zbus_error(z),
        named => ExecError {
            name: zbus::DBusError::name(&named).to_string(),
            message: named.message(),
        },
    }
}

fn zbus_error(e: zbus::Error) -> ExecError {
    match e {
        zbus::Error::MethodError(name, msg, _) => ExecError {
            name: name.to_string(),
            message: msg.unwrap_or_default(),
        },
        other => ExecError {
            name: "org.hearth.Error.ZBus".into(),
            message: other.to_string(),
        },
    }
}

impl Executor for DbusExecutor {
    async fn call(&self, call: &Call) -> Result<String, ExecError> {
        self.dispatch(call.method, &call.args, false).await
    }

    async fn preview(&self, call: &Call) -> Option<Result<String, ExecError>> {
        if !call.method.dry_run {
            return None;
        }
        Some(self.dispatch(call.method, &call.args, true).await)
    }

    async fn context(&self) -> Result<Context, ExecError> {
        let m = hearth_playbook::methods::lookup("net.ListDomains")
            .ok_or_else(|| local("config", "net.ListDomains is not allow-listed".into()))?;
        let text = self.dispatch(m, &[], false).await?;
        context_from_domains(&text)
    }
}

/// Measures through hearth-attestd over D-Bus (its typed proxy).
#[derive(Debug, Clone)]
pub struct DbusMeasurer {
    conn: zbus::Connection,
    proxy: Arc<OnceCell<AttestationProxy<'static>>>,
}

impl DbusMeasurer {
    /// Uses an open bus connection.
    pub fn new(conn: zbus::Connection) -> Self {
        DbusMeasurer {
            conn,
            proxy: Arc::default(),
        }
    }
}

/// How long a Measure may take before the action is refused as unmeasured.
pub const MEASURE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Measurer for DbusMeasurer {
    async fn measure(&self, kind: &str, name: &str, sha256: &str) -> Result<(), ExecError> {
        let proxy = self
            .proxy
            .get_or_try_init(|| AttestationProxy::new(&self.conn))
            .await
            .map_err(zbus_error)?;
        tokio::time::timeout(MEASURE_TIMEOUT, proxy.measure(kind, name, sha256))
            .await
            .map_err(|_| {
                local(
                    "timeout",
                    format!(
                        "org.hearth.Attestation1.Measure gave no answer in {} s",
                        MEASURE_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(proxy_error)?;
        // The record number Measure returns is not needed.
        Ok(())
    }
}

/// Measures, through hearth-attestd, what the gate trusts besides the
/// models: every envelope in the catalog directory (kind
/// `playbook-catalog`, its file name: the playbooks and the signed language
/// file `hearth-language.dsse.json`) and the configuration file holding the
/// approval policy (kind `policy`). An attestation daemon that cannot be reached is
/// logged, not fatal: a remote verifier then sees the measurements missing
/// until [`measure_until_done`] gets them in. Returns what was not measured.
pub async fn measure_trusted_inputs(
    measurer: &impl Measurer,
    catalog_dir: &std::path::Path,
    config: &std::path::Path,
) -> Vec<Unmeasured> {
    use sha2::{Digest, Sha256};
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(catalog_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".dsse.json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut inputs: Vec<(&str, String, std::path::PathBuf)> = files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ("playbook-catalog", name, p)
        })
        .collect();
    inputs.push(("policy", config.display().to_string(), config.to_path_buf()));
    let mut left = Vec::new();
    for (kind, name, path) in inputs {
        let digest = match std::fs::read(&path) {
            Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot read for measurement: {e}");
                continue;
            }
        };
        if let Err(e) = measurer.measure(kind, &name, &digest).await {
            tracing::warn!(kind, name, "not measured: {e}");
            left.push(Unmeasured {
                kind: kind.to_string(),
                name,
                sha256: digest,
            });
        }
    }
    left
}

/// A start-up input (model, playbook envelope, policy file) whose
/// measurement failed: hearth-attestd did not answer in time, or was not
/// there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmeasured {
    /// The measurement kind (`model`, `playbook-catalog`, `policy`).
    pub kind: String,
    /// The name it is measured under.
    pub name: String,
    /// SHA-256 of its content, hex (taken when it was read at start).
    pub sha256: String,
}

/// Measures again, every `every`, what start-up could not measure, until
/// all of it is in (a TPM starved on a loaded host, or hearth-attestd
/// restarting, must not leave a verifier seeing the models missing for the
/// whole boot). Each retry is logged; returns when nothing is left.
pub async fn measure_until_done(
    measurer: &impl Measurer,
    mut left: Vec<Unmeasured>,
    every: std::time::Duration,
) {
    while !left.is_empty() {
        tokio::time::sleep(every).await;
        let mut still = Vec::new();
        for u in left {
            match measurer.measure(&u.kind, &u.name, &u.sha256).await {
                Ok(()) => tracing::info!(kind = u.kind, name = u.name, "measured on retry"),
                Err(e) => {
                    tracing::warn!(kind = u.kind, name = u.name, "still not measured: {e}");
                    still.push(u);
                }
            }
        }
        left = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use hearth_playbook::methods::METHODS;
    use zbus::zvariant::{Structure, Value};

    /// Arguments of the table's types for `m`.
    fn sample(m: &Method) -> Vec<ArgValue> {
        m.args
            .iter()
            .map(|a| match a.ty {
                ArgType::Str => ArgValue::Str(a.name.into()),
                ArgType::U16 | ArgType::U32 => ArgValue::Num(7),
            })
            .collect()
    }

    #[test]
    fn every_allow_listed_key_has_a_proxy_call_and_arguments_are_checked() {
        for m in METHODS {
            let args = sample(m);
            if let Err(e) = Typed::new(m, &args) {
                panic!("{}: {e}", m.key);
            }
        }
        // A key the executor does not know is refused, whatever the table says.
        let unknown: &'static Method = Box::leak(Box::new(Method {
            key: "dhcp.Forget",
            service: hearth_common::names::DHCP,
            member: "Forget",
            args: &[],
            effect: hearth_common::spec::Risk::Destructive,
            dry_run: true,
        }));
        let e = Typed::new(unknown, &[]).unwrap_err();
        assert!(e.message.contains("no proxy call"), "{e}");

        let allow = hearth_playbook::methods::lookup("net.Allow").unwrap();
        let args = |port: ArgValue| {
            vec![
                ArgValue::Str("iot".into()),
                ArgValue::Str("lan".into()),
                port,
                ArgValue::Str("tcp".into()),
            ]
        };
        let ok = args(ArgValue::Num(443));
        assert_eq!(
            Typed::new(allow, &ok).unwrap(),
            Typed::NetAllow("iot", "lan", 443, "tcp")
        );
        let too_big = args(ArgValue::Num(u64::from(u32::MAX) + 1));
        let e = Typed::new(allow, &too_big).unwrap_err();
        assert_eq!(e.name, "org.hearth.Intent.render");
        assert_eq!(e.message, "port 4294967296 exceeds u32");
        let text = args(ArgValue::Str("443".into()));
        let e = Typed::new(allow, &text).unwrap_err();
        assert_eq!(e.message, "net.Allow: argument port has the wrong type");
        let e = Typed::new(allow, &ok[..3]).unwrap_err();
        assert_eq!(e.message, "net.Allow: 3 arguments given, 4 expected");
    }

    /// What the stand-in answers: where the call arrived (name, path,
    /// interface, member), the signature of its body, and whether it was a
    /// dry run (the body's trailing boolean).
    fn seen(msg: &zbus::Message) -> String {
        let h = msg.header();
        let dry_run = matches!(
            msg.body()
                .deserialize::<Structure>()
                .map(Structure::into_fields)
                .as_deref(),
            Ok([.., Value::Bool(true)])
        );
        format!(
            "{} {} {} {}({}){}",
            h.destination().map(|d| d.as_str()).unwrap_or_default(),
            h.path().map(|p| p.as_str()).unwrap_or_default(),
            h.interface().map(|i| i.as_str()).unwrap_or_default(),
            h.member().map(|m| m.as_str()).unwrap_or_default(),
            msg.body().signature().to_string_no_parens(),
            if dry_run { " dry run" } else { "" }
        )
    }

    /// The answer expected from [`seen`] for a call of `m` as the table
    /// describes it.
    fn expected(m: &Method, dry_run: bool) -> String {
        format!(
            "{} {} {} {}({}){}",
            m.service.bus_name,
            m.service.path,
            m.service.bus_name,
            m.member,
            m.signature(),
            if dry_run { " dry run" } else { "" }
        )
    }

    /// The stand-in of every daemon: it owns their names and answers any
    /// method call with [`seen`], whatever its member or signature, so that
    /// the test, not zbus's dispatch, compares each call with the table.
    /// `calls` must be opened before any call is made: zbus drops a message
    /// that reaches a connection with no stream open, and its caller would
    /// wait for an answer that never comes.
    async fn recorder(conn: zbus::Connection, mut calls: zbus::MessageStream) {
        while let Some(Ok(msg)) = calls.next().await {
            if msg.message_type() == zbus::message::Type::MethodCall {
                conn.reply(&msg.header(), &seen(&msg)).await.unwrap();
            }
        }
    }

    /// Every allow-listed call, made and previewed by the executor, arrives
    /// at its daemon's name, path, interface and member with exactly the
    /// table's signature (`Method::signature`, the trailing `b` of a dry run
    /// included) and the dry-run flag set only for a preview: the proxies
    /// and the table agree, call by call.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_allow_listed_call_reaches_its_member_with_the_tables_signature() {
        use hearth_common::names;
        let dir = tempfile::tempdir().unwrap();
        let bus = hearth_testbed::PrivateBus::start(dir.path()).unwrap();
        let addr = bus.address.as_str();
        let mut b = zbus::connection::Builder::address(addr).unwrap();
        for svc in [
            names::DNS,
            names::NETWORK,
            names::PKI,
            names::DHCP,
            names::ATTESTATION,
        ] {
            b = b.name(svc.bus_name).unwrap();
        }
        let server = b.build().await.unwrap();
        let calls = zbus::MessageStream::from(&server);
        let stand_in = tokio::spawn(recorder(server, calls));
        // A call left unanswered fails the test instead of hanging it.
        let client = zbus::connection::Builder::address(addr)
            .unwrap()
            .method_timeout(std::time::Duration::from_secs(30))
            .build()
            .await
            .unwrap();
        let x = DbusExecutor::new(client);
        for m in METHODS {
            let call = Call {
                method: m,
                args: sample(m),
            };
            let got = x
                .call(&call)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", m.key));
            assert_eq!(got, expected(m, false), "{}", m.key);
            let preview = x.preview(&call).await;
            if m.dry_run {
                let got = preview
                    .unwrap()
                    .unwrap_or_else(|e| panic!("{}: {e}", m.key));
                assert_eq!(got, expected(m, true), "{}", m.key);
            } else {
                assert!(preview.is_none(), "{}", m.key);
            }
        }
        stand_in.abort();
    }

    #[test]
    fn the_context_is_read_from_the_typed_domain_list() {
        use hearth_common::types::DomainId;
        let id = |d: &str| DomainId::parse(d).unwrap();
        let text = r#"[{"name":"admin","bridge":"hb-admin","subnet":"10.77.0.0/24","gateway":"10.77.0.1","ula":null,"vlan":null,"services":["dns"],"admin":true},
                       {"name":"lan","bridge":"hb-lan","subnet":"10.77.1.0/24","gateway":"10.77.1.1","ula":null,"vlan":null,"services":[],"admin":false}]"#;
        let c = context_from_domains(text).unwrap();
        assert_eq!(c.domains, vec![id("admin"), id("lan")]);
        assert_eq!(c.protected, vec![id("admin")]);
        // The old guessed shapes are refused, naming the method.
        for bad in [
            r#"["lan","iot"]"#,
            r#"{"domains":[{"id":"lan"}]}"#,
            "not json",
        ] {
            let e = context_from_domains(bad).unwrap_err();
            assert!(e.message.contains("ListDomains"), "{e}");
        }
    }

    /// Fails each item's first two measurements, then records it.
    struct Flaky {
        tries: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
        done: std::sync::Mutex<Vec<String>>,
    }

    impl Measurer for Flaky {
        async fn measure(&self, kind: &str, name: &str, _sha256: &str) -> Result<(), ExecError> {
            let key = format!("{kind} {name}");
            let n = {
                let mut t = self.tries.lock().unwrap();
                let n = t.entry(key.clone()).or_default();
                *n += 1;
                *n
            };
            if n <= 2 {
                return Err(local("timeout", format!("try {n}")));
            }
            self.done.lock().unwrap().push(key);
            Ok(())
        }
    }

    #[tokio::test]
    async fn what_start_up_could_not_measure_is_measured_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.show.dsse.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not measured").unwrap();
        let config = dir.path().join("hearth-intentd.toml");
        std::fs::write(&config, b"").unwrap();
        let m = Flaky {
            tries: Default::default(),
            done: Default::default(),
        };
        let left = measure_trusted_inputs(&m, dir.path(), &config).await;
        let names: Vec<&str> = left.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["net.show.dsse.json", config.to_str().unwrap()]);
        assert!(m.done.lock().unwrap().is_empty());
        measure_until_done(&m, left, std::time::Duration::from_millis(1)).await;
        let mut done = m.done.lock().unwrap().clone();
        done.sort();
        assert_eq!(
            done,
            [
                "playbook-catalog net.show.dsse.json".to_string(),
                format!("policy {}", config.display())
            ]
        );
    }
}

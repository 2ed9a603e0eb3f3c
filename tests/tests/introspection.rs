//! The bus contract as the daemons serve it, held against the files checked
//! into `docs/dbus/` (one `<interface>.xml` per `org.hearth.*` interface).
//!
//! 1. Every daemon, started in one sandbox, is asked
//!    `org.freedesktop.DBus.Introspectable.Introspect` on its object; each
//!    `org.hearth.*` interface it returns must equal the checked-in file.
//!    The standard `org.freedesktop.*` interfaces are ignored; the
//!    comparison is on members (methods with their arguments' names, types
//!    and directions, signals, properties with type and access,
//!    annotations), one line per member sorted by name, so whitespace and
//!    the order zbus writes things in do not count. A difference fails with
//!    the member lines that differ (`-` checked in, `+` served).
//! 2. The typed proxies of `hearth-common` are called against a stand-in
//!    that owns every Hearth name on a private bus: each call must name a
//!    method of the checked-in file with exactly its input signature, and
//!    the proxy must accept a reply of the file's output signature (for
//!    properties: a value of the file's type). Every method and property in
//!    the files must be reached by some proxy call.
//!
//! Re-record the files from the daemons (then read `git diff docs/dbus`):
//!
//! ```sh
//! cargo build --bins
//! HEARTH_BLESS=1 cargo test -p hearth-testbed --test introspection
//! ```
//!
//! `playbook/tests/methods_match_bus.rs` holds the playbook allow-list
//! against the same files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use futures_util::StreamExt as _;
use hearth_common::names::{Service, ALL, DAEMON_INTERFACE};
use hearth_testbed::{repo_root, PrivateBus, Sandbox};
use zbus::zvariant::{StructureBuilder, Value};
use zbus_xml::{ArgDirection, Interface, Node};

/// Where the checked-in introspection lives.
fn docs_dbus() -> PathBuf {
    repo_root().join("docs/dbus")
}

fn xml_path(interface: &str) -> PathBuf {
    docs_dbus().join(format!("{interface}.xml"))
}

fn bless() -> bool {
    std::env::var("HEARTH_BLESS").is_ok_and(|v| v == "1")
}

fn annotations(list: &[zbus_xml::Annotation]) -> String {
    list.iter()
        .map(|a| format!(" @{}={:?}", a.name(), a.value()))
        .collect()
}

fn arg_text(a: &zbus_xml::Arg, with_direction: bool) -> String {
    let mut t = String::new();
    if with_direction {
        t.push_str(match a.direction() {
            Some(ArgDirection::Out) => "out ",
            _ => "in ",
        });
    }
    t.push_str(&a.ty().to_string());
    if let Some(n) = a.name() {
        t.push(' ');
        t.push_str(n);
    }
    t.push_str(&annotations(a.annotations()));
    t
}

/// The interface as `(kind name) -> one line`, the unit of comparison.
fn members(iface: &Interface<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !iface.annotations().is_empty() {
        out.insert(
            "interface".to_string(),
            format!("interface{}", annotations(iface.annotations())),
        );
    }
    for m in iface.methods() {
        let args: Vec<String> = m.args().iter().map(|a| arg_text(a, true)).collect();
        out.insert(
            format!("method {}", m.name()),
            format!(
                "method {}({}){}",
                m.name(),
                args.join(", "),
                annotations(m.annotations())
            ),
        );
    }
    for s in iface.signals() {
        let args: Vec<String> = s.args().iter().map(|a| arg_text(a, false)).collect();
        out.insert(
            format!("signal {}", s.name()),
            format!(
                "signal {}({}){}",
                s.name(),
                args.join(", "),
                annotations(s.annotations())
            ),
        );
    }
    for p in iface.properties() {
        let access = match (p.access().read(), p.access().write()) {
            (true, true) => "readwrite",
            (true, false) => "read",
            _ => "write",
        };
        out.insert(
            format!("property {}", p.name()),
            format!(
                "property {}: {} ({access}){}",
                p.name(),
                p.ty().to_string(),
                annotations(p.annotations())
            ),
        );
    }
    out
}

/// The lines that differ, `-` as checked in, `+` as served; empty if equal.
fn diff(checked_in: &BTreeMap<String, String>, served: &BTreeMap<String, String>) -> String {
    let keys: BTreeSet<&String> = checked_in.keys().chain(served.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (a, b) = (checked_in.get(k), served.get(k));
        if a == b {
            continue;
        }
        if let Some(a) = a {
            out.push_str(&format!("  - {a}\n"));
        }
        if let Some(b) = b {
            out.push_str(&format!("  + {b}\n"));
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn annotation_xml(out: &mut String, indent: &str, list: &[zbus_xml::Annotation]) {
    for a in list {
        out.push_str(&format!(
            "{indent}<annotation name=\"{}\" value=\"{}\"/>\n",
            escape(a.name()),
            escape(a.value())
        ));
    }
}

fn args_xml(out: &mut String, args: &[zbus_xml::Arg], with_direction: bool) {
    for a in args {
        let mut attrs = String::new();
        if let Some(n) = a.name() {
            attrs.push_str(&format!(" name=\"{}\"", escape(n)));
        }
        attrs.push_str(&format!(" type=\"{}\"", escape(&a.ty().to_string())));
        if with_direction {
            let d = match a.direction() {
                Some(ArgDirection::Out) => "out",
                _ => "in",
            };
            attrs.push_str(&format!(" direction=\"{d}\""));
        }
        if a.annotations().is_empty() {
            out.push_str(&format!("      <arg{attrs}/>\n"));
        } else {
            out.push_str(&format!("      <arg{attrs}>\n"));
            annotation_xml(out, "        ", a.annotations());
            out.push_str("      </arg>\n");
        }
    }
}

/// The file as recorded: the interface alone, members sorted by name.
fn to_xml(iface: &Interface<'_>, served_by: &str) -> String {
    let name = iface.name().to_string();
    let mut out = String::from(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n",
    );
    out.push_str(&format!(
        "<!-- {name} as {served_by} serves it (Introspect on its object, members sorted by\n     name). Checked by tests/tests/introspection.rs against the running daemons\n     and by playbook/tests/methods_match_bus.rs against the playbook allow-list.\n     Re-record: HEARTH_BLESS=1 cargo test -p hearth-testbed --test introspection -->\n"
    ));
    out.push_str(&format!(
        "<node>\n  <interface name=\"{}\">\n",
        escape(&name)
    ));
    annotation_xml(&mut out, "    ", iface.annotations());
    let mut methods: Vec<_> = iface.methods().iter().collect();
    methods.sort_by_key(|m| m.name().to_string());
    for m in methods {
        out.push_str(&format!("    <method name=\"{}\">\n", m.name()));
        annotation_xml(&mut out, "      ", m.annotations());
        args_xml(&mut out, m.args(), true);
        out.push_str("    </method>\n");
    }
    let mut signals: Vec<_> = iface.signals().iter().collect();
    signals.sort_by_key(|s| s.name().to_string());
    for s in signals {
        out.push_str(&format!("    <signal name=\"{}\">\n", s.name()));
        annotation_xml(&mut out, "      ", s.annotations());
        args_xml(&mut out, s.args(), false);
        out.push_str("    </signal>\n");
    }
    let mut props: Vec<_> = iface.properties().iter().collect();
    props.sort_by_key(|p| p.name().to_string());
    for p in props {
        let access = match (p.access().read(), p.access().write()) {
            (true, true) => "readwrite",
            (true, false) => "read",
            _ => "write",
        };
        let head = format!(
            "    <property name=\"{}\" type=\"{}\" access=\"{access}\"",
            p.name(),
            escape(&p.ty().to_string())
        );
        if p.annotations().is_empty() {
            out.push_str(&format!("{head}/>\n"));
        } else {
            out.push_str(&format!("{head}>\n"));
            annotation_xml(&mut out, "      ", p.annotations());
            out.push_str("    </property>\n");
        }
    }
    out.push_str("  </interface>\n</node>\n");
    out
}

/// Reads a checked-in file; its only interface must carry the file's name.
fn checked_in(interface: &str) -> Result<Node<'static>, String> {
    let path = xml_path(interface);
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (record it: HEARTH_BLESS=1 cargo test -p hearth-testbed --test introspection)",
            path.display()
        )
    })?;
    let node = Node::from_reader(text.as_bytes())
        .map_err(|e| format!("{}: not introspection XML: {e}", path.display()))?;
    let names: Vec<String> = node
        .interfaces()
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    if names != [interface] {
        return Err(format!(
            "{}: holds the interfaces {names:?}, expected exactly {interface}",
            path.display()
        ));
    }
    Ok(node)
}

/// The checked-in `org.hearth.*.xml` files, by interface name.
fn checked_in_files() -> BTreeSet<String> {
    fs::read_dir(docs_dbus())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".xml")
                .filter(|n| n.starts_with("org.hearth."))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn each_daemon_serves_exactly_the_interfaces_checked_into_docs_dbus() {
    let tmp = tempfile::tempdir().unwrap();
    let sb = Sandbox::up_every_daemon(&tmp.path().join("sb"))
        .unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    assert_eq!(sb.daemons.len(), ALL.len(), "every daemon started");
    let address = sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // (service, raw XML of its object)
    let served: Vec<(Service, String)> = rt.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let mut out = Vec::new();
        for s in ALL {
            let p = zbus::fdo::IntrospectableProxy::builder(&conn)
                .destination(s.bus_name)
                .unwrap()
                .path(s.path)
                .unwrap()
                .build()
                .await
                .unwrap();
            let xml = p
                .introspect()
                .await
                .unwrap_or_else(|e| panic!("{}: Introspect: {e}", s.unit));
            out.push((s, xml));
        }
        out
    });
    drop(sb);

    let mut problems = Vec::new();
    let mut recorded: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    let mut differences: Vec<(String, String, Vec<&str>)> = Vec::new();
    for (s, xml) in &served {
        let node = Node::from_reader(xml.as_bytes())
            .unwrap_or_else(|e| panic!("{}: its Introspect reply does not parse: {e}", s.unit));
        let ours: Vec<&Interface<'_>> = node
            .interfaces()
            .iter()
            .filter(|i| !i.name().starts_with("org.freedesktop."))
            .collect();
        let names: BTreeSet<String> = ours.iter().map(|i| i.name().to_string()).collect();
        let want: BTreeSet<String> = [s.bus_name.to_string(), DAEMON_INTERFACE.to_string()].into();
        if names != want {
            problems.push(format!(
                "{} serves {names:?} at {}, expected {want:?}",
                s.unit, s.path
            ));
        }
        for iface in ours {
            let name = iface.name().to_string();
            let got = members(iface);
            let served_by = if name == DAEMON_INTERFACE {
                "every daemon".to_string()
            } else {
                s.unit.to_string()
            };
            if bless() {
                // org.hearth.Daemon1 comes from every daemon: they must agree.
                if let Some((by, first)) = recorded.get(&name) {
                    let d = diff(first, &got);
                    if !d.is_empty() {
                        problems.push(format!(
                            "{name}: {} serves it differently from {by}:\n{d}",
                            s.unit
                        ));
                    }
                    continue;
                }
                fs::write(xml_path(&name), to_xml(iface, &served_by)).unwrap();
                eprintln!("recorded {}", xml_path(&name).display());
                recorded.insert(name, (s.unit.to_string(), got));
                continue;
            }
            match checked_in(&name) {
                Err(e) => problems.push(e),
                Ok(file) => {
                    let want = members(&file.interfaces()[0]);
                    let d = diff(&want, &got);
                    if !d.is_empty() {
                        // One report per difference, naming every daemon
                        // that shows it (org.hearth.Daemon1 is everyone's).
                        match differences
                            .iter_mut()
                            .find(|(n, x, _)| *n == name && *x == d)
                        {
                            Some((_, _, units)) => units.push(s.unit),
                            None => differences.push((name.clone(), d, vec![s.unit])),
                        }
                    }
                }
            }
            recorded.insert(name, (s.unit.to_string(), got));
        }
    }
    for (name, d, units) in differences {
        problems.push(format!(
            "{name}: docs/dbus/{name}.xml (-) and what {} serve{} (+) differ:\n{d}",
            units.join(", "),
            if units.len() == 1 { "s" } else { "" }
        ));
    }
    for stale in checked_in_files() {
        if !recorded.contains_key(&stale) {
            problems.push(format!(
                "docs/dbus/{stale}.xml: no daemon serves {stale} (remove the file?)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the bus contract changed; if on purpose, re-record with \
         HEARTH_BLESS=1 cargo test -p hearth-testbed --test introspection \
         and update the allow-list, the proxies and docs/dbus/*.md to match\n\n{}",
        problems.join("\n")
    );
}

/// A value of a D-Bus type, for the stand-in's replies.
fn sample(ty: &str) -> Value<'static> {
    match ty {
        "s" => Value::from(String::new()),
        "b" => Value::from(false),
        "y" => Value::from(0u8),
        "n" => Value::from(0i16),
        "q" => Value::from(0u16),
        "i" => Value::from(0i32),
        "u" => Value::from(0u32),
        "x" => Value::from(0i64),
        "t" => Value::from(0u64),
        "d" => Value::from(0.0f64),
        "as" => Value::from(Vec::<String>::new()),
        other => panic!("the stand-in has no sample value of type {other}: add one to sample()"),
    }
}

/// What the checked-in files say of one interface.
#[derive(Debug, Default, Clone)]
struct Contract {
    /// member -> (input signature, output types)
    methods: BTreeMap<String, (String, Vec<String>)>,
    /// property -> type
    properties: BTreeMap<String, String>,
}

fn contracts() -> BTreeMap<String, Contract> {
    let mut out = BTreeMap::new();
    for name in checked_in_files() {
        let node = checked_in(&name).unwrap_or_else(|e| panic!("{e}"));
        let iface = &node.interfaces()[0];
        let mut c = Contract::default();
        for m in iface.methods() {
            let input: String = m
                .args()
                .iter()
                .filter(|a| a.direction() != Some(ArgDirection::Out))
                .map(|a| a.ty().to_string())
                .collect();
            let output: Vec<String> = m
                .args()
                .iter()
                .filter(|a| a.direction() == Some(ArgDirection::Out))
                .map(|a| a.ty().to_string())
                .collect();
            c.methods.insert(m.name().to_string(), (input, output));
        }
        for p in iface.properties() {
            c.properties
                .insert(p.name().to_string(), p.ty().to_string());
        }
        out.insert(name, c);
    }
    out
}

/// The stand-in: answers every call to a Hearth name from the contract,
/// and records `(interface, member, signature)` of each call.
/// `stream` must be opened before any call is made: zbus drops a message
/// that reaches a connection with no stream open, and its caller would wait
/// for an answer that never comes.
async fn stand_in(
    conn: zbus::Connection,
    mut stream: zbus::MessageStream,
    contracts: BTreeMap<String, Contract>,
    calls: tokio::sync::mpsc::UnboundedSender<(String, String, String)>,
) {
    while let Some(Ok(msg)) = stream.next().await {
        let header = msg.header();
        if header.message_type() != zbus::message::Type::MethodCall {
            continue;
        }
        let iface = header
            .interface()
            .map(|i| i.to_string())
            .unwrap_or_default();
        let member = header.member().map(|m| m.to_string()).unwrap_or_default();
        let sig = msg.body().signature().to_string_no_parens();
        // A property read arrives as Properties.Get(interface, name).
        let (iface, member, reply) =
            if iface == "org.freedesktop.DBus.Properties" && member == "Get" {
                let (pi, pn): (String, String) = msg.body().deserialize().unwrap();
                let ty = contracts
                    .get(&pi)
                    .and_then(|c| c.properties.get(&pn))
                    .cloned();
                let reply = ty.map(|t| vec![Value::Value(Box::new(sample(&t)))]);
                (pi, format!("property {pn}"), reply)
            } else {
                let out = contracts
                    .get(&iface)
                    .and_then(|c| c.methods.get(&member))
                    .map(|(_, out)| out.iter().map(|t| sample(t)).collect::<Vec<_>>());
                (iface, member, out)
            };
        calls.send((iface, member, sig)).unwrap();
        match reply {
            Some(values) if values.is_empty() => conn.reply(&header, &()).await.unwrap(),
            Some(values) => {
                let mut b = StructureBuilder::new();
                for v in values {
                    b = b.append_field(v);
                }
                conn.reply(&header, &b.build().unwrap()).await.unwrap()
            }
            None => conn
                .reply_error(
                    &header,
                    "org.freedesktop.DBus.Error.UnknownMethod",
                    &"not in docs/dbus",
                )
                .await
                .unwrap(),
        }
    }
}

/// Methods a daemon serves that no proxy of `hearth-common` has yet: the
/// known gaps, each one a debt (none now). Remove an entry when its proxy
/// method lands (this test then insists on it).
const NOT_IN_PROXIES: &[(&str, &str)] = &[];

#[tokio::test]
async fn the_common_proxies_call_the_methods_checked_into_docs_dbus() {
    use hearth_common::proxies::{
        attestation::AttestationProxy, daemon::DaemonProxy, dhcp::DhcpProxy, dns::DnsProxy,
        intent::IntentProxy, network::NetworkProxy, pki::PkiProxy,
    };

    if bless() {
        // The other test is rewriting the files; run again without HEARTH_BLESS.
        eprintln!("HEARTH_BLESS=1: the proxies are not checked in this run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(tmp.path()).unwrap();
    let contracts = contracts();
    assert!(
        contracts.contains_key(DAEMON_INTERFACE),
        "docs/dbus/{DAEMON_INTERFACE}.xml is missing"
    );

    let mut server = zbus::connection::Builder::address(bus.address.as_str()).unwrap();
    for s in ALL {
        server = server.name(s.bus_name).unwrap();
    }
    let server = server.build().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = zbus::MessageStream::from(&server);
    let task = tokio::spawn(stand_in(server, stream, contracts.clone(), tx));

    // A call left unanswered fails the test instead of hanging it.
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .method_timeout(std::time::Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    // Every call must succeed: the stand-in answered with the file's output
    // type and the proxy accepted it. The arguments' values do not matter.
    let mut results: Vec<(&str, Result<(), String>)> = Vec::new();
    macro_rules! call {
        ($what:expr, $e:expr) => {
            results.push(($what, $e.await.map(|_| ()).map_err(|e| e.to_string())))
        };
    }

    let a = AttestationProxy::new(&conn).await.unwrap();
    call!("attestation.measure", a.measure("", "", ""));
    call!("attestation.status", a.status());
    call!("attestation.log", a.log());
    call!("attestation.pcrs", a.pcrs());

    let d = DhcpProxy::new(&conn).await.unwrap();
    call!("dhcp.list_devices", d.list_devices());
    call!("dhcp.show_device", d.show_device(""));
    call!("dhcp.pools", d.pools());
    call!("dhcp.reserve", d.reserve("", "", false));
    call!("dhcp.release_reservation", d.release_reservation("", false));
    call!("dhcp.forget", d.forget("", false));

    let n = DnsProxy::new(&conn).await.unwrap();
    call!("dns.add_record", n.add_record("", "", false));
    call!("dns.add_alias", n.add_alias("", "", false));
    call!("dns.remove", n.remove("", false));
    call!("dns.remove_record", n.remove_record("", "", false));
    call!("dns.restore", n.restore("", false));
    call!("dns.describe", n.describe(""));
    call!("dns.list", n.list());

    let i = IntentProxy::new(&conn).await.unwrap();
    call!("intent.ask", i.ask(""));
    call!("intent.ask_structured", i.ask_structured("", ""));
    call!("intent.confirm", i.confirm(""));
    call!("intent.approve", i.approve(""));
    call!("intent.cancel", i.cancel(""));
    call!("intent.confirm_trial", i.confirm_trial("", 60));
    call!("intent.keep", i.keep(""));
    call!("intent.list_trials", i.list_trials());
    call!("intent.list_pending", i.list_pending());
    call!("intent.catalog", i.catalog());
    call!("intent.show_playbook", i.show_playbook(""));
    call!("intent.verify_playbook", i.verify_playbook("", ""));
    call!("intent.install_playbook", i.install_playbook("", ""));
    call!("intent.reload_catalog", i.reload_catalog());
    call!("intent.audit_verify", i.audit_verify());
    call!("intent.audit_verify_against", i.audit_verify_against("[]"));
    call!("intent.audit_list", i.audit_list(0));

    let net = NetworkProxy::new(&conn).await.unwrap();
    call!("network.list_domains", net.list_domains());
    call!("network.show", net.show());
    call!("network.matrix", net.matrix());
    call!("network.create_domain", net.create_domain("", "", false));
    call!("network.delete_domain", net.delete_domain("", false));
    call!("network.allow", net.allow("", "", 0, "", false));
    call!("network.revoke", net.revoke("", "", false));
    call!("network.reconcile", net.reconcile());

    let p = PkiProxy::new(&conn).await.unwrap();
    call!("pki.init", p.init());
    call!("pki.info", p.info());
    call!("pki.root_certificate", p.root_certificate());
    call!("pki.issue_certificate", p.issue_certificate("", 0));
    call!("pki.issue_for_name", p.issue_for_name("", "", 0));
    call!("pki.issue_from_csr", p.issue_from_csr("", "", 0));
    call!(
        "pki.issue_daemon_certificate",
        p.issue_daemon_certificate("")
    );
    call!("pki.revoke_certificate", p.revoke_certificate(""));
    call!("pki.list_certificates", p.list_certificates());
    call!("pki.show_certificate", p.show_certificate(""));
    call!("pki.crl", p.crl());
    call!("pki.sign_playbook", p.sign_playbook(""));
    call!(
        "pki.playbook_signer_certificate",
        p.playbook_signer_certificate()
    );

    // org.hearth.Daemon1 has no default service; any daemon's name will do.
    let dm = DaemonProxy::builder(&conn)
        .destination(hearth_common::names::NETWORK.bus_name)
        .unwrap()
        .path(hearth_common::names::NETWORK.path)
        .unwrap()
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    call!("daemon.ping", dm.ping());
    call!("daemon.who_am_i", dm.who_am_i());
    call!("daemon.name", dm.name());
    call!("daemon.version", dm.version());
    call!("daemon.uptime", dm.uptime());
    call!("daemon.status", dm.status());

    task.abort();
    let mut calls = Vec::new();
    while let Ok(c) = rx.try_recv() {
        calls.push(c);
    }

    let mut problems = Vec::new();
    for (what, r) in &results {
        if let Err(e) = r {
            problems.push(format!(
                "proxy {what}: the reply the file describes was refused: {e}"
            ));
        }
    }
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    for (iface, member, sig) in &calls {
        let Some(c) = contracts.get(iface) else {
            problems.push(format!(
                "a proxy called {iface}.{member}: no docs/dbus/{iface}.xml"
            ));
            continue;
        };
        if let Some(prop) = member.strip_prefix("property ") {
            if !c.properties.contains_key(prop) {
                problems.push(format!(
                    "a proxy reads property {iface}.{prop}: not in docs/dbus/{iface}.xml"
                ));
            }
            reached.insert((iface.clone(), prop.to_string()));
            continue;
        }
        match c.methods.get(member) {
            None => problems.push(format!(
                "a proxy calls {iface}.{member}({sig}): not in docs/dbus/{iface}.xml"
            )),
            Some((input, _)) if input != sig => problems.push(format!(
                "a proxy calls {iface}.{member} with ({sig}); docs/dbus/{iface}.xml says ({input})"
            )),
            Some(_) => {}
        }
        reached.insert((iface.clone(), member.clone()));
    }
    for (iface, m) in NOT_IN_PROXIES {
        if reached.contains(&(iface.to_string(), m.to_string())) {
            problems.push(format!(
                "{iface}.{m} is reached by a proxy now: remove it from NOT_IN_PROXIES"
            ));
        }
    }
    for (iface, c) in &contracts {
        for m in c.methods.keys().chain(c.properties.keys()) {
            if NOT_IN_PROXIES.contains(&(iface.as_str(), m.as_str())) {
                continue;
            }
            if !reached.contains(&(iface.clone(), m.clone())) {
                problems.push(format!(
                    "{iface}.{m} (docs/dbus/{iface}.xml): no proxy call reached it \
                     (add it to the proxy in common/src/proxies and a call here)"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the proxies in common/src/proxies and docs/dbus/*.xml disagree:\n{}",
        problems.join("\n")
    );
    drop(bus);
}

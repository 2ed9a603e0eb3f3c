//! Unit-level tests of the D-Bus executor and measurer on a private
//! dbus-daemon, with small stand-in services answering on the daemons'
//! names (the real daemons are exercised by the sandbox tests the lead
//! runs). What is tested here is hearth-intentd's own side of the wire: the
//! argument types it sends (`s`, `u`), how it reads replies of each shape,
//! how D-Bus errors come back, previews, the domain context, and a whole
//! plan with its rollback and measurement going over the bus.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hearth_common::contract::decode;
use hearth_common::contract::dns::{Record, RecordType, ZoneDiff};
use hearth_common::contract::intent::{AuditRecord, Verification};
use hearth_common::contract::network::{DomainBrief, Flow, NetAction, NetChange};
use hearth_common::contract::pki::{
    CertName, CertificateChange, CertificateDiff, Issued, KeySource, Profile,
};
use hearth_common::names;
use hearth_common::types::{DomainId, Port, Protocol};
use hearth_common::HearthError;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};
use hearth_playbook::methods;
use hearth_playbook::{ArgValue, Call, TrustConfig};
use serde_json::Value;

use crate::exec::{DbusExecutor, DbusMeasurer, Executor, Measurer};
use crate::interpret::NoInterpreter;
use crate::{Caller, Gate, PolicyConfig, Settings, Status};

/// The project's private test bus (the shipped policy) and its address.
fn private_bus(dir: &Path) -> (hearth_testbed::PrivateBus, String) {
    let bus = hearth_testbed::PrivateBus::start(dir).unwrap();
    let address = bus.address.clone();
    (bus, address)
}

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, s: String) {
    log.lock().unwrap_or_else(|p| p.into_inner()).push(s);
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()))
}

fn tag(dry_run: bool) -> &'static str {
    if dry_run {
        "dry:"
    } else {
        ""
    }
}

/// A contract value as the daemons write it.
fn encode<T: serde::Serialize>(v: &T) -> String {
    hearth_common::contract::encode(v).unwrap()
}

/// hearth-dnsd's answer to adding (or removing) the A record `name` →
/// `address` in `home.arpa`.
fn zone_diff(name: &str, address: &str, dry_run: bool, add: bool) -> ZoneDiff {
    let rec = Record {
        name: name.parse().unwrap(),
        rtype: RecordType::A,
        value: address.into(),
        ttl: 300,
    };
    let (added, removed) = if add {
        (vec![rec], vec![])
    } else {
        (vec![], vec![rec])
    };
    ZoneDiff {
        zone: "home.arpa".parse().unwrap(),
        serial_before: 1,
        serial_after: if dry_run { 1 } else { 2 },
        added,
        removed,
        dry_run,
    }
}

/// hearth-netd's answer to a change: `created` or `removed` the domain
/// `name`, or `opened` a flow.
fn net_change(
    action: NetAction,
    dry_run: bool,
    domain: Option<&str>,
    opened: Vec<Flow>,
) -> NetChange {
    let brief = domain.map(|name| DomainBrief {
        name: DomainId::parse(name).unwrap(),
        bridge: format!("hb-{name}"),
        subnet: "10.9.0.0/24".parse().unwrap(),
        gateway: "10.9.0.1".parse().unwrap(),
        vlan: None,
    });
    let mut c = NetChange {
        action,
        dry_run,
        opened,
        closed: vec![],
        domains_created: vec![],
        domains_removed: vec![],
        dhcp_scopes_added: vec![],
        dhcp_scopes_removed: vec![],
    };
    match action {
        NetAction::Create => c.domains_created.extend(brief),
        _ => c.domains_removed.extend(brief),
    }
    c
}

/// hearth-pkid's view of the certificate `serial` for `name`.
fn cert(serial: &str, name: &str) -> CertificateChange {
    CertificateChange {
        serial: serial.into(),
        names: vec![CertName::Dns(name.parse().unwrap())],
        profile: Profile::Server,
        not_before: "2026-01-01T00:00:00Z".into(),
        not_after: "2026-04-01T00:00:00Z".into(),
    }
}

/// hearth-dnsd's documented signatures (docs/dbus/dns.md), answering the
/// contract's [`ZoneDiff`].
struct Dns(Log);

#[zbus::interface(name = "org.hearth.Dns1")]
impl Dns {
    async fn add_record(
        &self,
        name: String,
        address: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        push(
            &self.0,
            format!("{}dns.AddRecord({name},{address})", tag(dry_run)),
        );
        if name.starts_with("taken.") {
            return Err(HearthError::Conflict(format!("{name} is an alias")));
        }
        Ok(encode(&zone_diff(&name, &address, dry_run, true)))
    }
    async fn remove_record(
        &self,
        name: String,
        address: String,
        dry_run: bool,
    ) -> Result<String, HearthError> {
        push(
            &self.0,
            format!("{}dns.RemoveRecord({name},{address})", tag(dry_run)),
        );
        Ok(encode(&zone_diff(&name, &address, dry_run, false)))
    }
}

/// hearth-netd's documented signatures (docs/dbus/network.md), answering
/// the contract's types: ListDomains a list of [`Domain`]s, which the domain
/// context decodes, the changes a [`NetChange`].
struct Net(Log);

#[zbus::interface(name = "org.hearth.Network1")]
impl Net {
    async fn list_domains(&self) -> String {
        use hearth_common::contract::network::Domain;
        let dom = |name: &str, subnet: &str, gateway: &str| Domain {
            name: hearth_common::types::DomainId::parse(name).unwrap(),
            bridge: format!("hb-{name}"),
            subnet: subnet.parse().unwrap(),
            gateway: gateway.parse().unwrap(),
            ula: None,
            vlan: None,
            services: vec!["dns".into(), "dhcp".into()],
            admin: false,
        };
        hearth_common::contract::encode(&vec![
            dom("lan", "192.168.1.0/24", "192.168.1.1"),
            dom("iot", "10.9.1.0/24", "10.9.1.1"),
        ])
        .unwrap()
    }
    async fn create_domain(&self, name: String, subnet: String, dry_run: bool) -> String {
        push(
            &self.0,
            format!("{}net.CreateDomain({name},{subnet})", tag(dry_run)),
        );
        encode(&net_change(NetAction::Create, dry_run, Some(&name), vec![]))
    }
    async fn delete_domain(&self, name: String, dry_run: bool) -> String {
        push(&self.0, format!("{}net.DeleteDomain({name})", tag(dry_run)));
        encode(&net_change(NetAction::Delete, dry_run, Some(&name), vec![]))
    }
    async fn allow(
        &self,
        from: String,
        to: String,
        port: u32,
        protocol: String,
        dry_run: bool,
    ) -> String {
        push(
            &self.0,
            format!("{}net.Allow({from},{to},{port},{protocol})", tag(dry_run)),
        );
        let flow = Flow {
            from: DomainId::parse(&from).unwrap(),
            to: DomainId::parse(&to).unwrap(),
            protocol: (!protocol.is_empty())
                .then(|| Protocol::parse_field("protocol", &protocol).unwrap()),
            port: (port != 0).then(|| Port::from_number("port", port).unwrap()),
        };
        encode(&net_change(NetAction::Allow, dry_run, None, vec![flow]))
    }
}

/// hearth-pkid's documented signatures (docs/dbus/pki.md), answering the
/// contract's [`Issued`] and [`CertificateDiff`].
struct Pki(Log);

#[zbus::interface(name = "org.hearth.Pki1")]
impl Pki {
    async fn issue_certificate(&self, name: String, days: u32) -> String {
        push(&self.0, format!("pki.IssueCertificate({name},{days})"));
        let c = cert("0a1b", &name);
        encode(&Issued {
            serial: c.serial,
            names: c.names,
            profile: c.profile,
            key_type: "ec-p256".into(),
            key_source: KeySource::Export,
            not_before: c.not_before,
            not_after: c.not_after,
            certificate: "-----BEGIN CERTIFICATE-----".into(),
            chain_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_path: None,
            chain_path: None,
        })
    }
    async fn revoke_certificate(&self, serial_or_name: String) -> String {
        push(&self.0, format!("pki.RevokeCertificate({serial_or_name})"));
        encode(&CertificateDiff {
            issued: vec![],
            revoked: vec![cert(&serial_or_name, "nas.home.arpa")],
        })
    }
}

/// hearth-attestd's Measure (docs/dbus/attestation.md).
struct Attest(Log);

#[zbus::interface(name = "org.hearth.Attestation1")]
impl Attest {
    async fn measure(&self, kind: String, name: String, sha256: String) -> u64 {
        push(&self.0, format!("attest.Measure({kind},{name},{sha256})"));
        7
    }
}

struct World {
    _bus: hearth_testbed::PrivateBus,
    _services: zbus::Connection,
    client: zbus::Connection,
    log: Log,
}

async fn world(dir: &Path) -> World {
    world_with(dir, true).await
}

/// The stand-ins; without `attestd`, nobody owns org.hearth.Attestation1
/// (hearth-attestd stopped).
async fn world_with(dir: &Path, attestd: bool) -> World {
    let (bus, addr) = private_bus(dir);
    let log: Log = Arc::default();
    let mut b = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .name(names::DNS.bus_name)
        .unwrap()
        .name(names::NETWORK.bus_name)
        .unwrap()
        .name(names::PKI.bus_name)
        .unwrap()
        .serve_at(names::DNS.path, Dns(log.clone()))
        .unwrap()
        .serve_at(names::NETWORK.path, Net(log.clone()))
        .unwrap()
        .serve_at(names::PKI.path, Pki(log.clone()))
        .unwrap();
    if attestd {
        b = b
            .name(names::ATTESTATION.bus_name)
            .unwrap()
            .serve_at(names::ATTESTATION.path, Attest(log.clone()))
            .unwrap();
    }
    let services = b.build().await.unwrap();
    // `build` returns once every name is owned: the stand-ins are ready.
    let client = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    World {
        _bus: bus,
        _services: services,
        client,
        log,
    }
}

fn call(key: &str, args: Vec<ArgValue>) -> Call {
    Call {
        method: methods::lookup(key).unwrap(),
        args,
    }
}

fn s(v: &str) -> ArgValue {
    ArgValue::Str(v.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_out_typed_and_answers_come_back_as_the_contract_types() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let x = DbusExecutor::new(w.client.clone());

    // s s u s.
    let r = x
        .call(&call(
            "net.Allow",
            vec![s("iot"), s("lan"), ArgValue::Num(443), s("tcp")],
        ))
        .await
        .unwrap();
    let c: NetChange = decode("net.Allow", &r).unwrap();
    assert_eq!(c.opened[0].to_string(), "iot → lan tcp/443");
    let r = x
        .call(&call("net.DeleteDomain", vec![s("iot")]))
        .await
        .unwrap();
    let c: NetChange = decode("net.DeleteDomain", &r).unwrap();
    assert_eq!(c.domains_removed[0].name.as_str(), "iot");
    // s u.
    let r = x
        .call(&call(
            "pki.IssueCertificate",
            vec![s("nas.home.arpa"), ArgValue::Num(90)],
        ))
        .await
        .unwrap();
    assert_eq!(
        decode::<Issued>("pki.IssueCertificate", &r).unwrap().serial,
        "0a1b"
    );
    let r = x
        .call(&call("pki.RevokeCertificate", vec![s("0a1b")]))
        .await
        .unwrap();
    let d: CertificateDiff = decode("pki.RevokeCertificate", &r).unwrap();
    assert_eq!(d.revoked[0].serial, "0a1b");
    assert_eq!(
        taken(&w.log),
        vec![
            "net.Allow(iot,lan,443,tcp)",
            "net.DeleteDomain(iot)",
            "pki.IssueCertificate(nas.home.arpa,90)",
            "pki.RevokeCertificate(0a1b)",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_errors_keep_their_names_and_absent_daemons_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let x = DbusExecutor::new(w.client.clone());
    let e = x
        .call(&call(
            "dns.AddRecord",
            vec![s("taken.home.arpa"), s("10.0.0.1")],
        ))
        .await
        .unwrap_err();
    assert_eq!(e.name, "org.hearth.Error.Conflict");
    assert!(e.message.contains("taken.home.arpa"), "{e}");
    // attest.Status is not served by the stand-in: an unknown method.
    let e = x.call(&call("attest.Status", vec![])).await.unwrap_err();
    assert!(e.name.starts_with("org.freedesktop.DBus.Error"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_send_only_the_named_arguments_and_context_reads_the_domains() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let x = DbusExecutor::new(w.client.clone());
    let p = x
        .preview(&call(
            "dns.AddRecord",
            vec![s("nas.home.arpa"), s("10.0.0.1")],
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(decode::<ZoneDiff>("dns.AddRecord", &p).unwrap().dry_run);
    assert_eq!(
        taken(&w.log),
        vec!["dry:dns.AddRecord(nas.home.arpa,10.0.0.1)"]
    );
    // A preview that the daemon refuses shows the reason.
    let p = x
        .preview(&call(
            "dns.AddRecord",
            vec![s("taken.home.arpa"), s("10.0.0.1")],
        ))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(p.name, "org.hearth.Error.Conflict", "{p}");
    // Methods without a dry run have no preview; nothing is called.
    taken(&w.log);
    assert!(x
        .preview(&call(
            "pki.IssueCertificate",
            vec![s("a.home.arpa"), ArgValue::Num(1)]
        ))
        .await
        .is_none());
    assert!(taken(&w.log).is_empty());
    let ctx = x.context().await.unwrap();
    let names: Vec<&str> = ctx.domains.iter().map(|d| d.as_str()).collect();
    assert_eq!(names, vec!["lan", "iot"]);
    let m = DbusMeasurer::new(w.client.clone());
    m.measure("action", "net.show@3", &"ab".repeat(32))
        .await
        .unwrap();
    assert_eq!(
        taken(&w.log),
        vec![format!(
            "attest.Measure(action,net.show@3,{})",
            "ab".repeat(32)
        )]
    );
}

const ROLLBACK: &str = r#"
id = "test.rollback"
version = 1
description = "Three changes"
risk = "change"
[[params]]
name = "name"
type = "dns-name"
[[params]]
name = "domain"
type = "new-domain"
[[steps]]
call = "pki.IssueCertificate"
args = { name = "{name}", days = 30 }
undo = { call = "pki.RevokeCertificate", args = { serial_or_name = "{result.serial}" } }
[[steps]]
call = "net.CreateDomain"
args = { name = "{domain}", subnet = "" }
undo = { call = "net.DeleteDomain", args = { name = "{domain}" } }
[[steps]]
call = "dns.AddRecord"
args = { name = "{name}", address = "10.0.0.9" }
undo = { call = "dns.RemoveRecord", args = { name = "{name}", address = "10.0.0.9" } }
"#;

fn signed_catalog(dir: &Path) -> Settings {
    let root = Authority::new_root("bus test root", 1).unwrap();
    let signer = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .unwrap();
    let key = KeyFileSigner::new(
        signer.key_pem.as_bytes(),
        cert_pem(&signer.cert_der).as_bytes(),
    )
    .unwrap();
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    let env = dsse::sign(ROLLBACK.as_bytes(), PAYLOAD_TYPE, &key).unwrap();
    std::fs::write(
        cat.join("test.rollback.dsse.json"),
        serde_json::to_vec(&env).unwrap(),
    )
    .unwrap();
    let root_pem = dir.join("root.pem");
    std::fs::write(&root_pem, cert_pem(&root.cert_der)).unwrap();
    Settings {
        catalog_dir: cat,
        trust: TrustConfig {
            vendor_roots: vec![root_pem],
            ..Default::default()
        },
        policy: PolicyConfig::default(),
        audit_log: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_runs_over_the_bus_and_a_failure_undoes_in_reverse_order() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(dir.path()).await;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let gate = Gate::open(
        signed_catalog(dir.path()),
        &state,
        DbusExecutor::new(w.client.clone()),
        Arc::new(NoInterpreter),
        DbusMeasurer::new(w.client.clone()),
    )
    .unwrap();
    // Only admins may change (hearth_common::rights).
    let user = Caller {
        uid: 1000,
        is_admin: true,
    };
    let params = |name: &str, domain: &str| -> BTreeMap<String, Value> {
        [("name", name), ("domain", domain)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.into())))
            .collect()
    };

    // An existing domain is not a new one: refused before anything runs.
    let e = gate
        .ask_structured("test.rollback", &params("a.home.arpa", "lan"), user)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("lan"), "{e}");
    assert!(taken(&w.log).is_empty());

    // It runs, with the daemon's preview in the plan.
    let out = gate
        .ask_structured("test.rollback", &params("free.home.arpa", "cams"), user)
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    assert_eq!(out.plan.preview.len(), 2, "{:?}", out.plan.preview);
    assert_eq!(
        taken(&w.log),
        vec![
            "dry:net.CreateDomain(cams,)",
            "dry:dns.AddRecord(free.home.arpa,10.0.0.9)",
        ]
    );
    let done = gate.confirm(&out.plan.plan_id, user).await.unwrap();
    assert_eq!(done.status, Status::Executed, "{:?}", done.error);
    let rec = done.audit.clone().unwrap();
    assert_eq!(
        taken(&w.log),
        vec![
            intent_measure(&gate, rec.seq - 1),
            "pki.IssueCertificate(free.home.arpa,30)".to_string(),
            "net.CreateDomain(cams,)".into(),
            "dns.AddRecord(free.home.arpa,10.0.0.9)".into(),
            format!(
                "attest.Measure(action,test.rollback@{},{})",
                rec.seq, rec.hash
            ),
        ]
    );
    assert_eq!(done.measured, Some(true));

    // The third step fails: the second and first are undone, in that order,
    // the first with the serial its call returned; the failure is measured.
    let out = gate
        .ask_structured("test.rollback", &params("taken.home.arpa", "cams"), user)
        .await
        .unwrap();
    taken(&w.log);
    let done = gate.confirm(&out.plan.plan_id, user).await.unwrap();
    assert_eq!(done.status, Status::Failed);
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .contains("org.hearth.Error.Conflict"),
        "{:?}",
        done.error
    );
    let rec = done.audit.clone().unwrap();
    assert_eq!(
        taken(&w.log),
        vec![
            intent_measure(&gate, rec.seq - 1),
            "pki.IssueCertificate(taken.home.arpa,30)".to_string(),
            "net.CreateDomain(cams,)".into(),
            "dns.AddRecord(taken.home.arpa,10.0.0.9)".into(),
            "net.DeleteDomain(cams)".into(),
            "pki.RevokeCertificate(0a1b)".into(),
            format!(
                "attest.Measure(action,test.rollback@{},{})",
                rec.seq, rec.hash
            ),
        ]
    );
    assert_eq!(done.rollback.len(), 2);
    assert!(done.rollback.iter().all(|r| r.ok));
    let v: Verification = decode("AuditVerify", &encode(&gate.audit_verify().unwrap())).unwrap();
    assert!(v.ok, "{v:?}");
}

/// The Measure call that anchored the intent record `seq` (written, and
/// measured, before the first step).
fn intent_measure<E: Executor, M: Measurer>(gate: &Gate<E, NoInterpreter, M>, seq: u64) -> String {
    let recs: Vec<AuditRecord> =
        decode("AuditList", &encode(&gate.audit_list(0).unwrap())).unwrap();
    let r = recs
        .iter()
        .find(|r| r.seq == seq)
        .unwrap_or_else(|| panic!("no record {seq}"));
    assert_eq!(r.event.kind, "intent", "{r:?}");
    format!("attest.Measure(action,test.rollback@{seq},{})", r.hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_attestd_stopped_a_confirmed_change_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let w = world_with(dir.path(), false).await;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let gate = Gate::open(
        signed_catalog(dir.path()),
        &state,
        DbusExecutor::new(w.client.clone()),
        Arc::new(NoInterpreter),
        DbusMeasurer::new(w.client.clone()),
    )
    .unwrap();
    // Only admins may change (hearth_common::rights).
    let user = Caller {
        uid: 1000,
        is_admin: true,
    };
    let params: BTreeMap<String, Value> = [("name", "free.home.arpa"), ("domain", "cams")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.into())))
        .collect();
    let out = gate
        .ask_structured("test.rollback", &params, user)
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    taken(&w.log); // the dry-run previews
    let e = gate
        .confirm(&out.plan.plan_id, user)
        .await
        .expect_err("refused: it cannot be measured");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot be measured") && msg.contains("nothing was changed"),
        "{msg}"
    );
    // No daemon was called.
    assert!(taken(&w.log).is_empty());
    // The audit says why, and the chain holds.
    let recs = gate.audit_list(0).unwrap();
    let kinds: Vec<&str> = recs
        .iter()
        .filter_map(|r| r["event"]["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["intent", "aborted"]);
    let why = recs[1]["event"]["reason"].as_str().unwrap();
    assert!(
        why.contains("hearth-attestd") && why.contains("org.freedesktop.DBus.Error"),
        "{why}"
    );
    assert!(gate.audit_verify().unwrap().ok);
    // The plan is gone: it is not retried behind the requester's back.
    assert!(!gate.is_pending(&out.plan.plan_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_attestd_is_a_measure_error_named_by_the_bus() {
    let dir = tempfile::tempdir().unwrap();
    let (_bus, addr) = private_bus(dir.path());
    let conn = zbus::connection::Builder::address(addr.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let m = DbusMeasurer::new(conn);
    let e = m
        .measure("action", "x@1", &"00".repeat(32))
        .await
        .unwrap_err();
    assert!(
        e.name.contains("ServiceUnknown") || e.name.contains("NameHasNoOwner"),
        "{e}"
    );
}

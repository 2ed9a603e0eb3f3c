//! The gate's audit log anchored in the TPM: hearth-intentd's gate (in
//! process, calling over a private D-Bus bus) runs two actions, each
//! measured by the real hearth-attestd binary into a real swtpm. The last
//! audit record is then cut, head file and all, so that the hash chain of
//! what is left still holds; the check against the attested event log
//! reports the missing record.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::free_port;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hearth_attestation::swtpm::{LocalCa, Swtpm};
use hearth_common::contract::attestation::{self, MeasurementKind};
use hearth_common::contract::dns::{Record, RecordType, ZoneDiff};
use hearth_common::contract::intent::{self as intent_c, Catalog};
use hearth_common::names;
use hearth_common::proxies::attestation::AttestationProxy;
use hearth_common::proxies::intent::IntentProxy;
use hearth_common::types::DnsName;
use hearth_common::HearthError;
use hearth_intentd::dbus::IntentInterface;
use hearth_intentd::exec::{DbusExecutor, DbusMeasurer};
use hearth_intentd::interpret::{Interpreter, NoInterpreter};
use hearth_intentd::{Caller, Gate, PolicyConfig, Settings, Status};
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};
use hearth_playbook::TrustConfig;
use hearth_runtime::{Access, AccessConfig};
use serde_json::{json, Value};

/// hearth-dnsd's AddRecord (docs/dbus/dns.md), accepting every record:
/// its answer is the contract's `ZoneDiff`.
struct Dns;

#[zbus::interface(name = "org.hearth.Dns1")]
impl Dns {
    async fn add_record(&self, name: String, address: String, dry_run: bool) -> String {
        let added = Record {
            name: DnsName::parse(&name).expect("the gate sends a DNS name"),
            rtype: RecordType::A,
            value: address,
            ttl: 300,
        };
        let diff = ZoneDiff {
            zone: DnsName::parse("home.arpa").unwrap(),
            serial_before: 1,
            serial_after: if dry_run { 1 } else { 2 },
            added: vec![added],
            removed: vec![],
            dry_run,
        };
        hearth_common::contract::encode(&diff).unwrap()
    }
}

/// The shipped dns.add_record, signed by a test root; and the signer.
fn signed_catalog(dir: &Path) -> (Settings, KeyFileSigner) {
    let root = Authority::new_root("anchor test root", 1).unwrap();
    let s = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .unwrap();
    let key = KeyFileSigner::new(s.key_pem.as_bytes(), cert_pem(&s.cert_der).as_bytes()).unwrap();
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    let toml = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../catalog/dns.add_record.toml"
    ))
    .unwrap();
    let env = dsse::sign(&toml, PAYLOAD_TYPE, &key).unwrap();
    std::fs::write(
        cat.join("dns.add_record.dsse.json"),
        serde_json::to_vec(&env).unwrap(),
    )
    .unwrap();
    let root_pem = dir.join("vendor-root.pem");
    std::fs::write(&root_pem, cert_pem(&root.cert_der)).unwrap();
    let settings = Settings {
        catalog_dir: cat,
        trust: TrustConfig {
            vendor_roots: vec![root_pem],
            ..Default::default()
        },
        policy: PolicyConfig::default(),
        audit_log: None,
    };
    (settings, key)
}

/// A swtpm, the private bus and the real hearth-attestd on it (this uid may
/// measure).
struct Attestd {
    _swtpm: Swtpm,
    _bus: hearth_testbed::PrivateBus,
    daemon: hearth_testbed::Started,
    address: String,
}

fn start_attestd(dir: &Path) -> Attestd {
    let ca = LocalCa::new().unwrap();
    ca.manufacture(&dir.join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.join("tpm")).unwrap();
    let bus = hearth_testbed::PrivateBus::start(dir).unwrap();
    let address = bus.address.clone();
    let d = dir.display();
    let uid = nix::unistd::getuid().as_raw();
    let config_path = dir.join("hearth-attestd.toml");
    std::fs::write(
        &config_path,
        format!(
            "tcti = \"{}\"\nlisten = \"127.0.0.1:{}\"\ntls_cert = \"{d}/tls/chain.pem\"\n\
             tls_key = \"{d}/tls/key.pem\"\nroot_ca = \"{d}/tls/root.pem\"\n\
             tls_generate = [\"127.0.0.1\"]\nmeasurement_users = [\"{uid}\"]\n",
            swtpm.tcti(),
            free_port()
        ),
    )
    .unwrap();
    let daemon = common::start(&config_path, &dir.join("state/attestd"), &address, &[], dir);
    Attestd {
        _swtpm: swtpm,
        _bus: bus,
        daemon,
        address,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_audit_tail_is_found_against_the_attested_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let attestd = start_attestd(dir.path());
    let address = attestd.address.clone();
    let _dnsd = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .name(names::DNS.bus_name)
        .unwrap()
        .serve_at(names::DNS.path, Dns)
        .unwrap()
        .build()
        .await
        .unwrap();
    let conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();

    let state = dir.path().join("state/intentd");
    std::fs::create_dir_all(&state).unwrap();
    let gate = Gate::open(
        signed_catalog(dir.path()).0,
        &state,
        DbusExecutor::new(conn.clone()),
        Arc::new(NoInterpreter),
        DbusMeasurer::new(conn.clone()),
    )
    .unwrap();
    // An admin: the gate runs only what the requester could call directly,
    // and hearth-dnsd's changes need an admin.
    let user = Caller {
        uid: 1000,
        is_admin: true,
    };
    for name in ["a.home.arpa", "b.home.arpa"] {
        let params: BTreeMap<String, Value> = [
            ("name".to_string(), json!(name)),
            ("address".to_string(), json!("192.168.1.20")),
        ]
        .into_iter()
        .collect();
        let out = gate
            .ask_structured("dns.add_record", &params, user)
            .await
            .unwrap();
        let done = gate.confirm(&out.plan.plan_id, user).await.unwrap();
        assert_eq!(done.status, Status::Executed, "{:?}", done.error);
        assert_eq!(done.measured, Some(true));
    }

    let attest = AttestationProxy::new(&conn).await.unwrap();
    let status = attestation::status(&attest).await.unwrap();
    assert!(status.consistent, "{status:?}");
    // The log as the typed call reads it, handed to the gate as JSON.
    let events = || async {
        attestation::log(&attest)
            .await
            .unwrap()
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect::<Vec<Value>>()
    };
    // Intact: two intents and two outcomes, each in the attested log.
    let v = gate.audit_verify_against(&events().await).unwrap();
    assert!(v.ok, "{:?}", v.problems);
    assert_eq!(v.records, 4);

    // Cut the last record (the second outcome) and the head file with it.
    let log = state.join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, lines[..3].join("\n") + "\n").unwrap();
    std::fs::remove_file(state.join("audit.jsonl.head")).unwrap();
    // The chain of what is left holds: on its own it cannot tell.
    let chain = gate.audit_verify().unwrap();
    assert!(chain.ok, "{:?}", chain.problems);
    // Against the TPM's log the missing record is found, by number.
    let v = gate.audit_verify_against(&events().await).unwrap();
    assert!(!v.ok);
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("dns.add_record@3") && p.contains("seq 3 is missing")),
        "{:?}",
        v.problems
    );
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    drop(attestd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installed_playbook_is_measured_before_it_can_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut attestd = start_attestd(dir.path());
    let address = attestd.address.clone();
    let state = dir.path().join("state/intentd");
    std::fs::create_dir_all(&state).unwrap();
    let (settings, signer) = signed_catalog(dir.path());
    let catalog_dir = settings.catalog_dir.clone();
    // hearth-intentd's interface, served in process on the private bus.
    let daemon_conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let interpreter: Arc<dyn Interpreter> = Arc::new(NoInterpreter);
    let gate = Gate::open(
        settings,
        &state,
        DbusExecutor::new(daemon_conn.clone()),
        interpreter,
        DbusMeasurer::new(daemon_conn.clone()),
    )
    .unwrap();
    let access = Access::from_config(&AccessConfig::default()).unwrap();
    daemon_conn
        .object_server()
        .at(
            names::INTENT.path,
            IntentInterface::new(Arc::new(gate), access),
        )
        .await
        .unwrap();
    daemon_conn
        .request_name(names::INTENT.bus_name)
        .await
        .unwrap();

    let conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let intent = IntentProxy::new(&conn).await.unwrap();
    let attest = AttestationProxy::new(&conn).await.unwrap();
    let envelope = |id: &str| {
        let toml = std::fs::read(format!(
            "{}/../../catalog/{id}.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        serde_json::to_string(&dsse::sign(&toml, PAYLOAD_TYPE, &signer).unwrap()).unwrap()
    };
    let in_catalog = |cat: &Catalog, id: &str| cat.playbooks.iter().any(|p| p.id == id);

    // Installed while running: measured (kind playbook-catalog, under its
    // file name, the digest of the file installed) and in the catalog.
    let installed =
        intent_c::install_playbook(&intent, "net.show.dsse.json", &envelope("net.show"))
            .await
            .unwrap();
    assert_eq!(installed.id, "net.show", "{installed:?}");
    let file = std::fs::read(catalog_dir.join("net.show.dsse.json")).unwrap();
    let digest = hex::encode(openssl::sha::sha256(&file));
    let log = attestation::log(&attest).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.content.kind == MeasurementKind::PlaybookCatalog
                && e.content.name == "net.show.dsse.json"
                && e.content.sha256 == digest),
        "net.show's digest {digest} is not in the attested log: {log:#?}"
    );
    assert!(in_catalog(
        &intent_c::catalog(&intent).await.unwrap(),
        "net.show"
    ));

    // hearth-attestd stops: a playbook installed now cannot be measured,
    // so it is not usable, and the error says why.
    let _ = attestd.daemon.0.child.kill();
    let _ = attestd.daemon.0.child.wait();
    let e = intent
        .install_playbook(
            "pki.list_certificates.dsse.json",
            &envelope("pki.list_certificates"),
        )
        .await
        .expect_err("not measured: not usable");
    assert!(
        matches!(&e, HearthError::Internal(m) if m.contains("pki.list_certificates.dsse.json")
            && m.contains("not measured")),
        "{e:?}"
    );
    assert!(!in_catalog(
        &intent_c::catalog(&intent).await.unwrap(),
        "pki.list_certificates"
    ));
    let e = intent
        .ask_structured("pki.list_certificates", "{}")
        .await
        .expect_err("not in the catalog");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("not in the signed catalog")),
        "{e:?}"
    );
    // What was measured before stays usable.
    assert!(in_catalog(
        &intent_c::catalog(&intent).await.unwrap(),
        "net.show"
    ));
    drop(attestd);
}

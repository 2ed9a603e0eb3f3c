//! hearth-intentd as a process on a private bus: the signed catalog loads,
//! refusals come back as named errors with nothing run, plans wait for
//! confirmation and can be cancelled, a tampered envelope is not installed,
//! the audit chain verifies. The other daemons are absent here: a read plan
//! reaches the bus and fails cleanly (ServiceUnknown).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::path::Path;

use hearth_common::contract::intent::{self as intent_c, Ended, Status};
use hearth_common::proxies::intent::IntentProxy;
use hearth_common::HearthError;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};

mod common;

/// The project's private test bus (the shipped policy) and its address.
fn private_bus(dir: &Path) -> (hearth_testbed::PrivateBus, String) {
    let bus = hearth_testbed::PrivateBus::start(dir).expect("private bus");
    let address = bus.address.clone();
    (bus, address)
}

fn sign_catalog(dir: &Path) -> (std::path::PathBuf, KeyFileSigner) {
    let root = Authority::new_root("test vendor root", 1).expect("root");
    let s = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .expect("signer");
    let signer = KeyFileSigner::new(s.key_pem.as_bytes(), cert_pem(&s.cert_der).as_bytes())
        .expect("signer key");
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).expect("catalog dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
    for e in std::fs::read_dir(shipped).expect("playbooks") {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let bytes = std::fs::read(&p).expect("read");
        let id = p
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("id")
            .to_string();
        let env = dsse::sign(&bytes, PAYLOAD_TYPE, &signer).expect("sign");
        std::fs::write(
            cat.join(format!("{id}.dsse.json")),
            serde_json::to_vec(&env).expect("json"),
        )
        .expect("write");
    }
    let root_pem = dir.join("root.pem");
    std::fs::write(&root_pem, cert_pem(&root.cert_der)).expect("root pem");
    std::fs::write(
        dir.join("intentd.toml"),
        format!(
            "catalog_dir = \"{}\"\n[trust]\nvendor_roots = [\"{}\"]\n[policy]\npending_ttl_secs = 60\n",
            cat.display(),
            root_pem.display()
        ),
    )
    .expect("config");
    (cat, signer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_serves_the_gate_on_the_bus() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_bus, addr) = private_bus(tmp.path());
    let (_cat, signer) = sign_catalog(tmp.path());
    let _daemon = common::start_intentd(tmp.path(), &addr, &[]).await;
    let conn = zbus::connection::Builder::address(addr.as_str())
        .expect("address")
        .build()
        .await
        .expect("connect");
    let p = IntentProxy::new(&conn).await.expect("proxy");

    let cat = intent_c::catalog(&p).await.expect("catalog");
    let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog"))
        .expect("playbooks")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .count();
    assert_eq!(cat.playbooks.len(), shipped, "{cat:?}");
    assert_eq!(cat.refused.len(), 0, "{cat:?}");

    // A change waits for confirmation, then is cancelled: nothing runs.
    let o = intent_c::ask_structured(
        &p,
        "dns.add_record",
        r#"{"name": "NAS.home.arpa.", "address": "192.168.1.20"}"#,
    )
    .await
    .expect("plan");
    assert_eq!(o.status, Status::Pending, "{o:?}");
    assert_eq!(o.plan.params["name"], "nas.home.arpa", "{o:?}");
    assert_eq!(o.plan.steps[0].call, "dns.AddRecord", "{o:?}");
    let id = o.plan.plan_id.clone();
    assert_eq!(intent_c::pending(&p).await.expect("pending").len(), 1);
    match intent_c::cancel(&p, &id).await.expect("cancel") {
        Ended::Outcome(c) => assert_eq!(c.status, Status::Cancelled, "{c:?}"),
        other => panic!("a pending plan's cancel is its outcome: {other:?}"),
    }
    assert!(matches!(
        intent_c::confirm(&p, &id).await,
        Err(HearthError::NotFound(_))
    ));

    // Refusals are named errors.
    let e = p
        .ask_structured("shell.run", "{}")
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("not in the signed catalog")),
        "{e:?}"
    );
    let e = p
        .ask_structured("dns.add_record", r#"{"name": "x.home.arpa"}"#)
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("address")),
        "{e:?}"
    );
    let e = p.ask(&"x".repeat(513)).await.expect_err("refused");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("512")),
        "{e:?}"
    );
    let e = p
        .ask_structured("dns.add_record", "not json")
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("params_json")),
        "{e:?}"
    );

    // A read would run at once; with hearth-attestd absent it cannot be
    // measured, so it does not run (fail closed) and the error says why.
    let e = p
        .ask_structured("net.show", "{}")
        .await
        .expect_err("not measured: not run");
    assert!(
        matches!(&e, HearthError::Internal(m) if m.contains("cannot be measured")
            && m.contains("hearth-attestd")
            && m.contains("nothing was changed")),
        "{e:?}"
    );

    // A tampered envelope is refused and not installed.
    let good = dsse::sign(
        include_bytes!("../../../catalog/net.revoke.toml"),
        PAYLOAD_TYPE,
        &signer,
    )
    .expect("sign");
    let mut bad = good.clone();
    bad.payload = String::new();
    let e = p
        .install_playbook(
            "net.revoke.dsse.json",
            &serde_json::to_string(&bad).expect("json"),
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, HearthError::InvalidArgument(m) if m.contains("net.revoke.dsse.json")),
        "{e:?}"
    );
    let v = intent_c::verify_playbook(
        &p,
        "net.revoke.dsse.json",
        &serde_json::to_string(&good).expect("json"),
    )
    .await
    .expect("verifies");
    assert_eq!(v.id, "net.revoke");

    // Every outcome is in the audit log, and the chain holds.
    let a = intent_c::audit_verify(&p).await.expect("verify");
    assert!(a.ok, "{a:?}");
    let list = intent_c::audit_list(&p, 0).await.expect("list");
    let kinds: Vec<&str> = list.iter().map(|r| r.event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "cancelled",
            "refused",
            "refused",
            "refused",
            "intent",
            "aborted",
            "install-refused"
        ]
    );
}

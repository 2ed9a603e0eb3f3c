//! AskStructured's sizes, through hearth-intentd on a private bus: an
//! oversize `params_json` is refused before it is parsed, with an error that
//! names the bound and does not echo the input; an oversize field is refused
//! by the gate the same way; too many pending plans are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::path::Path;

use hearth_common::proxies::intent::IntentProxy;
use hearth_common::HearthError;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};

mod common;

fn setup(dir: &Path) {
    let root = Authority::new_root("test vendor root", 1).expect("root");
    let s = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .expect("signer");
    let signer = KeyFileSigner::new(s.key_pem.as_bytes(), cert_pem(&s.cert_der).as_bytes())
        .expect("signer key");
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).expect("catalog dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
    let bytes = std::fs::read(format!("{shipped}/dns.add_record.toml")).expect("read");
    let env = dsse::sign(&bytes, PAYLOAD_TYPE, &signer).expect("sign");
    std::fs::write(
        cat.join("dns.add_record.dsse.json"),
        serde_json::to_vec(&env).expect("json"),
    )
    .expect("write");
    let root_pem = dir.join("root.pem");
    std::fs::write(&root_pem, cert_pem(&root.cert_der)).expect("root pem");
    std::fs::write(
        dir.join("intentd.toml"),
        format!(
            "catalog_dir = \"{}\"\n[trust]\nvendor_roots = [\"{}\"]\n[policy]\npending_ttl_secs = 60\nmax_pending = 3\nmax_pending_per_requester = 3\n",
            cat.display(),
            root_pem.display()
        ),
    )
    .expect("config");
}

fn short(e: &HearthError) -> String {
    let s = format!("{e:?}");
    assert!(
        s.len() < 600,
        "the error echoes the input: {} bytes",
        s.len()
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_structured_intents_and_too_many_pending_plans_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bus = hearth_testbed::PrivateBus::start(tmp.path()).expect("private bus");
    setup(tmp.path());
    let _daemon = common::start_intentd(tmp.path(), &bus.address, &[]).await;
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .expect("address")
        .build()
        .await
        .expect("connect");
    let p = IntentProxy::new(&conn).await.expect("proxy");

    // params_json of 1 MiB: refused before parsing, naming the bound.
    let big = format!(
        r#"{{"name": "{}.home.arpa", "address": "192.168.1.20"}}"#,
        "a".repeat(1 << 20)
    );
    let e = p
        .ask_structured("dns.add_record", &big)
        .await
        .expect_err("oversize params_json");
    let m = short(&e);
    assert!(
        matches!(&e, HearthError::InvalidArgument(_))
            && m.contains("params_json")
            && m.contains("at most 16384"),
        "{m}"
    );
    // Not JSON and large: the error quotes only its start.
    let e = p
        .ask_structured("dns.add_record", &"z".repeat(10_000))
        .await
        .expect_err("not JSON");
    assert!(short(&e).contains("params_json"), "{e:?}");
    // A playbook id of 4 KiB: refused by the gate, naming the bound.
    let e = p
        .ask_structured(&"p".repeat(4096), "{}")
        .await
        .expect_err("oversize id");
    let m = short(&e);
    assert!(m.contains("playbook id") && m.contains("at most 64"), "{m}");
    // A value of 2 KiB.
    let v = format!(
        r#"{{"name": "{}", "address": "192.168.1.20"}}"#,
        "b".repeat(2048)
    );
    let e = p
        .ask_structured("dns.add_record", &v)
        .await
        .expect_err("oversize value");
    let m = short(&e);
    assert!(
        m.contains("name") && m.contains("2048 bytes") && m.contains("at most 512"),
        "{m}"
    );

    // Pending plans: at most 3 here (the config says so).
    for i in 0..3 {
        let o = p
            .ask_structured(
                "dns.add_record",
                &format!(r#"{{"name": "h{i}.home.arpa", "address": "192.168.1.20"}}"#),
            )
            .await
            .expect("pending plan");
        assert!(o.contains("\"pending\""), "{o}");
    }
    let e = p
        .ask_structured(
            "dns.add_record",
            r#"{"name": "h3.home.arpa", "address": "192.168.1.20"}"#,
        )
        .await
        .expect_err("too many pending plans");
    let m = short(&e);
    assert!(m.contains("pending") && m.contains("at most 3"), "{m}");
}

//! The two-person rule through the gate on a private bus: an admin asks for
//! a destructive plan as themselves (uid 1000, a member of the configured
//! admins group), then approves it as root (the same person with sudo).
//! Root is not a second person unless the policy says so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use hearth_common::contract::intent::{self as intent_c, Approval, Outcome, Status};
use hearth_common::proxies::intent::IntentProxy;
use hearth_common::HearthError;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};
use serde_json::Value;

mod common;

/// The admin who asks: uid 1000 in the group the test names as admins.
const ADMIN_UID: u32 = 1000;
const ADMINS_GROUP: &str = "users";

/// Signs the shipped catalog and writes a config with `policy` lines.
fn setup(dir: &Path, policy: &str) {
    let root = Authority::new_root("test vendor root", 1).expect("root");
    let s = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .expect("signer");
    let signer = KeyFileSigner::new(s.key_pem.as_bytes(), cert_pem(&s.cert_der).as_bytes())
        .expect("signer key");
    let cat = dir.join("catalog");
    std::fs::create_dir_all(&cat).expect("catalog dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
    for id in ["pki.revoke_certificate", "net.show"] {
        let bytes = std::fs::read(format!("{shipped}/{id}.toml")).expect("read");
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
            "catalog_dir = \"{}\"\n[trust]\nvendor_roots = [\"{}\"]\n[policy]\npending_ttl_secs = 60\ntwo_person = true\n{policy}[access]\noperators_group = \"{ADMINS_GROUP}\"\nadmins_group = \"{ADMINS_GROUP}\"\n",
            cat.display(),
            root_pem.display()
        ),
    )
    .expect("config");
}

async fn start(dir: &Path, addr: &str) -> (hearth_testbed::Started, zbus::Connection) {
    let daemon = common::start_intentd(dir, addr, &[("HEARTH_INFER_LLM", "0")]).await;
    let conn = zbus::connection::Builder::address(addr)
        .expect("address")
        .build()
        .await
        .expect("connect");
    (daemon, conn)
}

/// Calls Intent1 as the admin (uid 1000, admins group) with busctl; the
/// string it returns (busctl's `--json` envelope holds it), read as the
/// method's contract type: an [`Outcome`] for the calls made here.
fn as_admin(addr: &str, method: &str, sig: &str, args: &[&str]) -> Outcome {
    let gid = nix_gid(ADMINS_GROUP);
    let out = Command::new("setpriv")
        .arg(format!("--reuid={ADMIN_UID}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("busctl")
        .arg(format!("--address={addr}"))
        .args(["--json=short", "call", "org.hearth.Intent1"])
        .args(["/org/hearth/Intent1", "org.hearth.Intent1", method, sig])
        .args(args)
        .output()
        .expect("setpriv busctl");
    assert!(
        out.status.success(),
        "{method} as uid {ADMIN_UID}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).expect("busctl JSON");
    let text = reply["data"][0].as_str().expect("string reply");
    hearth_common::contract::decode(&format!("org.hearth.Intent1.{method}"), text)
        .unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn nix_gid(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .expect("getent");
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or_else(|| panic!("group {group} must exist"))
}

/// The admin asks for a destructive plan and confirms it; its id.
fn admin_asks(addr: &str) -> String {
    let o = as_admin(
        addr,
        "AskStructured",
        "ss",
        &["pki.revoke_certificate", r#"{"name": "nas.home.arpa"}"#],
    );
    assert_eq!(o.status, Status::Pending, "{o:?}");
    assert_eq!(o.plan.approval, Approval::TwoPerson, "{o:?}");
    let id = o.plan.plan_id.clone();
    let o = as_admin(addr, "Confirm", "s", &[&id]);
    assert_eq!(o.status, Status::Pending, "{o:?}");
    assert_eq!(
        o.missing,
        vec!["approval by a second hearth-admins member"],
        "{o:?}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_not_a_second_person_unless_the_policy_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Let the unprivileged client reach the bus socket in the test's directory.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = hearth_testbed::PrivateBus::start(tmp.path()).expect("private bus");
    let addr = bus.address.clone();

    // Default policy: the admin's own sudo does not make a second person.
    let dir = tmp.path().join("default");
    std::fs::create_dir_all(&dir).unwrap();
    setup(&dir, "");
    let (daemon, conn) = start(&dir, &addr).await;
    let p = IntentProxy::new(&conn).await.expect("proxy");
    let id = admin_asks(&addr);
    let e = p.approve(&id).await.expect_err("root must not approve");
    assert!(
        matches!(&e, HearthError::NotAuthorized(m)
            if m.contains("root") && m.contains("root_is_second_person")),
        "{e:?}"
    );
    // Nothing ran: the plan still waits for a second admin.
    let pending = intent_c::pending(&p).await.expect("pending");
    let ids: Vec<&str> = pending.iter().map(|p| p.plan_id.as_str()).collect();
    assert_eq!(ids, vec![id.as_str()]);
    // The audit log records no execution.
    let audit = std::fs::read_to_string(dir.join("state/audit.jsonl")).unwrap_or_default();
    assert!(
        !audit.contains("\"executed\"") && !audit.contains("\"failed\""),
        "{audit}"
    );
    drop(conn);
    drop(daemon);

    // The policy says root counts: root's approval completes the plan (it
    // is measured by a stand-in hearth-attestd, then runs, and fails cleanly
    // with hearth-pkid absent).
    let _attestd = zbus::connection::Builder::address(addr.as_str())
        .expect("address")
        .name("org.hearth.Attestation1")
        .expect("name")
        .serve_at("/org/hearth/Attestation1", Attest)
        .expect("serve")
        .build()
        .await
        .expect("stand-in hearth-attestd");
    let dir = tmp.path().join("root-counts");
    std::fs::create_dir_all(&dir).unwrap();
    setup(&dir, "root_is_second_person = true\n");
    let (_daemon, conn) = start(&dir, &addr).await;
    let p = IntentProxy::new(&conn).await.expect("proxy");
    let id = admin_asks(&addr);
    let o = intent_c::approve(&p, &id).await.expect("approved");
    assert_ne!(o.status, Status::Pending, "{o:?}");
    assert!(o.missing.is_empty(), "{o:?}");
}

/// hearth-attestd's Measure, accepting every measurement.
struct Attest;

#[zbus::interface(name = "org.hearth.Attestation1")]
impl Attest {
    async fn measure(&self, _kind: String, _name: String, _sha256: String) -> u64 {
        0
    }
}

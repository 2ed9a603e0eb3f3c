//! Unit tests of the gate's decisions, ordering and rollback, with a
//! recording executor (the daemons are exercised by the integration tests in
//! the sandbox). Signing uses real keys and the shipped playbooks.

use super::*;
use crate::exec::{ExecError, Executor, Measurer};
use crate::interpret::{Interpretation, Interpreter, ModelDigest};
use crate::policy::Approval;
use hearth_common::spec::{Context, PlaybookSpec};
use hearth_common::types::DomainId;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};
use hearth_playbook::{ArgValue, Call};

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    fail_on: Option<&'static str>,
    /// A method whose dry run the daemon refuses.
    preview_fails: Option<&'static str>,
    /// With `preview_fails`: the daemon is not on the bus (no answer)
    /// instead of refusing.
    preview_unanswered: bool,
    results: BTreeMap<&'static str, &'static str>,
    /// Dry-run answers, by method (none: the daemon gives no preview).
    previews: BTreeMap<&'static str, &'static str>,
}

impl Recorder {
    fn log(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }
}

fn show(call: &Call) -> String {
    let args: Vec<String> = call
        .args
        .iter()
        .map(|a| match a {
            ArgValue::Str(s) => s.clone(),
            ArgValue::Num(n) => n.to_string(),
        })
        .collect();
    format!("{}({})", call.method.key, args.join(","))
}

impl Executor for Arc<Recorder> {
    async fn call(&self, call: &Call) -> Result<String, ExecError> {
        lock(&self.calls).push(show(call));
        if self.fail_on == Some(call.method.key) {
            return Err(ExecError {
                name: "org.hearth.Error.Conflict".into(),
                message: "injected failure".into(),
            });
        }
        Ok(self
            .results
            .get(call.method.key)
            .copied()
            .unwrap_or("{}")
            .to_string())
    }
    async fn preview(&self, call: &Call) -> Option<Result<String, ExecError>> {
        if self.preview_fails == Some(call.method.key) {
            lock(&self.calls).push(format!("preview {}", show(call)));
            return Some(Err(if self.preview_unanswered {
                ExecError {
                    name: "org.freedesktop.DBus.Error.ServiceUnknown".into(),
                    message: "injected: not on the bus".into(),
                }
            } else {
                ExecError {
                    name: "org.hearth.Error.Conflict".into(),
                    message: "injected refusal".into(),
                }
            }));
        }
        self.previews
            .get(call.method.key)
            .map(|p| Ok(p.to_string()))
    }
    async fn context(&self) -> Result<Context, ExecError> {
        Ok(Context {
            domains: ["lan", "iot", "guest"]
                .iter()
                .map(|d| DomainId::parse(d).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            ..Context::default()
        })
    }
}

/// Records measurements: actions in `.0` (name, sha256), the others
/// (catalog files, the policy) in `.2` ("kind name", sha256); with `.1`
/// set, every Measure fails (hearth-attestd stopped).
#[derive(Default)]
struct Tpm(
    Mutex<Vec<(String, String)>>,
    std::sync::atomic::AtomicBool,
    Mutex<Vec<(String, String)>>,
);

impl Measurer for Arc<Tpm> {
    async fn measure(&self, kind: &str, name: &str, sha256: &str) -> Result<(), ExecError> {
        if self.1.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ExecError {
                name: "org.freedesktop.DBus.Error.ServiceUnknown".into(),
                message: "The name org.hearth.Attestation1 was not provided".into(),
            });
        }
        if kind == "action" {
            lock(&self.0).push((name.into(), sha256.into()));
        } else {
            lock(&self.2).push((format!("{kind} {name}"), sha256.into()));
        }
        Ok(())
    }
}

/// The shipped language file (catalog/language/en.toml).
const LANGUAGE: &str = include_str!("../../../catalog/language/en.toml");

/// Answers from a fixed table of texts.
struct Table(Vec<(&'static str, Interpretation)>);

impl Interpreter for Table {
    fn set_catalog(&self, specs: &[PlaybookSpec]) {
        assert!(!specs.is_empty());
    }
    fn interpret(&self, text: &str, _ctx: &Context) -> Interpretation {
        self.0
            .iter()
            .find(|(t, _)| *t == text)
            .map(|(_, i)| i.clone())
            .unwrap_or(Interpretation::Refusal {
                reason: "outside the catalog".into(),
                candidates: vec![],
            })
    }
    fn model_digests(&self) -> Vec<ModelDigest> {
        vec![ModelDigest {
            name: "test.gguf".into(),
            sha256: "ab".repeat(32),
        }]
    }
    /// "Trained" with the shipped language file: compared as the real
    /// interpreter compares it with meta.json's copy.
    fn check_language(&self, text: &str) -> Result<(), String> {
        hearth_inference::lexicon::Lexicon::parse(LANGUAGE)
            .and_then(|l| l.check_same(text))
            .map_err(|e| format!("{e:#}"))
    }
}

const USER: Caller = Caller {
    uid: 1000,
    is_admin: false,
};
/// The same person as an admin: the daemons let only admins change, so the
/// tests of approvals, measurement and audit of changes ask as one.
const REQUESTER: Caller = Caller {
    uid: 1000,
    is_admin: true,
};
const OTHER: Caller = Caller {
    uid: 1002,
    is_admin: false,
};
const ADMIN: Caller = Caller {
    uid: 0,
    is_admin: true,
};
const ADMIN2: Caller = Caller {
    uid: 1001,
    is_admin: true,
};

/// A playbook of three changes, to test rollback order and results.
const MULTI: &str = r#"
id = "test.multi"
version = 1
description = "Three changes in a row"
risk = "destructive"
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
call = "dns.Remove"
args = { name = "{name}" }
irreversible = true
"#;

struct T {
    _dir: tempfile::TempDir,
    gate: Gate<Arc<Recorder>, Table, Arc<Tpm>>,
    exec: Arc<Recorder>,
    tpm: Arc<Tpm>,
    /// The catalog's signer.
    signer: KeyFileSigner,
}

fn setup(policy: PolicyConfig, exec: Recorder) -> T {
    setup_with_crl(policy, exec, false)
}

/// The CRL file [`setup_with_crl`] configures as the appliance CRL.
fn appliance_crl(t: &T) -> std::path::PathBuf {
    t._dir.path().join("appliance-crl.pem")
}

/// As [`setup`]; with `crl`, `<dir>/appliance-crl.pem` is configured as the
/// appliance CRL (absent at first).
fn setup_with_crl(policy: PolicyConfig, exec: Recorder, crl: bool) -> T {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = Authority::new_root("test root", 1).unwrap_or_else(|e| panic!("{e}"));
    let signer = root
        .issue_signer(&SignerOptions::valid_for("signer", 10))
        .unwrap_or_else(|e| panic!("{e}"));
    let s = KeyFileSigner::new(
        signer.key_pem.as_bytes(),
        cert_pem(&signer.cert_der).as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cat = dir.path().join("catalog");
    std::fs::create_dir_all(&cat).unwrap_or_else(|e| panic!("{e}"));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");
    let mut sources: Vec<Vec<u8>> = std::fs::read_dir(shipped)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    sources.push(MULTI.as_bytes().to_vec());
    sign_language(&cat, LANGUAGE, &s);
    for bytes in sources {
        let pb = hearth_playbook::Playbook::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        let env = dsse::sign(&bytes, PAYLOAD_TYPE, &s).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            cat.join(format!("{}.dsse.json", pb.spec.id)),
            serde_json::to_vec(&env).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let root_pem = dir.path().join("root.pem");
    std::fs::write(&root_pem, cert_pem(&root.cert_der)).unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings {
        catalog_dir: cat,
        trust: TrustConfig {
            vendor_roots: vec![root_pem],
            appliance_crl: crl.then(|| dir.path().join("appliance-crl.pem")),
            ..Default::default()
        },
        policy,
        audit_log: None,
    };
    let exec = Arc::new(exec);
    let tpm = Arc::new(Tpm::default());
    let interp = Table(vec![
        (
            "point nas.home.arpa at 192.168.1.20",
            Interpretation::Plan {
                playbook: "dns.add_record".into(),
                params: [
                    ("name".to_string(), json!("nas.home.arpa")),
                    ("address".to_string(), json!("192.168.1.20")),
                ]
                .into_iter()
                .collect(),
                confidence: 0.93,
            },
        ),
        (
            "add nas and delete guest",
            Interpretation::Refusal {
                reason: "the request asks for several actions".into(),
                candidates: vec!["dns.add_record".into(), "net.delete_domain".into()],
            },
        ),
        (
            "make a record for the nas",
            Interpretation::Clarify {
                question: "Which record?".into(),
                options: vec![crate::interpret::ClarifyOption {
                    playbook: "dns.add_record".into(),
                    params: [("name".to_string(), json!("nas.home.arpa"))]
                        .into_iter()
                        .collect(),
                    summary: "Add a record for nas.home.arpa".into(),
                }],
            },
        ),
        (
            "make a record for nas",
            Interpretation::Plan {
                playbook: "dns.add_record".into(),
                params: [("name".to_string(), json!("nas.home.arpa"))]
                    .into_iter()
                    .collect(),
                confidence: 0.5,
            },
        ),
    ]);
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("{e}"));
    let gate = Gate::open(
        settings,
        &state,
        exec.clone(),
        Arc::new(interp),
        tpm.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    T {
        _dir: dir,
        gate,
        exec,
        tpm,
        signer: s,
    }
}

/// Signs `text` as the catalog's language file into `cat`.
fn sign_language(cat: &std::path::Path, text: &str, s: &KeyFileSigner) {
    let env = dsse::sign(text.as_bytes(), dsse::LANGUAGE_PAYLOAD_TYPE, s)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        cat.join(hearth_playbook::catalog::LANGUAGE_FILE),
        serde_json::to_vec(&env).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn params(v: Value) -> BTreeMap<String, Value> {
    serde_json::from_value(v).unwrap_or_default()
}

fn shipped_playbooks() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .count()
}

#[tokio::test]
async fn the_signed_catalog_loads_whole() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    // Every shipped playbook, and the test's own multi-step one.
    assert_eq!(t.gate.catalog().len(), shipped_playbooks() + 1);
    assert!(t.gate.refused().is_empty());
}

#[tokio::test]
async fn a_crl_that_becomes_unreadable_empties_the_catalog_on_reload() {
    let t = setup_with_crl(PolicyConfig::default(), Recorder::default(), true);
    let n = t.gate.catalog().len();
    assert!(n > 0, "no CRL yet: nothing revoked, the catalog loads");
    let crl = appliance_crl(&t);
    std::fs::write(&crl, "not a CRL\n").unwrap_or_else(|e| panic!("{e}"));
    let e = t.gate.reload().expect_err("an unparsable CRL refuses");
    assert!(e.to_string().contains(&crl.display().to_string()), "{e}");
    // Fail closed: no playbook verified before stays usable.
    assert!(t.gate.catalog().is_empty(), "{:?}", t.gate.catalog());
    let r = t
        .gate
        .ask_structured("net.show", &BTreeMap::new(), USER)
        .await;
    assert!(matches!(r, Err(GateError::Refused { .. })), "{r:?}");
    assert!(t.exec.log().is_empty());
    // Once the CRL is readable again the catalog comes back.
    std::fs::remove_file(&crl).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.gate.reload().unwrap_or_else(|e| panic!("{e}")), n);
}

fn refusal_reason(r: Result<Outcome, GateError>) -> String {
    match r {
        Err(GateError::Refused { reason, .. }) => reason,
        other => panic!("a refusal expected, got {other:?}"),
    }
}

fn audit_text(t: &T) -> String {
    std::fs::read_to_string(t._dir.path().join("state/audit.jsonl")).unwrap_or_default()
}

#[tokio::test]
async fn every_field_of_a_structured_intent_is_bounded() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let huge = "x".repeat(100_000);
    let record = |name: &str| params(json!({"name": name, "address": "192.168.1.20"}));

    // The playbook id.
    let r = t.gate.ask_structured(&huge, &BTreeMap::new(), USER).await;
    let reason = refusal_reason(r);
    assert!(
        reason.contains("playbook id") && reason.contains("at most 64"),
        "{reason}"
    );
    assert!(reason.len() < 300, "the reason does not echo the input");
    // A parameter's value.
    let r = t
        .gate
        .ask_structured("dns.add_record", &record(&huge), USER)
        .await;
    let reason = refusal_reason(r);
    assert!(
        reason.contains("\"name\"") && reason.contains("at most 512"),
        "{reason}"
    );
    assert!(reason.len() < 300, "the reason does not echo the input");
    // A parameter's name.
    let mut p = record("nas.home.arpa");
    p.insert(huge.clone(), json!("1"));
    let reason = refusal_reason(t.gate.ask_structured("dns.add_record", &p, USER).await);
    assert!(
        reason.contains("parameter name") && reason.contains("at most 64"),
        "{reason}"
    );
    // The number of parameters.
    let mut p = record("nas.home.arpa");
    for i in 0..100 {
        p.insert(format!("p{i}"), json!(i));
    }
    let reason = refusal_reason(t.gate.ask_structured("dns.add_record", &p, USER).await);
    assert!(
        reason.contains("102 parameters") && reason.contains("at most 16"),
        "{reason}"
    );
    // None of the oversize input reached the audit log whole.
    let audit = audit_text(&t);
    assert!(audit.lines().count() >= 4, "each refusal is recorded");
    assert!(!audit.contains(&"x".repeat(1000)), "{} bytes", audit.len());
    assert!(t.exec.log().is_empty());
}

#[tokio::test]
async fn pending_plans_are_bounded_per_requester_and_in_all() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let ask = |uid: u32, i: usize| {
        let p = params(json!({"name": format!("h{i}.home.arpa"), "address": "192.168.1.20"}));
        let caller = Caller {
            uid,
            is_admin: true,
        };
        let gate = &t.gate;
        async move { gate.ask_structured("dns.add_record", &p, caller).await }
    };
    // One requester: at most 8 waiting.
    let mut ids = Vec::new();
    for i in 0..8 {
        let o = ask(1000, i).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.status, Status::Pending);
        ids.push(o.plan.plan_id);
    }
    let reason = refusal_reason(ask(1000, 8).await);
    assert!(
        reason.contains("uid 1000") && reason.contains("8 pending") && reason.contains("at most 8"),
        "{reason}"
    );
    // Cancelling one makes room.
    t.gate
        .cancel(&ids[0], USER)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ask(1000, 8).await.unwrap_or_else(|e| panic!("{e}")).status,
        Status::Pending
    );
    // In all: at most 64, whoever asks.
    for uid in 2000..2056 {
        assert_eq!(
            ask(uid, 0).await.unwrap_or_else(|e| panic!("{e}")).status,
            Status::Pending
        );
    }
    let reason = refusal_reason(ask(3000, 0).await);
    assert!(
        reason.contains("64 plans") && reason.contains("at most 64"),
        "{reason}"
    );
    assert!(t.exec.log().is_empty());
}

#[tokio::test]
async fn a_read_runs_at_once_in_step_order_and_is_audited_and_measured() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured("net.show", &params(json!({})), USER)
        .await
        .unwrap();
    assert_eq!(out.status, Status::Executed);
    assert_eq!(t.exec.log(), vec!["net.ListDomains()", "net.Matrix()"]);
    let rec = out.audit.unwrap();
    let records = t.gate.audit_list(0).unwrap();
    let intent_hash = records[0]["hash"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        lock(&t.tpm.0).clone(),
        vec![
            ("net.show@0".to_string(), intent_hash),
            (format!("net.show@{}", rec.seq), rec.hash.clone())
        ]
    );
    let v = t.gate.audit_verify().unwrap();
    assert!(v.ok && v.records == 2, "{v:?}");
    assert_eq!(records[0]["event"]["kind"], "intent");
    let ev = &records[1]["event"];
    assert_eq!(ev["kind"], "executed");
    assert_eq!(ev["caller_uid"], 1000);
    assert_eq!(ev["playbook"]["id"], "net.show");
    assert_eq!(ev["playbook"]["digest"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn a_change_waits_for_the_requester_only() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "net.allow",
            &params(json!({"from": "iot", "to": "LAN", "port": "443"})),
            REQUESTER,
        )
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    assert_eq!(out.plan.approval, Approval::Confirm);
    assert_eq!(out.plan.params["protocol"], json!("tcp"));
    assert!(
        out.plan
            .explanation
            .contains("from=iot, to=lan, port=443, protocol=tcp"),
        "{}",
        out.plan.explanation
    );
    assert!(t.exec.log().is_empty(), "nothing runs before confirmation");
    let id = out.plan.plan_id.clone();
    assert!(matches!(
        t.gate.confirm(&id, OTHER).await,
        Err(GateError::NotAuthorized(PolicyError::NotRequester { .. }))
    ));
    assert!(matches!(
        t.gate.confirm(&id, ADMIN).await,
        Err(GateError::NotAuthorized(_))
    ));
    assert!(t.exec.log().is_empty());
    let done = t.gate.confirm(&id, REQUESTER).await.unwrap();
    assert_eq!(done.status, Status::Executed);
    assert_eq!(t.exec.log(), vec!["net.Allow(iot,lan,443,tcp)"]);
    assert!(matches!(
        t.gate.confirm(&id, REQUESTER).await,
        Err(GateError::NotFound(_))
    ));
}

#[tokio::test]
async fn destructive_needs_an_admin() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    // An admin's plan waits for the requester's confirmation; an approval
    // alone does not run it, and only an admin may approve.
    let out = t
        .gate
        .ask_structured(
            "net.delete_domain",
            &params(json!({"domain": "guest"})),
            REQUESTER,
        )
        .await
        .unwrap();
    assert_eq!(out.plan.approval, Approval::Admin);
    let id = out.plan.plan_id;
    assert!(matches!(
        t.gate.approve(&id, OTHER).await,
        Err(GateError::NotAuthorized(PolicyError::NotAdmin))
    ));
    let after = t.gate.approve(&id, ADMIN).await.unwrap();
    assert_eq!(after.status, Status::Pending);
    assert_eq!(after.missing, vec!["the requester's confirmation"]);
    assert!(t.exec.log().is_empty());
    let done = t.gate.confirm(&id, REQUESTER).await.unwrap();
    assert_eq!(done.status, Status::Executed);
    assert_eq!(t.exec.log(), vec!["net.DeleteDomain(guest)"]);
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(
        ev["approval"],
        json!({"confirmed": true, "approved_by": [0]})
    );

    // An admin's own confirmation suffices.
    let out = t
        .gate
        .ask_structured(
            "dns.remove_record",
            &params(json!({"name": "tv.home.arpa"})),
            ADMIN,
        )
        .await
        .unwrap();
    let done = t.gate.confirm(&out.plan.plan_id, ADMIN).await.unwrap();
    assert_eq!(done.status, Status::Executed);
}

#[tokio::test]
async fn a_step_the_daemon_would_refuse_the_requester_is_refused_at_planning() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    // hearth-netd refuses a non-admin any change (an allow into the admin
    // domain among them): so does the gate, whatever the approvals.
    let cases = [
        (
            "net.allow",
            json!({"from": "lan", "to": "iot"}),
            "step 1 (net.Allow",
        ),
        (
            "net.delete_domain",
            json!({"domain": "guest"}),
            "step 1 (net.DeleteDomain",
        ),
        (
            "dns.add_record",
            json!({"name": "nas.home.arpa", "address": "192.168.1.20"}),
            "step 1 (dns.AddRecord",
        ),
        (
            "pki.issue_certificate",
            json!({"name": "nas.home.arpa"}),
            "step 1 (pki.IssueCertificate",
        ),
    ];
    for (id, p, needle) in &cases {
        let e = t
            .gate
            .ask_structured(id, &params(p.clone()), USER)
            .await
            .err()
            .unwrap_or_else(|| panic!("{id}: expected a refusal"));
        assert!(
            matches!(e, GateError::NotAuthorized(PolicyError::StepNotAllowed(_))),
            "{id}: {e:?}"
        );
        let m = e.to_string();
        assert!(m.contains(needle), "{m}");
        assert!(
            m.contains("uid 1000") && m.contains("changes need an admin"),
            "{m}"
        );
    }
    assert!(t.exec.log().is_empty(), "nothing ran: {:?}", t.exec.log());
    assert!(t.gate.list_pending(ADMIN).is_empty());
    let recs = t.gate.audit_list(0).unwrap();
    assert_eq!(recs.len(), cases.len());
    for r in &recs {
        assert_eq!(r["event"]["kind"], "refused", "{r}");
        assert_eq!(r["event"]["caller_uid"], 1000, "{r}");
    }
    // Reads stay open to operators; the same change is open to an admin.
    let out = t
        .gate
        .ask_structured("net.show", &params(json!({})), USER)
        .await
        .unwrap();
    assert_eq!(out.status, Status::Executed);
    let out = t
        .gate
        .ask_structured(
            "net.allow",
            &params(json!({"from": "lan", "to": "iot"})),
            REQUESTER,
        )
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
}

#[tokio::test]
async fn the_two_person_rule_needs_a_second_admin() {
    let policy = PolicyConfig {
        two_person: true,
        ..Default::default()
    };
    let t = setup(policy, Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "pki.revoke_certificate",
            &params(json!({"name": "nas.home.arpa"})),
            ADMIN,
        )
        .await
        .unwrap();
    assert_eq!(out.plan.approval, Approval::TwoPerson);
    let id = out.plan.plan_id;
    assert_eq!(
        t.gate.confirm(&id, ADMIN).await.unwrap().status,
        Status::Pending
    );
    assert!(matches!(
        t.gate.approve(&id, ADMIN).await,
        Err(GateError::NotAuthorized(PolicyError::SamePerson))
    ));
    assert!(t.exec.log().is_empty());
    let done = t.gate.approve(&id, ADMIN2).await.unwrap();
    assert_eq!(done.status, Status::Executed);
    assert_eq!(t.exec.log(), vec!["pki.RevokeCertificate(nas.home.arpa)"]);
}

#[tokio::test]
async fn pending_plans_expire() {
    let policy = PolicyConfig {
        pending_ttl_secs: 0,
        ..Default::default()
    };
    let t = setup(policy, Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "dns.add_record",
            &params(json!({"name": "nas.home.arpa", "address": "fd00::10"})),
            REQUESTER,
        )
        .await
        .unwrap();
    assert!(matches!(
        t.gate.confirm(&out.plan.plan_id, REQUESTER).await,
        Err(GateError::Expired(_))
    ));
    assert!(t.exec.log().is_empty());
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(ev["kind"], "expired");
}

#[tokio::test]
async fn cancel_is_for_the_requester_or_an_admin() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "net.revoke",
            &params(json!({"from": "iot", "to": "lan"})),
            REQUESTER,
        )
        .await
        .unwrap();
    let id = out.plan.plan_id;
    assert_eq!(t.gate.list_pending(REQUESTER).len(), 1);
    assert_eq!(t.gate.list_pending(OTHER).len(), 0);
    assert_eq!(t.gate.list_pending(ADMIN).len(), 1);
    assert!(t.gate.cancel(&id, OTHER).is_err());
    assert_eq!(
        t.gate.cancel(&id, REQUESTER).unwrap().status,
        Status::Cancelled
    );
    assert!(!t.gate.is_pending(&id));
    assert!(t.exec.log().is_empty());
}

#[tokio::test]
async fn refusals_run_nothing_and_are_audited() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let cases: Vec<(Result<Outcome, GateError>, &str)> = vec![
        (t.gate.ask(&"a".repeat(513), USER).await, "at most 512"),
        (t.gate.ask("   ", USER).await, "empty"),
        (
            t.gate.ask("add nas and delete guest", USER).await,
            "several actions",
        ),
        (
            t.gate.ask("order me a pizza", USER).await,
            "outside the catalog",
        ),
        (t.gate.ask("make a record for nas", USER).await, "address"),
        (
            t.gate
                .ask_structured("shell.run", &params(json!({"cmd": "reboot"})), USER)
                .await,
            "not in the signed catalog",
        ),
        (
            t.gate
                .ask_structured(
                    "dns.add_record",
                    &params(json!({"name": "nas.home.arpa"})),
                    USER,
                )
                .await,
            "needs a value for address (IP address)",
        ),
        (
            t.gate
                .ask_structured(
                    "dns.add_record",
                    &params(json!({"name": "nas..arpa", "address": "1.2.3.4"})),
                    USER,
                )
                .await,
            "name",
        ),
        (
            t.gate
                .ask_structured(
                    "net.allow",
                    &params(json!({"from": "iot", "to": "work"})),
                    USER,
                )
                .await,
            "no domain work",
        ),
        (
            t.gate
                .ask_structured(
                    "pki.issue_certificate",
                    &params(json!({"name": "a.home.arpa", "days": 400})),
                    USER,
                )
                .await,
            "1 to 398",
        ),
        (
            t.gate
                .ask_structured("dns.list_records", &params(json!({"extra": 1})), USER)
                .await,
            "takes no parameter extra",
        ),
    ];
    let n = cases.len();
    for (r, needle) in cases {
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{needle}: expected a refusal"));
        assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
    }
    assert!(t.exec.log().is_empty(), "nothing ran: {:?}", t.exec.log());
    assert!(t.gate.list_pending(ADMIN).is_empty());
    let recs = t.gate.audit_list(0).unwrap();
    assert_eq!(recs.len(), n);
    assert!(recs.iter().all(|r| r["event"]["kind"] == "refused"));
    // The over-long text is recorded truncated; model digests are recorded.
    assert_eq!(recs[0]["event"]["request"]["truncated_from"], 513);
    assert_eq!(recs[2]["event"]["model_digests"][0]["name"], "test.gguf");
    assert_eq!(recs[2]["event"]["candidates"][1], "net.delete_domain");
}

#[tokio::test]
async fn a_text_request_becomes_the_same_plan_as_a_structured_one() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask("point nas.home.arpa at 192.168.1.20", REQUESTER)
        .await
        .unwrap();
    assert_eq!(out.plan.playbook.id, "dns.add_record");
    assert_eq!(out.plan.source["kind"], "text");
    let done = t.gate.confirm(&out.plan.plan_id, REQUESTER).await.unwrap();
    assert_eq!(done.status, Status::Executed);
    assert_eq!(
        t.exec.log(),
        vec!["dns.AddRecord(nas.home.arpa,192.168.1.20)"]
    );
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(ev["request"]["text"], "point nas.home.arpa at 192.168.1.20");
    assert_eq!(
        ev["model_digests"][0]["sha256"].as_str().map(str::len),
        Some(64)
    );
}

/// The text path serves plain language only with the signed language file
/// the interpreter was trained with: missing, refused or different, text
/// is refused with the reason naming the file (audited), while structured
/// intents still run; signed again as trained, text works again.
#[tokio::test]
async fn plain_language_needs_the_signed_language_file_it_was_trained_with() {
    use hearth_playbook::catalog::LANGUAGE_FILE;
    let t = setup(PolicyConfig::default(), Recorder::default());
    assert_eq!(t.gate.language_refusal(), None);
    let text = "point nas.home.arpa at 192.168.1.20";
    let record = params(json!({"name": "nas.home.arpa", "address": "192.168.1.20"}));
    let structured = || t.gate.ask_structured("dns.add_record", &record, REQUESTER);
    let file = t.gate.settings.catalog_dir.join(LANGUAGE_FILE);
    let refused_text = |why: &str, reason: String| {
        assert!(
            reason.contains("plain-language requests are refused")
                && reason.contains(LANGUAGE_FILE)
                && reason.contains(why)
                && reason.contains("structured intent"),
            "{reason}"
        );
    };

    // Missing.
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
    t.gate.reload().unwrap_or_else(|e| panic!("{e}"));
    let reason = refusal_reason(t.gate.ask(text, REQUESTER).await);
    refused_text("no signed language file", reason.clone());
    let ev = &t.gate.audit_list(1).unwrap_or_default()[0]["event"];
    assert_eq!(ev["kind"], "refused");
    assert_eq!(ev["reason"], reason.as_str());
    let out = structured().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.plan.playbook.id, "dns.add_record");

    // Signed, but not the language the interpreter was trained with.
    let other = LANGUAGE.replacen("\nweek = 7\n", "\nweek = 6\n", 1);
    assert_ne!(other, LANGUAGE);
    sign_language(&t.gate.settings.catalog_dir, &other, &t.signer);
    t.gate.reload().unwrap_or_else(|e| panic!("{e}"));
    let reason = refusal_reason(t.gate.ask(text, REQUESTER).await);
    refused_text("not the one the interpreter was trained on", reason.clone());
    assert!(reason.contains("[days]"), "{reason}");
    structured().await.unwrap_or_else(|e| panic!("{e}"));

    // Tampered: refused like a bad playbook, named in the refusals.
    let mut env: dsse::Envelope = serde_json::from_slice(&std::fs::read(&file).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    env.payload = dsse::sign(LANGUAGE.as_bytes(), dsse::LANGUAGE_PAYLOAD_TYPE, &t.signer)
        .unwrap_or_else(|e| panic!("{e}"))
        .payload;
    std::fs::write(&file, serde_json::to_vec(&env).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    t.gate.reload().unwrap_or_else(|e| panic!("{e}"));
    let refused = t.gate.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].kind, hearth_playbook::RefusalKind::Tampered);
    let reason = refusal_reason(t.gate.ask(text, REQUESTER).await);
    refused_text("was refused (tampered", reason);
    structured().await.unwrap_or_else(|e| panic!("{e}"));

    // The file as trained: text works again.
    sign_language(&t.gate.settings.catalog_dir, LANGUAGE, &t.signer);
    t.gate.reload().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.gate.language_refusal(), None);
    let out = t
        .gate
        .ask(text, REQUESTER)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.plan.source["kind"], "text");
}

/// The signed language file is measured with the catalog: at start by
/// `measure_trusted_inputs` and on reload before the text path uses it
/// (kind `playbook-catalog`, its file name, the envelope's SHA-256); one
/// that cannot be measured closes the text path.
#[tokio::test]
async fn the_signed_language_file_is_measured_with_the_catalog() {
    use hearth_playbook::catalog::LANGUAGE_FILE;
    use sha2::{Digest, Sha256};
    let t = setup(PolicyConfig::default(), Recorder::default());
    let file = t.gate.settings.catalog_dir.join(LANGUAGE_FILE);
    let sha = hex::encode(Sha256::digest(std::fs::read(&file).unwrap_or_default()));
    let config = t._dir.path().join("intentd.toml");
    std::fs::write(&config, "").unwrap_or_else(|e| panic!("{e}"));
    crate::exec::measure_trusted_inputs(&t.tpm, &t.gate.settings.catalog_dir, &config).await;
    let measured = (format!("playbook-catalog {LANGUAGE_FILE}"), sha);
    let at_start = lock(&t.tpm.2).clone();
    assert!(at_start.contains(&measured), "{at_start:?}");
    // The shipped playbooks, the test's own, the language file, the policy.
    assert_eq!(at_start.len(), shipped_playbooks() + 3, "{at_start:?}");

    lock(&t.tpm.2).clear();
    t.gate
        .reload_measured()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(lock(&t.tpm.2).contains(&measured));
    assert_eq!(t.gate.language_refusal(), None);

    // Signed anew (other bytes, same words) while hearth-attestd is away:
    // not measured, so not used.
    sign_language(
        &t.gate.settings.catalog_dir,
        &format!("{LANGUAGE}\n"),
        &t.signer,
    );
    t.tpm.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = t.gate.reload_measured().await.expect_err("not measured");
    assert!(e.to_string().contains(LANGUAGE_FILE), "{e}");
    let why = t.gate.language_refusal().unwrap_or_default();
    assert!(why.contains("not measured"), "{why}");
    t.tpm.1.store(false, std::sync::atomic::Ordering::SeqCst);
    t.gate
        .reload_measured()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.gate.language_refusal(), None);
}

#[tokio::test]
async fn a_failing_step_undoes_the_completed_ones_in_reverse_order() {
    let exec = Recorder {
        fail_on: Some("dns.Remove"),
        results: [
            (
                "pki.IssueCertificate",
                r#"{"serial":"0a1b","names":["nas.home.arpa"]}"#,
            ),
            (
                "net.CreateDomain",
                r#"{"name":"cams","subnet":"10.9.0.0/24"}"#,
            ),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let out = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    let done = t.gate.confirm(&out.plan.plan_id, ADMIN).await.unwrap();
    assert_eq!(done.status, Status::Failed);
    assert_eq!(
        t.exec.log(),
        vec![
            "pki.IssueCertificate(nas.home.arpa,30)",
            "net.CreateDomain(cams,)",
            "dns.Remove(nas.home.arpa)",
            "net.DeleteDomain(cams)",
            "pki.RevokeCertificate(0a1b)",
        ]
    );
    assert_eq!(done.rollback.len(), 2);
    assert!(done.rollback.iter().all(|r| r.ok));
    assert!(done
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("injected failure"));
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(ev["kind"], "failed");
    assert_eq!(ev["result"]["rollback"][0]["call"], "net.DeleteDomain");
    assert_eq!(done.measured, Some(true), "failed actions are measured too");
}

#[tokio::test]
async fn a_plan_whose_first_dry_run_fails_is_refused_and_audited() {
    let exec = Recorder {
        preview_fails: Some("pki.IssueCertificate"),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let e = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("pki.IssueCertificate would fail") && m.contains("injected refusal"),
        "{m}"
    );
    assert_eq!(
        t.exec.log(),
        vec!["preview pki.IssueCertificate(nas.home.arpa,30)"],
        "nothing but the dry run was called"
    );
    assert!(t.gate.list_pending(ADMIN).is_empty(), "no plan is pending");
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(ev["kind"], "refused");
}

#[tokio::test]
async fn a_first_dry_run_nobody_answers_is_shown_not_decisive() {
    let exec = Recorder {
        preview_fails: Some("pki.IssueCertificate"),
        preview_unanswered: true,
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let out = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    let p = &out.plan.preview;
    assert!(
        p.iter().any(|v| v["call"] == "pki.IssueCertificate"
            && v["preview"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("not on the bus"))
            && v["preview"]["note"]
                .as_str()
                .is_some_and(|n| n.contains("no answer"))),
        "{p:?}"
    );
}

#[tokio::test]
async fn a_later_dry_run_that_fails_is_shown_not_decisive() {
    let exec = Recorder {
        preview_fails: Some("net.CreateDomain"),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let out = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    let p = &out.plan.preview;
    assert!(
        p.iter().any(|v| v["call"] == "net.CreateDomain"
            && v["preview"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("injected refusal"))
            && v["preview"]["note"].is_string()),
        "{p:?}"
    );
}

#[tokio::test]
async fn a_failing_first_step_undoes_nothing() {
    let exec = Recorder {
        fail_on: Some("pki.IssueCertificate"),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let out = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    let done = t.gate.confirm(&out.plan.plan_id, ADMIN).await.unwrap();
    assert_eq!(done.status, Status::Failed);
    assert_eq!(t.exec.log(), vec!["pki.IssueCertificate(nas.home.arpa,30)"]);
    assert!(done.rollback.is_empty());
}

#[tokio::test]
async fn an_undo_that_needs_a_missing_result_field_is_reported() {
    // IssueCertificate returns no serial, then a later step fails: the undo
    // cannot be rendered and says so, the others still run.
    const TWO: &str = r#"
id = "test.two"
version = 1
description = "x"
risk = "change"
[[params]]
name = "name"
type = "dns-name"
[[steps]]
call = "pki.IssueCertificate"
args = { name = "{name}", days = 1 }
undo = { call = "pki.RevokeCertificate", args = { serial_or_name = "{result.serial}" } }
[[steps]]
call = "dns.AddRecord"
args = { name = "{name}", address = "10.0.0.1" }
undo = { call = "dns.RemoveRecord", args = { name = "{name}", address = "10.0.0.1" } }
"#;
    let pb = hearth_playbook::Playbook::parse(TWO.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let (_, steps) = pb
        .plan(&params(json!({"name": "a.home.arpa"})), &Context::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let e = steps[0].undo.as_ref().map(|u| u.finish("{}"));
    assert!(matches!(e, Some(Err(_))));
    let ok = steps[0]
        .undo
        .as_ref()
        .map(|u| u.finish(r#"{"serial":"0a1b"}"#));
    assert_eq!(
        ok.and_then(|r| r.ok()).map(|c| c.args),
        Some(vec![ArgValue::Str("0a1b".into())])
    );
}

#[tokio::test]
async fn a_change_that_cannot_be_measured_is_refused_with_nothing_run() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "dns.add_record",
            &params(json!({"name": "nas.home.arpa", "address": "192.168.1.20"})),
            REQUESTER,
        )
        .await
        .unwrap();
    assert_eq!(out.status, Status::Pending);
    // hearth-attestd stops before the plan is confirmed.
    t.tpm.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let e = t
        .gate
        .confirm(&out.plan.plan_id, REQUESTER)
        .await
        .expect_err("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("cannot be measured") && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert!(t.exec.log().is_empty(), "{:?}", t.exec.log());
    let recs = t.gate.audit_list(0).unwrap();
    let kinds: Vec<&str> = recs
        .iter()
        .filter_map(|r| r["event"]["kind"].as_str())
        .collect();
    assert_eq!(kinds, vec!["intent", "aborted"]);
    let why = recs[1]["event"]["reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("hearth-attestd") && why.contains("ServiceUnknown"),
        "{why}"
    );
    assert_eq!(recs[1]["event"]["plan_id"], json!(out.plan.plan_id));
    assert!(t.gate.audit_verify().unwrap().ok);
    assert!(lock(&t.tpm.0).is_empty());
}

#[tokio::test]
async fn a_plan_whose_intent_record_cannot_be_written_does_not_run() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "dns.add_record",
            &params(json!({"name": "nas.home.arpa", "address": "192.168.1.20"})),
            REQUESTER,
        )
        .await
        .unwrap();
    // The log stops taking writes: every append fails.
    let path = t.gate.audit_path.clone();
    *lock(&t.gate.audit) = AuditLog::failing(&path).unwrap_or_else(|e| panic!("{e}"));
    let e = t
        .gate
        .confirm(&out.plan.plan_id, REQUESTER)
        .await
        .expect_err("not run");
    let msg = e.to_string();
    assert!(
        msg.contains("intent record cannot be written") && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert!(t.exec.log().is_empty(), "{:?}", t.exec.log());
    assert!(lock(&t.tpm.0).is_empty());
}

#[tokio::test]
async fn a_run_leaves_its_intent_then_its_outcome_both_measured() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "dns.add_record",
            &params(json!({"name": "nas.home.arpa", "address": "192.168.1.20"})),
            REQUESTER,
        )
        .await
        .unwrap();
    let done = t.gate.confirm(&out.plan.plan_id, REQUESTER).await.unwrap();
    assert_eq!(done.status, Status::Executed);
    let recs = t.gate.audit_list(0).unwrap();
    assert_eq!(recs.len(), 2);
    let (intent, outcome) = (&recs[0], &recs[1]);
    assert_eq!(intent["event"]["kind"], "intent");
    assert_eq!(intent["event"]["plan_id"], json!(out.plan.plan_id));
    assert_eq!(intent["event"]["playbook"]["id"], "dns.add_record");
    assert_eq!(intent["event"]["params"]["name"], "nas.home.arpa");
    assert_eq!(intent["event"]["approval"], json!(done_agreement(&recs[1])));
    assert_eq!(outcome["event"]["kind"], "executed");
    assert_eq!(outcome["event"]["plan_id"], json!(out.plan.plan_id));
    assert_eq!(outcome["event"]["intent_seq"], 0);
    assert_eq!(outcome["prev"], intent["hash"]);
    assert_eq!(
        lock(&t.tpm.0).clone(),
        vec![
            (
                "dns.add_record@0".to_string(),
                intent["hash"].as_str().unwrap_or_default().to_string()
            ),
            (
                "dns.add_record@1".to_string(),
                outcome["hash"].as_str().unwrap_or_default().to_string()
            ),
        ]
    );
    assert!(t.gate.audit_verify().unwrap().ok);
}

fn done_agreement(outcome: &Value) -> Value {
    outcome["event"]["approval"].clone()
}

async fn allow_plan(t: &T) -> String {
    let out = t
        .gate
        .ask_structured(
            "net.allow",
            &params(json!({"from": "iot", "to": "lan", "port": 443})),
            ADMIN,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status, Status::Pending);
    out.plan.plan_id
}

#[tokio::test]
async fn a_trial_runs_and_is_reverted_when_its_window_ends() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let id = allow_plan(&t).await;
    let out = t.gate.confirm_trial(&id, 60, ADMIN).await.unwrap();
    assert_eq!(out.status, Status::Trial);
    let until = out.trial_until_ms.expect("trial_until_ms");
    assert!(until > now_ms(SystemTime::now()) + 50_000, "{until}");
    assert!(t.gate.is_trial(&id));
    assert_eq!(t.gate.list_trials(ADMIN).len(), 1);
    assert!(t.gate.list_trials(OTHER).is_empty(), "not the requester");
    // The window is still open: nothing is reverted.
    assert!(t.gate.revert_due().await.is_empty());
    assert_eq!(t.exec.log(), vec!["net.Allow(iot,lan,443,tcp)"]);
    // The window ends.
    lock(&t.gate.trials).get_mut(&id).expect("trial").until_ms = 1;
    let ends = t.gate.revert_due().await;
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].status, "reverted");
    assert_eq!(
        t.exec.log(),
        vec!["net.Allow(iot,lan,443,tcp)", "net.Revoke(iot,lan)"]
    );
    assert!(!t.gate.is_trial(&id));
    let ev = &t.gate.audit_list(1).unwrap()[0]["event"];
    assert_eq!(ev["kind"], "reverted");
    assert_eq!(ev["result"]["undo"][0]["call"], "net.Revoke");
    // Every record is measured: intent, executed (on trial), reverted.
    assert_eq!(lock(&t.tpm.0).len(), 3);
    assert!(t.gate.revert_due().await.is_empty(), "reverted once");
}

#[tokio::test]
async fn a_trial_kept_in_time_stays() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let id = allow_plan(&t).await;
    t.gate.confirm_trial(&id, 60, ADMIN).await.unwrap();
    let e = t.gate.keep(&id, OTHER).await.unwrap_err();
    assert!(matches!(e, GateError::NotAuthorized(_)), "{e}");
    let end = t.gate.keep(&id, ADMIN).await.unwrap();
    assert_eq!(end.status, "kept");
    lock(&t.gate.trials).clear();
    assert!(t.gate.revert_due().await.is_empty());
    assert_eq!(t.exec.log(), vec!["net.Allow(iot,lan,443,tcp)"]);
    assert_eq!(t.gate.audit_list(1).unwrap()[0]["event"]["kind"], "kept");
    assert!(matches!(
        t.gate.keep(&id, ADMIN).await.unwrap_err(),
        GateError::NotFound(_)
    ));
}

#[tokio::test]
async fn a_trial_left_by_a_stopped_gate_is_reverted_at_start() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let id = allow_plan(&t).await;
    t.gate.confirm_trial(&id, 3600, ADMIN).await.unwrap();
    let stored = t.gate.trials_path.clone();
    assert!(stored.exists(), "the trial is stored");
    // A second gate over the same state directory (the daemon restarted).
    let exec = Arc::new(Recorder::default());
    let again = Gate::open(
        t.gate.settings.clone(),
        stored.parent().expect("state dir"),
        exec.clone(),
        Arc::new(Table(vec![])),
        t.tpm.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.is_trial(&id));
    let ends = again.revert_left_trials().await;
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].reason.as_deref(),
        Some("hearth-intentd restarted during the trial")
    );
    assert_eq!(exec.log(), vec!["net.Revoke(iot,lan)"]);
    assert!(!again.is_trial(&id));
    let v: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&stored).unwrap_or_default()).unwrap_or_default();
    assert!(v.is_empty(), "the stored trial is gone: {v:?}");
}

#[tokio::test]
async fn only_plans_that_can_be_undone_are_tried_and_windows_are_bounded() {
    let t = setup(PolicyConfig::default(), Recorder::default());
    let out = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    let e = t
        .gate
        .confirm_trial(&out.plan.plan_id, 60, ADMIN)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot be tried") && e.contains("dns.Remove"),
        "{e}"
    );
    let id = allow_plan(&t).await;
    let e = t
        .gate
        .confirm_trial(&id, 5, ADMIN)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("10 to 3600 seconds"), "{e}");
    assert!(t.exec.log().is_empty(), "nothing ran");
}

#[tokio::test]
async fn the_policy_can_put_a_playbook_on_trial() {
    let mut policy = PolicyConfig::default();
    policy.trial.insert("net.allow".into(), 120);
    let t = setup(policy, Recorder::default());
    let id = allow_plan(&t).await;
    let out = t.gate.confirm(&id, ADMIN).await.unwrap();
    assert_eq!(out.status, Status::Trial);
    assert!(t.gate.is_trial(&id));
}

#[tokio::test]
async fn a_step_that_changed_nothing_is_not_undone() {
    use hearth_common::contract::network::{NetAction, NetChange, NetState};
    // The allow was already in force: netd answers an empty diff.
    let empty = NetChange::between(
        NetAction::Allow,
        false,
        &NetState::default(),
        &NetState::default(),
    );
    let text: &'static str = Box::leak(
        serde_json::to_string(&empty)
            .unwrap_or_default()
            .into_boxed_str(),
    );
    let exec = Recorder {
        results: [("net.Allow", text)].into_iter().collect(),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    let id = allow_plan(&t).await;
    t.gate.confirm_trial(&id, 60, ADMIN).await.unwrap();
    lock(&t.gate.trials).get_mut(&id).expect("trial").until_ms = 1;
    let ends = t.gate.revert_due().await;
    assert_eq!(ends.len(), 1);
    assert!(ends[0].undo.is_empty(), "{:?}", ends[0].undo);
    assert_eq!(
        t.exec.log(),
        vec!["net.Allow(iot,lan,443,tcp)"],
        "the allow that was there before stays"
    );
}

/// Serializes a value of the gate as the bus carries it and decodes it as
/// the contract type every client reads (`hearth_common::contract::intent`);
/// writing the decoded value again gives the same JSON, so nothing is lost
/// or renamed between the two.
fn wire<C: serde::de::DeserializeOwned + Serialize>(value: &impl Serialize) -> C {
    let v = serde_json::to_value(value).unwrap_or_else(|e| panic!("{e}"));
    let c: C = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("not a {}: {e}\n{v:#}", std::any::type_name::<C>()));
    assert_eq!(serde_json::to_value(&c).unwrap_or_default(), v);
    c
}

#[tokio::test]
async fn every_answer_of_the_gate_decodes_as_its_contract_type() {
    use hearth_common::contract::intent as wire_t;
    let exec = Recorder {
        fail_on: Some("dns.Remove"),
        results: [(
            "pki.IssueCertificate",
            r#"{"serial":"0a1b","names":["nas.home.arpa"]}"#,
        )]
        .into_iter()
        .collect(),
        previews: [("net.Allow", r#"{"action":"allow","dry_run":true}"#)]
            .into_iter()
            .collect(),
        preview_fails: Some("net.CreateDomain"),
        ..Default::default()
    };
    let t = setup(PolicyConfig::default(), exec);
    // An executed read, asked as text and as a structured intent.
    let read = t
        .gate
        .ask_structured("net.show", &params(json!({})), USER)
        .await
        .unwrap();
    let o: wire_t::Outcome = wire(&read);
    assert_eq!(o.status, wire_t::Status::Executed);
    assert_eq!(o.steps.len(), 2);
    assert_eq!(o.plan.source, wire_t::Source::Structured);
    // A pending change with the daemon's preview, from text.
    let pending = t
        .gate
        .ask("point nas.home.arpa at 192.168.1.20", REQUESTER)
        .await
        .unwrap();
    let o: wire_t::Answer = wire(&pending);
    assert!(
        matches!(&o, wire_t::Answer::Outcome(o) if matches!(o.plan.source, wire_t::Source::Text { .. })),
        "{o:?}"
    );
    let allow = t
        .gate
        .ask_structured(
            "net.allow",
            &params(json!({"from": "iot", "to": "lan", "port": 443})),
            ADMIN,
        )
        .await
        .unwrap();
    let o: wire_t::Outcome = wire(&allow);
    assert_eq!(o.status, wire_t::Status::Pending);
    assert!(!o.missing.is_empty());
    assert!(
        matches!(&o.plan.preview[..], [p] if p.call == "net.Allow"
            && matches!(p.preview, wire_t::PreviewAnswer::Answer(_))),
        "{:?}",
        o.plan.preview
    );
    assert_eq!(
        o.plan.steps[0].undo.as_ref().map(|u| u.call.as_str()),
        Some("net.Revoke")
    );
    let listed: Vec<wire_t::Plan> = wire(&t.gate.list_pending(ADMIN));
    assert!(!listed.is_empty());
    // A failed plan with its rollback, whose preview shows a later step's
    // refused dry run.
    let multi = t
        .gate
        .ask_structured(
            "test.multi",
            &params(json!({"name": "nas.home.arpa", "domain": "cams"})),
            ADMIN,
        )
        .await
        .unwrap();
    let o: wire_t::Outcome = wire(&multi);
    assert!(o
        .plan
        .preview
        .iter()
        .any(|p| matches!(p.preview, wire_t::PreviewAnswer::Failed(_))));
    assert!(o.plan.steps.iter().any(|s| s.irreversible));
    let failed = t.gate.confirm(&multi.plan.plan_id, ADMIN).await.unwrap();
    let o: wire_t::Outcome = wire(&failed);
    assert_eq!(o.status, wire_t::Status::Failed);
    assert!(!o.rollback.is_empty() && o.error.is_some() && o.audit.is_some());
    // A cancelled plan.
    let cancelled = t.gate.cancel(&pending.plan.plan_id, REQUESTER).unwrap();
    let o: wire_t::Ended = wire(&cancelled);
    assert!(matches!(o, wire_t::Ended::Outcome(_)));
    // A change on trial, the trials listed, kept and reverted.
    let trial = t
        .gate
        .confirm_trial(&allow.plan.plan_id, 60, ADMIN)
        .await
        .unwrap();
    let o: wire_t::Outcome = wire(&trial);
    assert_eq!(o.status, wire_t::Status::Trial);
    assert!(o.trial_until_ms.is_some());
    let trials: Vec<wire_t::Trial> = wire(&t.gate.list_trials(ADMIN));
    assert_eq!(trials[0].undo[0].call, "net.Revoke");
    let end = t.gate.end_trial(&allow.plan.plan_id, ADMIN).await.unwrap();
    let e: wire_t::Ended = wire(&end);
    assert!(
        matches!(&e, wire_t::Ended::Trial(e) if e.status == wire_t::TrialStatus::Reverted && !e.undo.is_empty()),
        "{e:?}"
    );
    let id = allow_plan(&t).await;
    t.gate.confirm_trial(&id, 60, ADMIN).await.unwrap();
    let kept: wire_t::TrialEnd = wire(&t.gate.keep(&id, ADMIN).await.unwrap());
    assert_eq!(kept.status, wire_t::TrialStatus::Kept);
    // A clarifying question, as `Ask` writes it.
    let Err(GateError::Clarify { question, options }) =
        t.gate.ask("make a record for the nas", USER).await
    else {
        panic!("no question");
    };
    let q: wire_t::Answer = wire(&crate::dbus::clarify_document(question, options));
    assert!(matches!(q, wire_t::Answer::Clarify(c) if c.options[0].playbook == "dns.add_record"));
    // The catalog, one playbook, the audit log and its verification.
    let cat: wire_t::Catalog = wire(&t.gate.catalog_document());
    assert!(cat.playbooks.iter().any(|s| s.id == "net.allow"));
    for s in &cat.playbooks {
        let _: wire_t::PlaybookShown = wire(&t.gate.show(&s.id).unwrap());
    }
    let shown: wire_t::PlaybookShown = wire(&t.gate.show("test.multi").unwrap());
    assert!(shown.steps[2].irreversible && shown.steps[2].undo.is_none());
    let v: wire_t::Verification = wire(&t.gate.audit_verify().unwrap());
    assert!(v.ok, "{:?}", v.problems);
    let records: Vec<wire_t::AuditRecord> = wire(&t.gate.audit_list(0).unwrap());
    let kinds: Vec<&str> = records.iter().map(|r| r.event.kind.as_str()).collect();
    for k in [
        "intent",
        "executed",
        "failed",
        "cancelled",
        "reverted",
        "kept",
        "clarify",
    ] {
        assert!(kinds.contains(&k), "{k} not in {kinds:?}");
    }
}

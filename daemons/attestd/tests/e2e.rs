//! End-to-end tests against real software TPMs (swtpm, EK certificates from a
//! private swtpm-localca CA), a real HTTPS endpoint (rustls) and the real
//! verifier flows. A second swtpm plays the impostor.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hearth_attestation::api::{Identity, QuoteRequest, QuoteResponse};
use hearth_attestation::client::{Client, ClientError};
use hearth_attestation::eventlog::{self, Content, Kind};
use hearth_attestation::flow::{self, FlowError};
use hearth_attestation::swtpm::{copy_state, LocalCa, Swtpm};
use hearth_attestation::verify::{self, golden_from_report, EnrollError, Enrollment, Report};
use hearth_attestd::{Config, Engine};
use tokio::task::JoinHandle;

/// Two manufactured TPMs (A: the appliance's, B: the impostor's) and their CA,
/// made once per test process; each test runs swtpm on its own copy.
struct Tpms {
    ca: LocalCa,
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
}

fn tpms() -> &'static Tpms {
    static T: OnceLock<Tpms> = OnceLock::new();
    T.get_or_init(|| {
        let ca = LocalCa::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        ca.manufacture(&a).unwrap();
        ca.manufacture(&b).unwrap();
        Tpms {
            ca,
            _dir: dir,
            a,
            b,
        }
    })
}

struct Tls {
    chain: PathBuf,
    key: PathBuf,
    root: PathBuf,
}

fn make_tls(dir: &Path, tag: &str) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("Hearth test root {tag}"));
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let tls = Tls {
        chain: dir.join(format!("chain-{tag}.pem")),
        key: dir.join(format!("key-{tag}.pem")),
        root: dir.join(format!("root-{tag}.pem")),
    };
    std::fs::write(&tls.chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&tls.key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&tls.root, ca.pem()).unwrap();
    tls
}

const INTENTD_UID: u32 = 1000;

struct Appliance {
    _swtpm: Swtpm,
    dir: tempfile::TempDir,
    cfg: Config,
    engine: Arc<Engine>,
    server: JoinHandle<()>,
    host: String,
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn config(tcti: String, tls: &Tls, measure: Vec<PathBuf>) -> Config {
    Config {
        tcti,
        ek_handle: 0x8101_0001,
        ak_handle: 0x8100_0A71,
        nv_index: 0x0140_0A71,
        listen: "127.0.0.1:0".into(),
        tls_cert: tls.chain.clone(),
        tls_key: tls.key.clone(),
        root_ca: tls.root.clone(),
        measurement_users: vec![INTENTD_UID.to_string()],
        measure_binaries: measure,
        tls_generate: Vec::new(),
        tls_from_pkid: Vec::new(),
        tls_renew_before_days: 30,
        tls_check_interval_s: 3600,
        firmware_event_log: None,
        quote_concurrency: 2,
        quote_burst: 8,
        quote_per_minute: 30,
        access: Default::default(),
    }
}

async fn open_engine(cfg: &Config, state: &Path) -> Arc<Engine> {
    let cfg = cfg.clone();
    let state = state.to_path_buf();
    Arc::new(
        tokio::task::spawn_blocking(move || Engine::open(&cfg, &state))
            .await
            .unwrap()
            .unwrap(),
    )
}

async fn serve(cfg: &Config, engine: Arc<Engine>) -> (JoinHandle<()>, String) {
    let tls = hearth_attestd::server::tls_config(&cfg.tls_cert, &cfg.tls_key).unwrap();
    let listener = hearth_attestd::server::bind(&cfg.listen).await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    (
        tokio::spawn(hearth_attestd::server::serve(listener, tls, engine)),
        host,
    )
}

async fn appliance(template: &Path) -> Appliance {
    let dir = tempfile::tempdir().unwrap();
    copy_state(template, &dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    let tls = make_tls(dir.path(), "good");
    let cfg = config(swtpm.tcti(), &tls, vec![PathBuf::from("/bin/true")]);
    let engine = open_engine(&cfg, &dir.path().join("attestd")).await;
    let (server, host) = serve(&cfg, engine.clone()).await;
    Appliance {
        _swtpm: swtpm,
        dir,
        cfg,
        engine,
        server,
        host,
    }
}

impl Appliance {
    fn state(&self) -> PathBuf {
        self.dir.path().join("attestd")
    }

    async fn measure(&self, kind: &str, name: &str, data: &[u8]) {
        let e = self.engine.clone();
        let (kind, name) = (kind.to_string(), name.to_string());
        let sha = hex::encode(openssl::sha::sha256(data));
        tokio::task::spawn_blocking(move || e.measure(INTENTD_UID, &kind, &name, &sha))
            .await
            .unwrap()
            .unwrap();
    }

    async fn enroll(&self) -> Enrollment {
        let bundle = tpms().ca.bundle_pem().unwrap();
        flow::enroll(&self.host, None, Some(&bundle))
            .await
            .unwrap()
            .record
    }

    /// Restarts the daemon (server and engine) on the same TPM and state.
    async fn restart(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        self.engine = open_engine(&self.cfg, &self.state()).await;
        let (server, host) = serve(&self.cfg, self.engine.clone()).await;
        self.server = server;
        self.host = host;
    }
}

fn failed(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

async fn status(engine: &Arc<Engine>) -> hearth_attestd::Status {
    let e = engine.clone();
    tokio::task::spawn_blocking(move || e.status())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_appliance_checks_trusted_with_its_golden_policy() {
    let app = appliance(&tpms().a).await;
    app.measure("model", "/var/lib/hearth/models/intent.gguf", b"model v1")
        .await;
    app.measure("playbook-catalog", "catalog", b"catalog v1")
        .await;
    app.measure("policy", "/etc/hearth/policy.toml", b"policy v1")
        .await;
    app.measure("action", "playbook add-guest-wifi #1", b"audit record 1")
        .await;
    let record = app.enroll().await;
    assert!(
        record.ek_cert_checked,
        "EK certificate checked against the swtpm-localca CA"
    );

    let (report, _) = flow::check_with(&record, None).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));
    let golden = golden_from_report(&report);
    // Round trip through the TOML file format hearth-verify writes.
    let golden: verify::Golden = toml::from_str(&toml::to_string(&golden).unwrap()).unwrap();
    assert_eq!(golden.pcrs.len(), 9);

    let report = flow::check(&record, Some(&golden)).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));
    let names: Vec<&str> = report.measured.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"/var/lib/hearth/models/intent.gguf"));
    assert!(names.contains(&"/bin/true"));
    assert_eq!(
        report.actions,
        vec!["playbook add-guest-wifi #1".to_string()]
    );
    let s = status(&app.engine).await;
    assert!(s.consistent);
    assert!(
        s.deletion_protected,
        "swtpm allows the platform-created register"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_quote_with_an_old_nonce_is_not_trusted() {
    let app = appliance(&tpms().a).await;
    let record = app.enroll().await;
    let (first, old) = flow::check_with(&record, None).await.unwrap();
    assert!(first.trusted, "{:?}", failed(&first));
    // A man in the middle answers a new check with the old (genuine) quote.
    let new_nonce = verify::fresh_nonce();
    let report = verify::check_quote(&record, &new_nonce, &old, None);
    assert!(!report.trusted);
    let f = failed(&report);
    assert!(f.iter().any(|c| c.starts_with("quote freshness")), "{f:?}");
    assert!(
        f.iter()
            .any(|c| c.starts_with("register certification freshness")),
        "{f:?}"
    );
}

async fn genuine(app: &Appliance, record: &Enrollment) -> (Vec<u8>, QuoteResponse) {
    let client = Client::pinned(&app.host, &record.root_ca_pem).unwrap();
    let nonce = verify::fresh_nonce();
    let resp: QuoteResponse = client
        .post(
            "/v1/quote",
            &QuoteRequest {
                nonce: hex::encode(&nonce),
            },
        )
        .await
        .unwrap();
    (nonce, resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_event_logs_are_not_trusted_and_say_why() {
    let app = appliance(&tpms().a).await;
    app.measure("model", "/models/a.gguf", b"a").await;
    app.measure("action", "open port 22 on lan", b"audit").await;
    let record = app.enroll().await;
    let (nonce, resp) = genuine(&app, &record).await;
    assert!(verify::check_quote(&record, &nonce, &resp, None).trusted);

    // Edited: the action renamed, its digest recomputed to match.
    let mut edited = resp.clone();
    let last = edited.event_log.last_mut().unwrap();
    last.content.name = "nothing to see".into();
    last.digest = hex::encode(last.content.digest());
    let r = verify::check_quote(&record, &nonce, &edited, None);
    assert!(!r.trusted);
    assert!(
        failed(&r)
            .iter()
            .any(|c| c.contains("event log") && c.contains("certifies")),
        "{:?}",
        failed(&r)
    );

    // Edited without fixing the digest.
    let mut edited = resp.clone();
    edited.event_log[1].content.sha256 = "00".repeat(32);
    let r = verify::check_quote(&record, &nonce, &edited, None);
    assert!(
        failed(&r)
            .iter()
            .any(|c| c.contains("digest does not match its content")),
        "{:?}",
        failed(&r)
    );

    // Truncated: the embarrassing action dropped.
    let mut truncated = resp.clone();
    truncated.event_log.pop();
    let r = verify::check_quote(&record, &nonce, &truncated, None);
    assert!(!r.trusted);
    assert!(failed(&r)
        .iter()
        .any(|c| c.contains("removed, added, reordered or altered")));
    assert!(
        r.actions.is_empty(),
        "an unproven log's actions are not reported as facts"
    );

    // Reordered, with record numbers rewritten to look consecutive.
    let mut reordered = resp.clone();
    reordered.event_log.swap(1, 2);
    for (i, e) in reordered.event_log.iter_mut().enumerate() {
        e.recnum = i as u64;
    }
    let r = verify::check_quote(&record, &nonce, &reordered, None);
    assert!(!r.trusted);
    assert!(failed(&r).iter().any(|c| c.starts_with("event log")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_model_file_is_not_trusted_and_named() {
    let app = appliance(&tpms().a).await;
    app.measure(
        "model",
        "/var/lib/hearth/models/intent.gguf",
        b"good weights",
    )
    .await;
    let record = app.enroll().await;
    let (good, _) = flow::check_with(&record, None).await.unwrap();
    let golden = golden_from_report(&good);
    app.measure(
        "model",
        "/var/lib/hearth/models/intent.gguf",
        b"evil weights",
    )
    .await;
    let report = flow::check(&record, Some(&golden)).await.unwrap();
    assert!(!report.trusted);
    let f = failed(&report);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("/var/lib/hearth/models/intent.gguf"), "{f:?}");
    assert!(f[0].contains(&hex::encode(openssl::sha::sha256(b"evil weights"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ak_from_another_tpm_fails_enrollment() {
    let genuine_app = appliance(&tpms().a).await;
    let impostor = appliance(&tpms().b).await;
    let root = std::fs::read_to_string(&genuine_app.cfg.root_ca).unwrap();
    let client_a = Client::pinned(&genuine_app.host, &root).unwrap();
    let root_b = std::fs::read_to_string(&impostor.cfg.root_ca).unwrap();
    let client_b = Client::pinned(&impostor.host, &root_b).unwrap();
    let id_a: Identity = client_a.get("/v1/identity").await.unwrap();
    let id_b: Identity = client_b.get("/v1/identity").await.unwrap();
    // The genuine, certified EK of A with the AK of B (which B controls).
    let spliced = Identity {
        ak_public: id_b.ak_public.clone(),
        ..id_a.clone()
    };
    let bundle = tpms().ca.bundle_pem().unwrap();
    for target in [&client_b, &client_a] {
        let (req, challenge) =
            verify::begin_enroll(&genuine_app.host, &root, "fp", &spliced, Some(&bundle)).unwrap();
        let outcome = match target
            .post::<_, hearth_attestation::api::EnrollResponse>("/v1/enroll", &req)
            .await
        {
            Ok(resp) => verify::finish_enroll(challenge, &resp).map(|_| ()),
            Err(ClientError::Status { status, .. }) => {
                assert_eq!(status, 403);
                Err(EnrollError::ActivationFailed)
            }
            Err(e) => panic!("{e}"),
        };
        assert!(matches!(outcome, Err(EnrollError::ActivationFailed)));
    }
    // The honest identity enrolls.
    let (req, challenge) =
        verify::begin_enroll(&genuine_app.host, &root, "fp", &id_a, Some(&bundle)).unwrap();
    let resp = client_a.post("/v1/enroll", &req).await.unwrap();
    assert!(verify::finish_enroll(challenge, &resp).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_certificate_is_refused_before_attestation() {
    let mut app = appliance(&tpms().a).await;
    let record = app.enroll().await;
    // Enrolling with a fingerprint given out of band that does not match.
    let err = flow::enroll(&app.host, Some(&"ab".repeat(32)), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FlowError::Fingerprint { .. }), "{err}");
    // The endpoint now presents a certificate from another CA.
    let other = make_tls(app.dir.path(), "other");
    app.cfg.tls_cert = other.chain;
    app.cfg.tls_key = other.key;
    app.restart().await;
    let mut record = record;
    record.host = app.host.clone();
    let err = flow::check(&record, None).await.unwrap_err();
    assert!(
        matches!(err, FlowError::Client(ClientError::Connect { .. })),
        "refused at the TLS handshake: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_log_and_register_consistent() {
    let mut app = appliance(&tpms().a).await;
    app.measure("policy", "/etc/hearth/policy.toml", b"p").await;
    let before = status(&app.engine).await;
    assert!(before.consistent);
    assert_eq!(before.events, 2);
    let log_before = app.engine.log();
    app.restart().await;
    let after = status(&app.engine).await;
    assert!(after.consistent, "{:?}", after.detail);
    assert_eq!(after.events, 3, "the binary is measured again at start");
    assert_eq!(
        app.engine.log()[..2],
        log_before[..],
        "the log is kept, not rewritten"
    );
    let record = app.enroll().await;
    let report = flow::check(&record, None).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclean_stop_mismatch_is_reported_not_hidden() {
    let mut app = appliance(&tpms().a).await;
    let record = app.enroll().await;
    // Simulate a crash between the log append and the register extend.
    let next = eventlog::make_event(
        app.engine.log().len() as u64,
        app.cfg.nv_index,
        Content {
            kind: Kind::Action,
            name: "half-done".into(),
            sha256: "11".repeat(32),
        },
    );
    let mut line = serde_json::to_string(&next).unwrap();
    line.push('\n');
    let log = app.state().join("events.jsonl");
    let mut data = std::fs::read_to_string(&log).unwrap();
    data.push_str(&line);
    std::fs::write(&log, data).unwrap();
    app.cfg.measure_binaries.clear();
    app.restart().await;
    let s = status(&app.engine).await;
    assert!(!s.consistent);
    assert!(s.detail.unwrap().contains("unclean stop"));
    let mut record = record;
    record.host = app.host.clone();
    let report = flow::check(&record, None).await.unwrap();
    assert!(!report.trusted);
    assert!(failed(&report).iter().any(|c| c.starts_with("event log")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_from_other_callers_or_malformed_are_refused_and_change_nothing() {
    let app = appliance(&tpms().a).await;
    let e = app.engine.clone();
    let before = e.log().len();
    let results = tokio::task::spawn_blocking(move || {
        vec![
            e.measure(0, "model", "m", &"aa".repeat(32))
                .unwrap_err()
                .to_string(),
            e.measure(INTENTD_UID, "firmware", "m", &"aa".repeat(32))
                .unwrap_err()
                .to_string(),
            e.measure(INTENTD_UID, "model", "", &"aa".repeat(32))
                .unwrap_err()
                .to_string(),
            e.measure(INTENTD_UID, "model", "m", "xyz")
                .unwrap_err()
                .to_string(),
        ]
    })
    .await
    .unwrap();
    assert!(results[0].contains("uid 0 may not"));
    assert!(results[1].contains("kind") && results[1].contains("firmware"));
    assert!(results[2].contains("name"));
    assert!(results[3].contains("sha256") && results[3].contains("xyz"));
    assert_eq!(app.engine.log().len(), before);
    assert!(status(&app.engine).await.consistent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_verifies_with_tpm2_checkquote_too() {
    let app = appliance(&tpms().a).await;
    let record = app.enroll().await;
    let (nonce, resp) = genuine(&app, &record).await;
    let dir = app.dir.path();
    let ak =
        hearth_attestation::wire::Public::parse(&hex::decode(&record.ak_public).unwrap()).unwrap();
    let key = hearth_attestation::crypto::ak_key(&ak).unwrap();
    std::fs::write(dir.join("ak.pem"), key.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("quote.msg"),
        hex::decode(&resp.quote.attest).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("quote.sig"),
        hex::decode(&resp.quote.signature).unwrap(),
    )
    .unwrap();
    let values: Vec<Vec<u8>> = resp
        .pcrs
        .values()
        .map(|v| hex::decode(v).unwrap())
        .collect();
    std::fs::write(dir.join("quote.pcrs"), tpm2_tools_pcrs_file(&values)).unwrap();
    let run = |nonce_hex: &str| {
        std::process::Command::new("tpm2_checkquote")
            .arg("-u")
            .arg(dir.join("ak.pem"))
            .arg("-m")
            .arg(dir.join("quote.msg"))
            .arg("-s")
            .arg(dir.join("quote.sig"))
            .arg("-f")
            .arg(dir.join("quote.pcrs"))
            .args(["-g", "sha256", "-q", nonce_hex])
            .output()
            .unwrap()
    };
    let ok = run(&hex::encode(&nonce));
    assert!(
        ok.status.success(),
        "tpm2_checkquote: {}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = run(&hex::encode(verify::fresh_nonce()));
    assert!(
        !bad.status.success(),
        "tpm2_checkquote rejects another nonce"
    );
}

/// The PCR file tpm2_quote -o writes and tpm2_checkquote -f reads (tpm2-tools
/// 5.x): the in-memory TPML_PCR_SELECTION (here sha256: 0-7 and 11), a u32
/// count of TPML_DIGEST structures, then those (8 digests each), all in the
/// host's byte order with C struct padding.
fn tpm2_tools_pcrs_file(values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(1u32.to_ne_bytes());
    // TPMS_PCR_SELECTION: hash u16, sizeofSelect u8, pcrSelect[4], 1 byte padding.
    out.extend(0x000bu16.to_ne_bytes());
    out.extend([3u8, 0xff, 0x08, 0x00, 0x00, 0x00]);
    out.resize(4 + 16 * 8, 0);
    let chunks: Vec<&[Vec<u8>]> = values.chunks(8).collect();
    out.extend((chunks.len() as u32).to_ne_bytes());
    for chunk in chunks {
        out.extend((chunk.len() as u32).to_ne_bytes());
        for i in 0..8 {
            let mut d = [0u8; 66];
            if let Some(v) = chunk.get(i) {
                d[..2].copy_from_slice(&(v.len() as u16).to_ne_bytes());
                d[2..2 + v.len()].copy_from_slice(v);
            }
            out.extend(d);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_are_in_the_golden_policy_and_an_unlisted_or_altered_binary_is_named() {
    // Two binaries measured at start; a third configured but not installed
    // is skipped (start-up goes on).
    let dir = tempfile::tempdir().unwrap();
    copy_state(&tpms().a, &dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    let tls = make_tls(dir.path(), "good");
    let missing = "/nonexistent/libexec/hearth/hearth-netd";
    let cfg = config(
        swtpm.tcti(),
        &tls,
        vec!["/bin/true".into(), "/bin/false".into(), missing.into()],
    );
    let engine = open_engine(&cfg, &dir.path().join("attestd")).await;
    let (server, host) = serve(&cfg, engine.clone()).await;
    let _server = scopeguard(server);
    let bundle = tpms().ca.bundle_pem().unwrap();
    let record = flow::enroll(&host, None, Some(&bundle))
        .await
        .unwrap()
        .record;

    let (good, _) = flow::check_with(&record, None).await.unwrap();
    assert!(good.trusted, "{:?}", failed(&good));
    let golden = golden_from_report(&good);
    let digest = |p: &str| hex::encode(openssl::sha::sha256(&std::fs::read(p).unwrap()));
    for bin in ["/bin/true", "/bin/false"] {
        let rule = golden
            .measurement
            .iter()
            .find(|m| m.kind == Kind::Binary && m.name == bin)
            .unwrap_or_else(|| panic!("{bin} in the golden policy: {golden:?}"));
        assert_eq!(rule.sha256, vec![digest(bin)]);
        assert!(rule.required);
    }
    assert!(!golden.measurement.iter().any(|m| m.name == missing));
    let report = flow::check(&record, Some(&golden)).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));

    // A binary whose digest is not the allowed one: named, with its digest.
    let mut altered = golden.clone();
    for m in &mut altered.measurement {
        if m.name == "/bin/true" {
            m.sha256 = vec!["00".repeat(32)];
        }
    }
    let report = flow::check(&record, Some(&altered)).await.unwrap();
    assert!(!report.trusted);
    let f = failed(&report);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].starts_with("binary /bin/true: "), "{f:?}");
    assert!(f[0].contains(&digest("/bin/true")), "{f:?}");

    // A binary the policy does not list at all: named.
    let mut dropped = golden.clone();
    dropped.measurement.retain(|m| m.name != "/bin/false");
    let report = flow::check(&record, Some(&dropped)).await.unwrap();
    assert!(!report.trusted);
    let f = failed(&report);
    assert_eq!(
        f,
        vec!["binary /bin/false: not in the golden policy".to_string()]
    );

    // A binary the policy requires but the appliance never measured.
    let mut required = golden.clone();
    required.measurement.push(verify::GoldenMeasurement {
        kind: Kind::Binary,
        name: missing.into(),
        sha256: vec!["11".repeat(32)],
        required: true,
    });
    let report = flow::check(&record, Some(&required)).await.unwrap();
    assert!(!report.trusted);
    let f = failed(&report);
    assert_eq!(
        f,
        vec![format!("binary {missing}: expected but never measured")]
    );
}

/// Aborts the server task when the test ends (failures included).
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn scopeguard(h: JoinHandle<()>) -> Abort {
    Abort(h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quote_carries_the_firmware_event_log_when_there_is_one() {
    let mut app = appliance(&tpms().a).await;
    let record = app.enroll().await;
    let (_, resp) = genuine(&app, &record).await;
    assert_eq!(resp.firmware_event_log, None, "none configured: none sent");

    // Without one, a golden policy that requires it (the default) is NOT
    // TRUSTED, one that says require_firmware_log = false is not.
    let good = flow::check(&record, None).await.unwrap();
    assert!(good.trusted, "{:?}", failed(&good));
    assert_eq!(good.firmware_log, verify::FirmwareLogStatus::NotSent);
    let strict = verify::Golden {
        require_firmware_log: true,
        ..golden_from_report(&good)
    };
    let report = flow::check(&record, Some(&strict)).await.unwrap();
    assert!(!report.trusted);
    assert!(
        failed(&report)
            .iter()
            .any(|f| f.contains("no firmware event log")),
        "{:?}",
        failed(&report)
    );
    assert!(!golden_from_report(&good).require_firmware_log);

    // swtpm has no firmware: a file standing for the kernel's
    // binary_bios_measurements, read at every quote. A log of the Spec ID
    // event alone replays to PCRs 0-7 all zero, as swtpm's are.
    let log = app.dir.path().join("binary_bios_measurements");
    let mut empty = hearth_attestation::tcglog::synthetic(&[]);
    empty.events.clear();
    let bytes = hearth_attestation::tcglog::encode(&empty);
    std::fs::write(&log, &bytes).unwrap();
    app.cfg.firmware_event_log = Some(log.clone());
    app.restart().await;
    let mut record = record;
    record.host = app.host.clone();
    let (_, resp) = genuine(&app, &record).await;
    assert_eq!(resp.firmware_event_log, Some(hex::encode(&bytes)));
    // And the quote stays trusted with it, against the strict policy too.
    let report = flow::check(&record, Some(&strict)).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));
    assert_eq!(report.firmware_log, verify::FirmwareLogStatus::Replayed);

    // A log that does not replay (one event more, in PCR 4), or is not a
    // TCG log at all: NOT TRUSTED, even with require_firmware_log = false.
    let lax = verify::Golden {
        require_firmware_log: false,
        ..strict.clone()
    };
    let edited = hearth_attestation::tcglog::encode(&hearth_attestation::tcglog::synthetic(&[]));
    for (bytes, expect) in [
        (edited, "firmware log PCR 4"),
        (
            (0u8..=255).cycle().take(1000).collect(),
            "firmware event log",
        ),
    ] {
        std::fs::write(&log, &bytes).unwrap();
        let report = flow::check(&record, Some(&lax)).await.unwrap();
        assert!(!report.trusted);
        assert_eq!(report.firmware_log, verify::FirmwareLogStatus::Failed);
        assert!(
            failed(&report).iter().any(|f| f.starts_with(expect)),
            "{:?}",
            failed(&report)
        );
    }

    // Over the size limit: not sent, and said so.
    std::fs::write(
        &log,
        vec![0u8; hearth_attestation::tcglog::MAX_LOG_BYTES + 1],
    )
    .unwrap();
    let (_, resp) = genuine(&app, &record).await;
    assert_eq!(resp.firmware_event_log, None);
}

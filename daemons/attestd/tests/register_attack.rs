//! The measurement register cannot be deleted and rebuilt to erase history.
//!
//! The attack, done as root with tpm2-tools against swtpm (the same TPM
//! commands an attacker on the appliance would send to /dev/tpmrm0): delete
//! the register, define it again with the enrolled public area (so its name
//! is the enrolled one), rewrite the event log without the actions to hide,
//! extend the register with the forged log and restart the daemon. The
//! verifier must not say TRUSTED afterwards: either the TPM refuses the
//! deletion, or, for a register the owner can delete, the check reports the
//! register as deletable and a golden policy requiring protection fails.
//!
//! Needs swtpm, swtpm_setup and tpm2-tools (installed by scripts/setup).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use hearth_attestation::eventlog::{Event, Kind};
use hearth_attestation::flow;
use hearth_attestation::swtpm::{copy_state, LocalCa, Swtpm};
use hearth_attestation::verify::{
    golden_from_report, Enrollment, Golden, RegisterProtection, Report,
};
use hearth_attestation::wire::{nv_attr, NvPublic};
use hearth_attestd::{Config, Engine};
use tokio::task::JoinHandle;

const INTENTD_UID: u32 = 1000;
const ACTION: &str = "net.delete_domain@7";

struct Tpm {
    ca: LocalCa,
    _dir: tempfile::TempDir,
    state: PathBuf,
}

fn manufactured() -> &'static Tpm {
    static T: OnceLock<Tpm> = OnceLock::new();
    T.get_or_init(|| {
        let ca = LocalCa::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("tpm");
        ca.manufacture(&state).unwrap();
        Tpm {
            ca,
            _dir: dir,
            state,
        }
    })
}

struct Appliance {
    swtpm: Swtpm,
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

fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Hearth test root");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let (chain, key, root) = (
        dir.join("chain.pem"),
        dir.join("key.pem"),
        dir.join("root.pem"),
    );
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&root, ca.pem()).unwrap();
    (chain, key, root)
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

/// A fresh copy of the manufactured TPM; `platform_disabled` switches the
/// platform hierarchy off before the daemon first starts, as firmware does on
/// real hardware, so the daemon has to define the register as the owner.
async fn appliance(platform_disabled: bool) -> Appliance {
    let dir = tempfile::tempdir().unwrap();
    copy_state(&manufactured().state, &dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    if platform_disabled {
        tpm2(
            &swtpm,
            &["hierarchycontrol", "-C", "p", "phEnable", "clear"],
        );
    }
    let (chain, key, root) = tls_files(dir.path());
    // Through the configuration file format, so that keys with defaults
    // need not be named here.
    let cfg: Config = toml::from_str(&format!(
        "tcti = {tcti:?}\nlisten = \"127.0.0.1:0\"\ntls_cert = {chain:?}\ntls_key = {key:?}\n\
         root_ca = {root:?}\nmeasurement_users = [\"{INTENTD_UID}\"]\n",
        tcti = swtpm.tcti(),
    ))
    .unwrap();
    let engine = open_engine(&cfg, &dir.path().join("attestd")).await;
    let (server, host) = serve(&cfg, engine.clone()).await;
    Appliance {
        swtpm,
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

    async fn stop(&mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
    }

    async fn start(&mut self) {
        self.engine = open_engine(&self.cfg, &self.state()).await;
        let (server, host) = serve(&self.cfg, self.engine.clone()).await;
        self.server = server;
        self.host = host;
    }
}

/// Runs a tpm2-tools command on this swtpm; returns whether it succeeded
/// and what it said.
fn tpm2_try(swtpm: &Swtpm, args: &[&str]) -> (bool, String) {
    let out = Command::new(format!("tpm2_{}", args[0]))
        .args(&args[1..])
        .env("TPM2TOOLS_TCTI", swtpm.tcti())
        .env("TSS2_LOG", "all+none")
        .output()
        .unwrap_or_else(|e| panic!("tpm2_{} (tpm2-tools): {e}", args[0]));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn tpm2(swtpm: &Swtpm, args: &[&str]) -> String {
    let (ok, said) = tpm2_try(swtpm, args);
    assert!(ok, "tpm2_{}: {said}", args.join(" "));
    said
}

fn failed(report: &Report) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

/// The attacker's work, as root on the appliance, with the daemon stopped.
/// Returns false when the TPM refused to delete the register (and so
/// nothing was forged).
fn delete_redefine_and_replay(app: &Appliance, record: &Enrollment, work: &Path) -> bool {
    let index = format!("{:#x}", app.cfg.nv_index);
    let enrolled = NvPublic::parse(&hex::decode(&record.nv_public).unwrap()).unwrap();
    let platform = enrolled.attributes & nv_attr::PLATFORMCREATE != 0;
    let policy_delete = enrolled.attributes & nv_attr::POLICY_DELETE != 0;

    // 1. Delete it: with the policy it names when it has POLICY_DELETE (the
    //    platform hierarchy, open on swtpm as on any box whose firmware
    //    leaves it enabled), otherwise as the owner (or platform).
    let deleted = if policy_delete {
        let session = work.join("session.ctx");
        let s = session.display().to_string();
        tpm2(
            &app.swtpm,
            &["startauthsession", "--policy-session", "-S", &s],
        );
        tpm2(
            &app.swtpm,
            &[
                "policycommandcode",
                "-S",
                &s,
                "TPM2_CC_NV_UndefineSpaceSpecial",
            ],
        );
        let (ok, said) = tpm2_try(&app.swtpm, &["nvundefine", &index, "-S", &s]);
        let _ = tpm2_try(&app.swtpm, &["flushcontext", &s]);
        eprintln!("TPM2_NV_UndefineSpaceSpecial: ok={ok} {said}");
        ok
    } else {
        let hierarchy = if platform { "p" } else { "o" };
        let (ok, said) = tpm2_try(&app.swtpm, &["nvundefine", &index, "-C", hierarchy]);
        eprintln!("TPM2_NV_UndefineSpace: ok={ok} {said}");
        ok
    };
    if !deleted {
        return false;
    }

    // 2. Define it again with the enrolled public area (same name) and the
    //    daemon's own authorization value (root reads it).
    let auth = hex::encode(std::fs::read(app.state().join("nv-auth")).unwrap());
    let policy = work.join("policy.bin");
    std::fs::write(&policy, &enrolled.auth_policy).unwrap();
    let attrs = format!("{:#x}", enrolled.attributes & !nv_attr::WRITTEN);
    let mut define = vec![
        "nvdefine".to_string(),
        index.clone(),
        "-C".into(),
        if platform { "p" } else { "o" }.into(),
        "-s".into(),
        "32".into(),
        "-g".into(),
        "sha256".into(),
        "-a".into(),
        attrs,
        "-p".into(),
        format!("hex:{auth}"),
    ];
    if !enrolled.auth_policy.is_empty() {
        define.extend(["-L".into(), policy.display().to_string()]);
    }
    let define: Vec<&str> = define.iter().map(String::as_str).collect();
    tpm2(&app.swtpm, &define);

    // 3. The forged log: the same events without the action, renumbered,
    //    extended into the new register.
    let log_path = app.state().join("events.jsonl");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut forged = String::new();
    let mut n = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut e: Event = serde_json::from_str(line).unwrap();
        if e.content.kind == Kind::Action {
            continue;
        }
        e.recnum = n;
        n += 1;
        let digest = e.content.digest();
        assert_eq!(e.digest, hex::encode(digest));
        let data = work.join("digest.bin");
        std::fs::write(&data, digest).unwrap();
        tpm2(
            &app.swtpm,
            &[
                "nvextend",
                &index,
                "-C",
                &index,
                "-P",
                &format!("hex:{auth}"),
                "-i",
                &data.display().to_string(),
            ],
        );
        forged.push_str(&serde_json::to_string(&e).unwrap());
        forged.push('\n');
    }
    std::fs::write(&log_path, forged).unwrap();
    true
}

/// Measures, enrolls, writes the golden policy (with the action forbidden),
/// runs the attack and checks again. Returns the appliance, its enrollment,
/// the golden policy, whether the TPM let the register be deleted, and the
/// report after the attack.
async fn attack(platform_disabled: bool) -> (Appliance, Enrollment, Golden, bool, Report) {
    let mut app = appliance(platform_disabled).await;
    app.measure("model", "/var/lib/hearth/models/intent.gguf", b"model v1")
        .await;
    app.measure("policy", "/etc/hearth/policy.toml", b"policy v1")
        .await;
    let bundle = manufactured().ca.bundle_pem().unwrap();
    let mut record = flow::enroll(&app.host, None, Some(&bundle))
        .await
        .unwrap()
        .record;
    let (report, _) = flow::check_with(&record, None).await.unwrap();
    assert!(report.trusted, "{:?}", failed(&report));
    let mut golden = golden_from_report(&report);
    golden.actions.forbidden = vec!["net.delete_domain".into()];
    // Round trip through the file format hearth-verify reads.
    let golden: Golden = toml::from_str(&toml::to_string(&golden).unwrap()).unwrap();

    // The action the attacker wants to hide runs and is measured: the
    // check says so.
    app.measure("action", ACTION, b"audit record 7").await;
    let report = flow::check(&record, Some(&golden)).await.unwrap();
    assert!(!report.trusted);
    assert!(
        failed(&report)
            .iter()
            .any(|f| f.starts_with("action net.delete_domain: executed, but forbidden")),
        "{:?}",
        failed(&report)
    );

    app.stop().await;
    let work = app.dir.path().join("attacker");
    std::fs::create_dir_all(&work).unwrap();
    let deleted = delete_redefine_and_replay(&app, &record, &work);
    app.start().await;
    // The restarted daemon listens on another port; the host is not what
    // this test is about.
    record.host = app.host.clone();
    let after = flow::check(&record, Some(&golden)).await.unwrap();
    (app, record, golden, deleted, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_defined_by_the_daemon_cannot_be_deleted_to_erase_an_action() {
    let (_app, _record, golden, deleted, after) = attack(false).await;
    assert!(
        golden.require_protected_register,
        "the golden policy written from a protected appliance requires protection"
    );
    assert!(
        !deleted,
        "the TPM let root delete the register (platform hierarchy open, as on swtpm)"
    );
    assert!(
        !after.trusted,
        "the check says TRUSTED after the attack: {:#?}",
        after.checks
    );
    let f = failed(&after);
    assert!(
        f.iter()
            .any(|f| f.starts_with("action net.delete_domain: executed, but forbidden")),
        "the action is still certified: {f:?}"
    );
    let p = after.register_protection.expect("protection reported");
    assert_eq!(p.protection, RegisterProtection::Undeletable);
    assert!(after
        .checks
        .iter()
        .any(|c| c.name == "register protection" && c.ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_defined_register_is_deletable_and_a_policy_requiring_protection_fails() {
    let (_app, record, golden, deleted, after) = attack(true).await;
    assert!(deleted, "the owner can delete an owner-defined index");
    assert!(
        !golden.require_protected_register,
        "the golden policy written from an appliance with a deletable register does not \
         require protection (it could never pass)"
    );
    // The attack worked on the TPM: without the requirement the forged
    // history verifies, but the report says plainly that the register is
    // deletable, and why that matters.
    let p = after
        .register_protection
        .clone()
        .expect("protection reported");
    assert_eq!(p.protection, RegisterProtection::OwnerDeletable);
    assert!(p.detail.contains("DELETABLE by the TPM owner"), "{p:?}");
    assert!(p.residual_risk.contains("rewritten"), "{p:?}");
    assert!(after.trusted, "{:?}", failed(&after));

    // An admin whose policy requires protection is not fooled.
    let mut strict = golden.clone();
    strict.require_protected_register = true;
    let report = flow::check(&record, Some(&strict)).await.unwrap();
    assert!(!report.trusted);
    let f = failed(&report);
    assert_eq!(
        f,
        vec![format!(
            "register protection: the golden policy requires an undeletable register, but it is {}",
            RegisterProtection::OwnerDeletable.describe()
        )],
        "only the protection fails: the forged history itself verifies"
    );
}

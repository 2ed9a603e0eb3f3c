//! End-to-end tests of the intent gate (hearth-intentd) driven
//! through the real CLI (`hearthctl --json ask --playbook … --yes`) against
//! the sandbox's real daemons, asserting the real state each playbook changes
//! or reads: `dig` answers from hearth-dnsd, bridges and nftables rules in the
//! network namespace (hearth-netd), certificates that `openssl verify` accepts
//! (hearth-pkid), the TPM event log (hearth-attestd). Then refusals that change
//! nothing, the policy paths reachable in the sandbox, rollback after a failure
//! in a later step (a signed custom playbook installed with `hearthctl
//! playbook install`), and `audit verify` catching an edited, a deleted and a
//! reordered record.
//!
//! Prerequisites (scripts/test runs them): `cargo build --workspace --bins`
//! and `scripts/sign-catalog` (build/catalog/ and .build-keys/).
//!
//! One sandbox for the whole file (startup takes seconds): it runs from a
//! copy of the repository's signed catalog, so that installing the custom
//! playbook never touches the repository's build/catalog/.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hearth_common::contract::attestation::{self as attest_c, MeasurementKind};
use hearth_common::contract::cli::ErrorReport;
use hearth_common::contract::dns::{self as dns_c, RecordType};
use hearth_common::contract::intent::{
    self as intent_c, Answer, Approval, Ended, Outcome, Status, Verification,
};
use hearth_common::contract::network::{self as net_c, NetChange, Reach};
use hearth_common::contract::pki as pki_c;
use hearth_common::spec::Risk;
use hearth_common::types::DomainId;
use hearth_playbook::dsse::Envelope;
use hearth_testbed::{Options, Sandbox};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A finished `hearthctl --json …` run. Its document is read as the type
/// hearthctl printed (a contract type, or [`ErrorReport`] for an error).
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={} stdout={} stderr={}",
            self.ok, self.stdout, self.stderr
        )
    }
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The document read as `T`, the type hearthctl printed.
    fn get<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not a {}: {e}: {self:?}", std::any::type_name::<T>()))
    }

    /// A gate operation's outcome (`ask --playbook`, `playbook confirm`,
    /// `playbook approve`).
    fn outcome(&self) -> Outcome {
        self.get()
    }

    /// The error hearthctl printed, if it printed one.
    fn error(&self) -> Option<ErrorReport> {
        serde_json::from_str(&self.stdout).ok()
    }

    /// The refusal's message, once its kind is checked.
    fn refused(&self, kind: &str) -> String {
        assert!(
            !self.ok,
            "expected a refusal ({kind}), got success: {self:?}"
        );
        let e: ErrorReport = self.get();
        assert_eq!(e.error.kind, kind, "{self:?}");
        e.error.message
    }

    /// `playbook cancel` of a pending plan: its cancelled outcome.
    fn cancelled(&self) -> Outcome {
        match self.get::<Ended>() {
            Ended::Outcome(o) if o.status == Status::Cancelled => *o,
            other => panic!("not a cancelled plan: {other:?}"),
        }
    }
}

struct Ctx {
    sb: Sandbox,
    hearthctl: PathBuf,
    bin_dir: PathBuf,
    bus: String,
    dns_port: String,
    /// (playbook id, audit seq, audit hash) of every executed or failed plan,
    /// in order: each must be measured into the TPM event log.
    measured: Vec<(String, u64, String)>,
}

impl Ctx {
    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.hearthctl);
        c.arg("--json")
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null());
        c
    }

    fn ctl(&self, args: &[&str]) -> Run {
        Run::from(self.ctl_cmd(args).output().unwrap())
    }

    /// `hearthctl --json ask --playbook ID --param k=v … [--yes]`.
    fn ask_args(id: &str, params: &[(&str, &str)], yes: bool) -> Vec<String> {
        let mut a = vec!["ask".to_string(), "--playbook".into(), id.into()];
        for (k, v) in params {
            a.push("--param".into());
            a.push(format!("{k}={v}"));
        }
        if yes {
            a.push("--yes".into());
        }
        a
    }

    fn ask_raw(&mut self, id: &str, params: &[(&str, &str)], yes: bool) -> Run {
        let a = Self::ask_args(id, params, yes);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = self.ctl(&a);
        self.note(&r);
        r
    }

    /// Records a plan that ran (executed or failed) for the event-log check.
    fn note(&mut self, r: &Run) {
        if r.error().is_some() {
            return;
        }
        let Answer::Outcome(o) = r.get::<Answer>() else {
            return;
        };
        if matches!(o.status, Status::Executed | Status::Failed) {
            let audit = o
                .audit
                .unwrap_or_else(|| panic!("a plan that ran is audited: {r:?}"));
            self.measured
                .push((o.plan.playbook.id, audit.seq, audit.hash));
        }
    }

    /// Asks with --yes and requires the plan to have executed; returns the
    /// outcome.
    fn run(&mut self, id: &str, params: &[(&str, &str)]) -> Outcome {
        let r = self.ask_raw(id, params, true);
        assert!(r.ok, "{id} {params:?}: {r:?}");
        let o = r.outcome();
        assert_eq!(o.status, Status::Executed, "{id}: {r:?}");
        assert_eq!(o.measured, Some(true), "{id}: {r:?}");
        assert!(!o.steps.is_empty(), "{id}: {r:?}");
        assert!(o.steps.iter().all(|s| s.ok), "{id}: {r:?}");
        o
    }

    /// Step `i`'s result read as the contract type of `method`.
    fn typed<T: DeserializeOwned>(outcome: &Outcome, i: usize, method: &str) -> T {
        let s = outcome.steps[i]
            .result
            .as_deref()
            .unwrap_or_else(|| panic!("step {i} has a result: {outcome:?}"));
        hearth_common::contract::decode(method, s).unwrap_or_else(|e| panic!("step {i}: {e}"))
    }

    fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("dig")
            .args(["+short", "+time=2", "+tries=2", "@127.0.0.1", "-p"])
            .arg(&self.dns_port)
            .args([name, rtype])
            .output()
            .unwrap();
        assert!(out.status.success(), "dig {name} {rtype}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn bridge_exists(&self, name: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.sb.netns, "-j", "link", "show"])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip link: {out:?}");
        let links: Value = serde_json::from_slice(&out.stdout).unwrap();
        links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ifname"] == name)
    }

    /// The ruleset hearth-netd keeps in the namespace (`table inet hearth`).
    fn nft(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.sb.netns, "nft", "list", "table"])
            .args(["inet", "hearth"])
            .output()
            .unwrap();
        assert!(out.status.success(), "nft: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `hearthctl --json net show`, read as the contract's type.
    fn net_show(&self) -> net_c::Show {
        let r = self.ctl(&["net", "show"]);
        assert!(r.ok, "net show: {r:?}");
        r.get()
    }

    /// What `from` reaches of `to`, from `hearthctl --json net matrix`.
    fn reach(&self, from: &str, to: &str) -> Reach {
        let r = self.ctl(&["net", "matrix"]);
        assert!(r.ok, "net matrix: {r:?}");
        let m: net_c::Matrix = r.get();
        m.matrix[&DomainId::parse(from).unwrap()][to].clone()
    }

    /// The diff a network playbook's step `i` answered.
    fn net_change(outcome: &Outcome, i: usize) -> NetChange {
        Self::typed(outcome, i, "net change")
    }

    fn domain_names(&self) -> Vec<String> {
        self.net_show()
            .domains
            .iter()
            .map(|d| d.name.to_string())
            .collect()
    }

    fn pki_list(&self) -> Vec<pki_c::CertificateSummary> {
        let r = self.ctl(&["pki", "list"]);
        assert!(r.ok, "pki list: {r:?}");
        r.get()
    }

    fn audit_log(&self) -> PathBuf {
        self.sb.dir.join("state/hearth-intentd/audit.jsonl")
    }

    /// The plans `hearthctl playbook pending` lists, by id.
    fn pending(&self) -> Vec<String> {
        let r = self.ctl(&["playbook", "pending"]);
        assert!(r.ok, "playbook pending: {r:?}");
        r.get::<Vec<intent_c::Plan>>()
            .into_iter()
            .map(|p| p.plan_id)
            .collect()
    }

    /// The version of `id` in force, from `hearthctl playbook show`.
    fn playbook_version(&self, id: &str) -> u64 {
        let r = self.ctl(&["playbook", "show", id]);
        assert!(r.ok, "playbook show {id}: {r:?}");
        r.get::<intent_c::PlaybookShown>().summary.version
    }

    fn audit_verify(&self) -> Verification {
        // A broken chain may exit non-zero; the document says why.
        self.ctl(&["audit", "verify"]).get()
    }
}

/// The operators group hearth-intentd is given in this sandbox, and its gid.
const OPERATORS_GROUP: &str = "users";
const OPERATORS_GID: u32 = 100;

/// Links every entry of `from` into `to` (created), except `skip`.
fn link_all_but(from: &Path, to: &Path, skip: &[&str]) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A repository view for the sandbox: every entry of the real repository
/// linked, except build/, whose signed catalog is copied (the custom
/// playbook gets installed into the copy).
fn repo_view(real: &Path, at: &Path, intentd: fn(&str) -> String) -> PathBuf {
    fs::create_dir_all(at.join("build/catalog")).unwrap();
    link_all_but(real, at, &["build", "target", "daemons"]);
    // hearth-intentd's template gains an operators group that exists on any
    // Debian system ("users", gid 100), for the operator's policy paths.
    link_all_but(&real.join("daemons"), &at.join("daemons"), &["intentd"]);
    link_all_but(
        &real.join("daemons/intentd"),
        &at.join("daemons/intentd"),
        &["sandbox.toml"],
    );
    let template = fs::read_to_string(real.join("daemons/intentd/sandbox.toml")).unwrap();
    assert!(!template.contains("[access]"), "the template has [access]");
    fs::write(at.join("daemons/intentd/sandbox.toml"), intentd(&template)).unwrap();
    let catalog = real.join("build/catalog");
    let mut n = 0;
    for e in fs::read_dir(&catalog)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/sign-catalog)", catalog.display()))
    {
        let e = e.unwrap();
        fs::copy(e.path(), at.join("build/catalog").join(e.file_name())).unwrap();
        n += 1;
    }
    assert!(
        n > 13,
        "{}: the signed catalog is incomplete",
        catalog.display()
    );
    at.to_path_buf()
}

#[test]
fn playbooks_run_against_the_real_daemons() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    let real_repo = opts.repo.clone();
    opts.repo = repo_view(&real_repo, &tmp.path().join("repo"), |t| {
        format!("{t}\n[access]\noperators_group = \"{OPERATORS_GROUP}\"\n")
    });
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let mut cx = Ctx {
        bus: sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone(),
        dns_port: sb.env["HEARTH_DNS_PORT"].clone(),
        sb,
        hearthctl: opts.bin_dir.join("hearthctl"),
        bin_dir: opts.bin_dir.clone(),
        measured: Vec::new(),
    };
    // The gate serves the default catalog.
    let r = cx.ctl(&["playbook", "list"]);
    assert!(r.ok, "playbook list: {r:?}");
    let cat: intent_c::Catalog = r.get();
    for id in [
        "dns.add_record",
        "dns.add_alias",
        "dns.remove_record",
        "dns.list_records",
        "net.create_domain",
        "net.delete_domain",
        "net.allow",
        "net.revoke",
        "net.show",
        "pki.issue_certificate",
        "pki.revoke_certificate",
        "pki.list_certificates",
        "attest.status",
        "dns.update_record",
    ] {
        assert!(cat.playbooks.iter().any(|p| p.id == id), "{id}: {cat:?}");
    }

    dns_playbooks(&mut cx);
    net_playbooks(&mut cx);
    pki_playbooks(&mut cx, tmp.path());
    attest_status(&mut cx);
    refusals(&mut cx);
    clarify(&mut cx);
    language_file(&mut cx, &opts.repo.join("build/catalog"));
    policy(&mut cx);
    rollback(&mut cx, &real_repo, tmp.path());
    signed_in_the_hsm(&mut cx, &real_repo, tmp.path());
    event_log(&mut cx);
    audit_tampering(&mut cx);
    cx.sb.teardown();
}

fn dns_playbooks(cx: &mut Ctx) {
    assert_eq!(cx.dig("nas.home.arpa", "A"), "", "nothing there yet");
    cx.run(
        "dns.add_record",
        &[("name", "nas.home.arpa"), ("address", "192.168.1.20")],
    );
    assert_eq!(cx.dig("nas.home.arpa", "A"), "192.168.1.20");

    cx.run(
        "dns.add_record",
        &[("name", "nas6.home.arpa"), ("address", "fd00::10")],
    );
    assert_eq!(cx.dig("nas6.home.arpa", "AAAA"), "fd00::10");
    assert_eq!(cx.dig("nas6.home.arpa", "A"), "", "no A record for nas6");

    cx.run(
        "dns.add_alias",
        &[("name", "files.home.arpa"), ("target", "nas.home.arpa")],
    );
    assert_eq!(cx.dig("files.home.arpa", "CNAME"), "nas.home.arpa.");
    // A resolver following the alias gets the address too.
    assert!(
        cx.dig("files.home.arpa", "A").contains("192.168.1.20"),
        "{}",
        cx.dig("files.home.arpa", "A")
    );

    let o = cx.run("dns.list_records", &[]);
    let zones: Vec<dns_c::Zone> = Ctx::typed(&o, 0, "Dns1.List");
    let records: Vec<&dns_c::Record> = zones.iter().flat_map(|z| &z.records).collect();
    let has = |name: &str, t: RecordType, v: &str| {
        records
            .iter()
            .any(|r| r.name.as_str() == name && r.rtype == t && r.value == v)
    };
    assert!(
        has("nas.home.arpa", RecordType::A, "192.168.1.20"),
        "{zones:?}"
    );
    assert!(
        has("nas6.home.arpa", RecordType::AAAA, "fd00::10"),
        "{zones:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.name.as_str() == "files.home.arpa" && r.rtype == RecordType::CNAME),
        "{zones:?}"
    );

    // Destructive: root is an admin, so its own --yes is enough.
    let o = cx.run("dns.remove_record", &[("name", "nas6.home.arpa")]);
    assert_eq!(o.plan.risk, Risk::Destructive);
    let removed: dns_c::ZoneDiff = Ctx::typed(&o, 0, "Dns1.Remove");
    let gone: Vec<(&str, RecordType, &str)> = removed
        .removed
        .iter()
        .map(|r| (r.name.as_str(), r.rtype, r.value.as_str()))
        .collect();
    assert_eq!(gone, [("nas6.home.arpa", RecordType::AAAA, "fd00::10")]);
    assert!(removed.added.is_empty(), "{removed}");
    assert_eq!(o.plan.approval, Approval::Admin);
    assert_eq!(cx.dig("nas6.home.arpa", "AAAA"), "");
    assert_eq!(cx.dig("nas.home.arpa", "A"), "192.168.1.20", "others stay");

    // dns.update_record (added as data only): the name moves; its old
    // record is gone, the new one answers.
    cx.run(
        "dns.add_record",
        &[("name", "mover.home.arpa"), ("address", "192.168.1.30")],
    );
    let o = cx.run(
        "dns.update_record",
        &[("name", "mover.home.arpa"), ("address", "192.168.1.31")],
    );
    assert_eq!(o.steps.len(), 2, "{o:?}");
    assert_eq!(cx.dig("mover.home.arpa", "A"), "192.168.1.31");
    cx.run("dns.remove_record", &[("name", "mover.home.arpa")]);
}

fn net_playbooks(cx: &mut Ctx) {
    assert!(!cx.bridge_exists("hb-cams"));
    assert!(!cx.nft().contains("hb-cams"));
    let o = cx.run(
        "net.create_domain",
        &[("domain", "cams"), ("subnet", "10.77.9.0/24")],
    );
    let made = Ctx::net_change(&o, 0);
    assert_eq!(made.domains_created.len(), 1, "{o:?}");
    assert_eq!(made.domains_created[0].bridge, "hb-cams", "{o:?}");
    assert!(cx.bridge_exists("hb-cams"), "bridge hb-cams in the netns");
    assert!(cx.nft().contains("\"hb-cams\""), "{}", cx.nft());
    let show = cx.net_show();
    let cams = show
        .domains
        .iter()
        .find(|d| d.name.as_str() == "cams")
        .unwrap_or_else(|| panic!("cams in net show: {show:?}"));
    assert_eq!(cams.subnet.to_string(), "10.77.9.0/24");

    // A domain created without a subnet gets one from the pool.
    let o = cx.run("net.create_domain", &[("domain", "lab")]);
    let lab = &Ctx::net_change(&o, 0).domains_created[0];
    assert!(lab.subnet.to_string().starts_with("10.77."), "{lab:?}");
    assert!(cx.bridge_exists("hb-lab"));

    let rule = "\"hb-cams\" . \"hb-lan\" . tcp . 443";
    assert!(!cx.nft().contains(rule));
    let o = cx.run(
        "net.allow",
        &[("from", "cams"), ("to", "lan"), ("port", "443")],
    );
    assert_eq!(
        Ctx::net_change(&o, 0).to_string(),
        "Opens cams → lan tcp/443. Nothing else changes.",
        "{o:?}"
    );
    let show = cx.net_show();
    assert!(
        show.allows.iter().any(|a| a.from.as_str() == "cams"
            && a.to.as_str() == "lan"
            && a.port.map(|p| p.get()) == Some(443)
            && a.protocol.map(|p| p.as_str()) == Some("tcp")),
        "{show:?}"
    );
    assert_eq!(cx.reach("cams", "lan"), Reach::Only(vec!["tcp/443".into()]));
    assert!(cx.nft().contains(rule), "{}", cx.nft());

    let o = cx.run("net.show", &[]);
    assert_eq!(o.steps.len(), 2);
    let domains: Vec<net_c::Domain> = Ctx::typed(&o, 0, "ListDomains");
    assert!(domains.iter().any(|d| d.name.as_str() == "cams"), "{o:?}");
    let matrix: net_c::Matrix = Ctx::typed(&o, 1, "Matrix");
    let cams = &matrix.matrix[&DomainId::parse("cams").unwrap()];
    assert_eq!(
        cams.get("lan"),
        Some(&Reach::Only(vec!["tcp/443".into()])),
        "net.show's matrix: {o:?}"
    );

    cx.run("net.revoke", &[("from", "cams"), ("to", "lan")]);
    let show = cx.net_show();
    assert!(
        !show.allows.iter().any(|a| a.from.as_str() == "cams"),
        "{show:?}"
    );
    assert_eq!(cx.reach("cams", "lan"), Reach::Nothing);
    assert!(!cx.nft().contains(rule), "{}", cx.nft());

    let o = cx.run("net.delete_domain", &[("domain", "lab")]);
    assert_eq!(o.plan.risk, Risk::Destructive);
    assert!(!cx.bridge_exists("hb-lab"), "bridge hb-lab gone");
    assert!(!cx.nft().contains("hb-lab"), "{}", cx.nft());
    assert!(!cx.domain_names().contains(&"lab".to_string()));
    assert!(cx.bridge_exists("hb-cams"), "the other domain stays");
}

fn openssl_verify(pki_state: &Path, cert: &Path, crl: bool) -> Output {
    let mut c = Command::new("openssl");
    c.arg("verify")
        .arg("-CAfile")
        .arg(pki_state.join("root.pem"))
        .arg("-untrusted")
        .arg(pki_state.join("issuing.pem"));
    if crl {
        c.arg("-crl_check")
            .arg("-CRLfile")
            .arg(pki_state.join("crl.pem"));
    }
    c.arg(cert).output().unwrap()
}

fn pki_playbooks(cx: &mut Ctx, tmp: &Path) {
    let before = cx.pki_list();
    assert!(!before
        .iter()
        .any(|c| pki_c::names_text(&c.names).contains("web.home.arpa")));
    let o = cx.run(
        "pki.issue_certificate",
        &[("name", "web.home.arpa"), ("days", "30")],
    );
    let issued: pki_c::Issued = Ctx::typed(&o, 0, "Pki1.IssueCertificate");
    let serial = issued.serial.clone();
    let list = cx.pki_list();
    let entry = list
        .iter()
        .find(|c| c.serial == serial)
        .unwrap_or_else(|| panic!("{serial} in pki list: {list:?}"));
    assert_eq!(entry.status, pki_c::CertificateStatus::Valid);
    assert_eq!(pki_c::names_text(&entry.names), "web.home.arpa");
    assert_eq!(entry.not_after, issued.not_after);

    // The certificate chains to the appliance's root.
    let pki_state = cx.sb.dir.join("state/hearth-pkid");
    let cert = tmp.join("web.pem");
    fs::write(&cert, &issued.certificate).unwrap();
    let v = openssl_verify(&pki_state, &cert, false);
    assert!(
        v.status.success() && String::from_utf8_lossy(&v.stdout).contains("OK"),
        "openssl verify: {v:?}"
    );
    // Valid for 30 days.
    let end = Command::new("openssl")
        .args(["x509", "-noout", "-checkend"])
        .arg((29 * 86400).to_string())
        .arg("-in")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(end.status.success(), "valid for 29 more days: {end:?}");
    let end = Command::new("openssl")
        .args(["x509", "-noout", "-checkend"])
        .arg((31 * 86400).to_string())
        .arg("-in")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!end.status.success(), "not valid for 31 days: {end:?}");

    let o = cx.run("pki.list_certificates", &[]);
    let listed: Vec<pki_c::CertificateSummary> = Ctx::typed(&o, 0, "Pki1.ListCertificates");
    assert!(listed.iter().any(|c| c.serial == serial), "{listed:?}");

    let o = cx.run("pki.revoke_certificate", &[("name", "web.home.arpa")]);
    assert_eq!(o.plan.risk, Risk::Destructive);
    let revoked: pki_c::CertificateDiff = Ctx::typed(&o, 0, "Pki1.RevokeCertificate");
    let serials: Vec<&str> = revoked.revoked.iter().map(|c| c.serial.as_str()).collect();
    assert_eq!(serials, [serial.as_str()], "{o:?}");
    let list = cx.pki_list();
    let entry = list.iter().find(|c| c.serial == serial).unwrap();
    assert_eq!(entry.status, pki_c::CertificateStatus::Revoked, "{entry:?}");
    // The republished CRL names it.
    let v = openssl_verify(&pki_state, &cert, true);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        !v.status.success() && text.contains("revoked"),
        "openssl verify -crl_check after revocation: {text}"
    );
}

fn attest_status(cx: &mut Ctx) {
    let o = cx.run("attest.status", &[]);
    let st: attest_c::Status = Ctx::typed(&o, 0, "Attestation1.Status");
    assert!(st.consistent, "{st:?}");
    assert!(st.events >= 1, "{st:?}");
}

fn refusals(cx: &mut Ctx) {
    let records_before = cx.audit_verify().records;
    let nft_before = cx.nft();
    let domains_before = cx.domain_names();
    let certs_before = cx.pki_list().len();

    // Unknown playbook id.
    let r = cx.ask_raw("dns.add_everything", &[("name", "x.home.arpa")], true);
    let m = r.refused("InvalidArgument");
    assert!(
        m.contains("dns.add_everything") && m.contains("not in the signed catalog"),
        "{m}"
    );

    // Missing required parameter (address).
    let r = cx.ask_raw("dns.add_record", &[("name", "ref1.home.arpa")], true);
    let m = r.refused("InvalidArgument");
    assert!(m.contains("address"), "{m}");
    assert_eq!(cx.dig("ref1.home.arpa", "A"), "");

    // Invalid value.
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "ref2.home.arpa"), ("address", "999.1.1.1")],
        true,
    );
    let m = r.refused("InvalidArgument");
    assert!(m.contains("999.1.1.1") && m.contains("address"), "{m}");
    assert_eq!(cx.dig("ref2.home.arpa", "A"), "");

    // An invalid name.
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "bad name!"), ("address", "10.0.0.1")],
        true,
    );
    let m = r.refused("InvalidArgument");
    assert!(m.contains("name"), "{m}");

    // An out-of-range integer.
    let r = cx.ask_raw(
        "pki.issue_certificate",
        &[("name", "ref3.home.arpa"), ("days", "999")],
        true,
    );
    let m = r.refused("InvalidArgument");
    assert!(m.contains("days") && m.contains("999"), "{m}");

    // An existing-domain parameter naming no domain.
    let r = cx.ask_raw("net.allow", &[("from", "nosuch"), ("to", "lan")], true);
    let m = r.refused("InvalidArgument");
    assert!(m.contains("nosuch"), "{m}");

    // A new-domain parameter naming an existing one.
    let r = cx.ask_raw("net.create_domain", &[("domain", "lan")], true);
    let m = r.refused("InvalidArgument");
    assert!(m.contains("lan"), "{m}");

    // A plan whose dry run the daemon refuses is not offered: deleting the
    // protected admin domain, asked as a structured intent (the interpreter
    // would refuse the text itself), is refused with hearth-netd's reason
    // instead of waiting for a confirmation that could only fail.
    let r = cx.ask_raw("net.delete_domain", &[("domain", "admin")], false);
    let m = r.refused("InvalidArgument");
    assert!(
        m.contains("net.DeleteDomain would fail") && m.contains("admin"),
        "{m}"
    );
    assert!(cx.bridge_exists("hb-admin"));

    // A text request with several actions: the gate (with the real models
    // loaded) refuses it as a whole and nothing runs.
    let r = cx.ctl(&[
        "ask",
        "add DNS record multi.home.arpa to 10.0.0.9 and delete the guest domain",
        "--yes",
    ]);
    let m = r.refused("InvalidArgument");
    assert!(m.starts_with("refused:"), "{m}");
    assert_eq!(cx.dig("multi.home.arpa", "A"), "");
    assert!(cx.bridge_exists("hb-guest"));

    // Nothing changed anywhere.
    assert_eq!(cx.nft(), nft_before, "the ruleset is unchanged");
    assert_eq!(cx.domain_names(), domains_before);
    assert_eq!(cx.pki_list().len(), certs_before);
    assert!(!cx.bridge_exists("hb-nosuch"));
    let v = cx.audit_verify();
    assert!(v.ok, "{v:?}");
    // Refusals are audited (records grow) but nothing ran.
    assert!(v.records >= records_before, "{v:?}");
}

/// A request that only asks about a change gets a clarifying question (the
/// trained interpreter, through the gate and the CLI): nothing runs until
/// one option is chosen, and the chosen one then runs as a structured
/// intent.
fn clarify(cx: &mut Ctx) {
    let question = "should I allow traffic from cams to lan?";
    let nft_before = cx.nft();
    let r = cx.ctl(&["ask", question]);
    assert!(!r.ok, "a question is not a plan that ran: {r:?}");
    let Answer::Clarify(c) = r.get::<Answer>() else {
        panic!("a clarifying question: {r:?}");
    };
    // The plan asked about is among the options (the others: the other
    // direction or the opposite playbook, when the model is not sure).
    let param = |o: &intent_c::ClarifyOption, name: &str| {
        o.params
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let n = 1 + c
        .options
        .iter()
        .position(|o| {
            o.playbook == "net.allow" && param(o, "from") == "cams" && param(o, "to") == "lan"
        })
        .unwrap_or_else(|| panic!("net.allow cams -> lan offered: {r:?}"));
    let n = n.to_string();
    assert_eq!(cx.nft(), nft_before, "nothing changed before a choice");
    assert_eq!(cx.reach("cams", "lan"), Reach::Nothing);

    // The owner picks that option.
    let r = cx.ctl(&["ask", "--choose", &n, "--yes", question]);
    cx.note(&r);
    assert!(r.ok, "{r:?}");
    let o = r.outcome();
    assert_eq!(o.status, Status::Executed, "{r:?}");
    assert_eq!(o.plan.playbook.id, "net.allow", "{r:?}");
    assert_eq!(cx.reach("cams", "lan"), Reach::All);
    assert_ne!(cx.nft(), nft_before);

    // A choice that is not offered is a usage error; nothing runs.
    let r = cx.ctl(&["ask", "--choose", "9", question]);
    assert!(!r.ok, "{r:?}");
    cx.run("net.revoke", &[("from", "cams"), ("to", "lan")]);
    assert_eq!(cx.nft(), nft_before);
}

/// The signed language file (scripts/sign-catalog's
/// hearth-language.dsse.json) was measured at start like the playbooks;
/// taken out of the catalog (and the catalog reloaded), plain language is
/// refused with the reason naming it while a structured intent still runs;
/// put back, the text path answers again.
fn language_file(cx: &mut Ctx, catalog: &Path) {
    const FILE: &str = hearth_playbook::catalog::LANGUAGE_FILE;
    let file = catalog.join(FILE);
    let sha = hearth_playbook::dsse::sha256_hex(&fs::read(&file).unwrap());
    let r = cx.ctl(&["attest", "log"]);
    assert!(r.ok, "attest log: {r:?}");
    let log: Vec<attest_c::Event> = r.get();
    assert!(
        log.iter()
            .any(|e| e.content.kind == MeasurementKind::PlaybookCatalog
                && e.content.name == FILE
                && e.content.sha256 == sha),
        "the language file is measured at start: {log:?}"
    );

    let reload = |cx: &Ctx| {
        let out = Command::new("busctl")
            .arg(format!("--address={}", cx.bus))
            .args([
                "call",
                "org.hearth.Intent1",
                "/org/hearth/Intent1",
                "org.hearth.Intent1",
                "ReloadCatalog",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "ReloadCatalog: {out:?}");
    };
    let away = catalog.join(".language-away");
    fs::rename(&file, &away).unwrap();
    reload(cx);
    let question = "should I allow traffic from cams to lan?";
    let m = cx.ctl(&["ask", question]).refused("InvalidArgument");
    assert!(
        m.contains("plain-language requests are refused") && m.contains(FILE),
        "{m}"
    );
    let o = cx.run("net.show", &[]);
    assert_eq!(o.status, Status::Executed, "a structured intent still runs");

    fs::rename(&away, &file).unwrap();
    reload(cx);
    let r = cx.ctl(&["ask", question]);
    assert!(
        matches!(r.get::<Answer>(), Answer::Clarify(_)),
        "text is served again: {r:?}"
    );
}

fn outsider(cx: &Ctx, args: &[String]) -> Run {
    as_user(
        cx,
        &["--reuid=65534", "--regid=65534", "--clear-groups"],
        args,
    )
}

/// A member of the operators group only (not an admin) for hearth-intentd;
/// the other daemons do not know that group.
fn operator(cx: &Ctx, args: &[String]) -> Run {
    let gid = format!("--regid={OPERATORS_GID}");
    let groups = format!("--groups={OPERATORS_GID}");
    // nobody's uid (the bus daemon refuses a uid without a passwd entry),
    // with the operators group instead of nogroup.
    as_user(cx, &["--reuid=65534", &gid, &groups], args)
}

fn as_user(cx: &Ctx, ids: &[&str], args: &[String]) -> Run {
    let out = Command::new("setpriv")
        .args(ids)
        .arg("--")
        .arg(&cx.hearthctl)
        .arg("--json")
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &cx.bus)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

fn policy(cx: &mut Ctx) {
    // An outsider (nobody, no groups) is refused by name, for a destructive
    // request and even a read; nothing runs.
    let r = outsider(
        cx,
        &Ctx::ask_args("net.delete_domain", &[("domain", "guest")], true),
    );
    let m = r.refused("NotAuthorized");
    assert!(m.contains("65534"), "{m}");
    assert!(cx.bridge_exists("hb-guest"), "guest survives the outsider");
    let r = outsider(
        cx,
        &Ctx::ask_args("dns.remove_record", &[("name", "nas.home.arpa")], true),
    );
    r.refused("NotAuthorized");
    assert_eq!(cx.dig("nas.home.arpa", "A"), "192.168.1.20");
    let r = outsider(cx, &Ctx::ask_args("net.show", &[], true));
    r.refused("NotAuthorized");

    // Without --yes, as JSON (a script): the plan is left pending, waiting
    // for the requester's confirmation; nothing ran.
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "pend.home.arpa"), ("address", "10.9.9.9")],
        false,
    );
    assert!(r.ok, "{r:?}");
    let o = r.outcome();
    assert_eq!(o.status, Status::Pending, "{r:?}");
    assert!(
        o.missing
            .iter()
            .any(|m| m.contains("requester's confirmation")),
        "{r:?}"
    );
    let plan_id = o.plan.plan_id;
    assert_eq!(cx.dig("pend.home.arpa", "A"), "", "a pending plan ran");
    assert!(cx.pending().contains(&plan_id), "{:?}", cx.pending());
    // The outsider can neither confirm nor cancel it.
    let r = outsider(cx, &["playbook".into(), "confirm".into(), plan_id.clone()]);
    r.refused("NotAuthorized");
    assert_eq!(cx.dig("pend.home.arpa", "A"), "");
    // The requester cancels it: still nothing ran, and it is gone.
    cx.ctl(&["playbook", "cancel", &plan_id]).cancelled();
    assert_eq!(cx.dig("pend.home.arpa", "A"), "");
    assert!(!cx.pending().contains(&plan_id), "{:?}", cx.pending());
    let c = cx.ctl(&["playbook", "confirm", &plan_id]);
    c.refused("NotFound");
    assert_eq!(cx.dig("pend.home.arpa", "A"), "");

    // Without --yes for people (no --json) and no terminal on stdin: the
    // CLI does not ask, cancels the plan and exits non-zero.
    let mut a = Ctx::ask_args(
        "dns.add_record",
        &[("name", "pend2.home.arpa"), ("address", "10.9.9.8")],
        false,
    );
    let mut cmd = Command::new(&cx.hearthctl);
    cmd.args(a.drain(..))
        .env("DBUS_SYSTEM_BUS_ADDRESS", &cx.bus)
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(stdout.contains("no terminal to confirm on"), "{stdout}");
    assert!(stdout.contains("--yes"), "{stdout}");
    assert!(stdout.contains("Cancelled; nothing ran."), "{stdout}");
    // The plan is printed once, not before and again after.
    let shown = format!("{stdout}{stderr}").matches("Plan ").count();
    assert_eq!(shown, 1, "{stdout}{stderr}");
    assert_eq!(cx.dig("pend2.home.arpa", "A"), "");

    // A destructive request without --yes waits too (for the requester,
    // here an admin whose confirmation also counts as the admin's).
    let r = cx.ask_raw("net.delete_domain", &[("domain", "cams")], false);
    let o = r.outcome();
    assert_eq!(o.status, Status::Pending, "{r:?}");
    assert_eq!(o.plan.approval, Approval::Admin, "{r:?}");
    assert!(cx.bridge_exists("hb-cams"), "a pending delete ran");
    let plan_id = o.plan.plan_id;
    let c = cx.ctl(&["playbook", "confirm", &plan_id]);
    cx.note(&c);
    assert_eq!(c.outcome().status, Status::Executed, "{c:?}");
    assert!(!cx.bridge_exists("hb-cams"), "confirmed delete ran");
    assert!(!cx.nft().contains("hb-cams"));

    operator_policy(cx);
    operator_rights_through_the_gate(cx);
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// An operator (not an admin): the other daemons let only admins change, so
/// the gate refuses the operator every change (see
/// `operator_rights_through_the_gate`); the operator can neither approve a
/// plan nor confirm or cancel someone else's.
fn operator_policy(cx: &mut Ctx) {
    let who = operator(cx, &s(&["playbook", "list"]));
    assert!(who.ok, "the operator reaches the daemons: {who:?}");

    // hearth-dnsd lets only admins change records: the gate refuses the
    // operator a change, and a destructive request, before anything runs.
    let r = operator(
        cx,
        &Ctx::ask_args(
            "dns.add_record",
            &[("name", "op.home.arpa"), ("address", "10.4.4.4")],
            true,
        ),
    );
    let m = r.refused("NotAuthorized");
    assert!(m.contains("step 1 (dns.AddRecord"), "{m}");
    assert_eq!(cx.dig("op.home.arpa", "A"), "");
    let r = operator(
        cx,
        &Ctx::ask_args("dns.remove_record", &[("name", "nas.home.arpa")], true),
    );
    r.refused("NotAuthorized");
    assert_eq!(cx.dig("nas.home.arpa", "A"), "192.168.1.20");

    // Root's destructive plan, not yet confirmed: the operator cannot
    // approve it; root's own confirmation runs it.
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "op.home.arpa"), ("address", "10.4.4.4")],
        true,
    );
    assert_eq!(r.outcome().status, Status::Executed, "{r:?}");
    let r = cx.ask_raw("dns.remove_record", &[("name", "op.home.arpa")], false);
    let o = r.outcome();
    assert_eq!(o.status, Status::Pending, "{r:?}");
    let plan_id = o.plan.plan_id;
    let a = operator(cx, &s(&["playbook", "approve", &plan_id]));
    a.refused("NotAuthorized");
    assert_eq!(cx.dig("op.home.arpa", "A"), "10.4.4.4");
    let a = cx.ctl(&["playbook", "confirm", &plan_id]);
    cx.note(&a);
    assert_eq!(a.outcome().status, Status::Executed, "{a:?}");
    assert_eq!(cx.dig("op.home.arpa", "A"), "");

    // Root's pending plan: the operator can neither confirm nor cancel it.
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "rootp.home.arpa"), ("address", "10.4.4.5")],
        false,
    );
    let o = r.outcome();
    assert_eq!(o.status, Status::Pending, "{r:?}");
    let plan_id = o.plan.plan_id;
    operator(cx, &s(&["playbook", "confirm", &plan_id])).refused("NotAuthorized");
    operator(cx, &s(&["playbook", "cancel", &plan_id])).refused("NotAuthorized");
    assert_eq!(cx.dig("rootp.home.arpa", "A"), "");
    cx.ctl(&["playbook", "cancel", &plan_id]).cancelled();
    assert_eq!(cx.dig("rootp.home.arpa", "A"), "");
}

/// The gate is no deputy: a step runs only if its daemon would let the
/// requester make the call directly. An operator (not an admin) whom
/// hearth-netd refuses an allow into the admin domain is refused the same
/// allow through `net.allow` at planning time: nothing runs, the table is
/// unchanged, the refusal is audited. Root (an admin) still gets it.
fn operator_rights_through_the_gate(cx: &mut Ctx) {
    let nft_before = cx.nft();
    let into_admin = |show: &net_c::Show| {
        show.allows
            .iter()
            .any(|a| a.from.as_str() == "lan" && a.to.as_str() == "admin")
    };
    assert!(!into_admin(&cx.net_show()), "lan -> admin already allowed");

    // Directly: hearth-netd refuses the operator.
    let r = operator(cx, &s(&["net", "allow", "lan", "admin"]));
    r.refused("NotAuthorized");
    assert_eq!(cx.nft(), nft_before, "a refused direct allow changed nft");

    // Through the gate, confirmed with --yes: refused before anything runs,
    // naming the step and the rule.
    let r = operator(
        cx,
        &Ctx::ask_args("net.allow", &[("from", "lan"), ("to", "admin")], true),
    );
    cx.note(&r);
    let m = r.refused("NotAuthorized");
    assert!(m.contains("step 1") && m.contains("net.Allow"), "{m}");
    assert!(m.contains("65534") && m.contains("admin"), "{m}");
    assert_eq!(cx.nft(), nft_before, "the gate ran the operator's allow");
    assert!(!into_admin(&cx.net_show()));
    let text = fs::read_to_string(cx.audit_log()).unwrap();
    let last: intent_c::AuditRecord = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last.event.kind, "refused", "{last:?}");
    assert_eq!(last.event.caller_uid, Some(65534), "{last:?}");
    let reason = last.event.details.get("reason").and_then(Value::as_str);
    assert!(reason.is_some_and(|r| r.contains("net.Allow")), "{last:?}");

    // Root (an admin) may: the same plan runs.
    cx.run("net.allow", &[("from", "lan"), ("to", "admin")]);
    assert!(into_admin(&cx.net_show()));
    assert_ne!(cx.nft(), nft_before);
    let r = cx.ctl(&["net", "revoke", "lan", "admin"]);
    assert!(r.ok, "{r:?}");
    assert_eq!(cx.nft(), nft_before);
}

/// A custom playbook, signed with the build/test vendor key and installed:
/// the first step adds an address record, the second adds an alias on the
/// same name, which hearth-dnsd refuses (a name with records). The gate must
/// undo the first step.
const ROLLBACK_DNS: &str = r#"
id = "test.rollback_dns"
version = 1
description = "Test only: add an address record, then an alias on the same name (refused by hearth-dnsd)."
risk = "change"
examples = ["test the rollback of a DNS record"]

[[params]]
name = "name"
type = "dns-name"
description = "the name"

[[params]]
name = "address"
type = "ip-address"
description = "its address"

[[steps]]
call = "dns.AddRecord"
args = { name = "{name}", address = "{address}" }
undo = { call = "dns.RemoveRecord", args = { name = "{name}", address = "{address}" } }

[[steps]]
call = "dns.AddAlias"
args = { name = "{name}", target = "nas.home.arpa" }
undo = { call = "dns.Remove", args = { name = "{name}" } }
"#;

/// The same with the network: create a domain, then allow it to reach a
/// domain that does not exist (a literal argument, so the gate's parameter
/// check cannot refuse it; hearth-netd does).
const ROLLBACK_NET: &str = r#"
id = "test.rollback_net"
version = 1
description = "Test only: create a domain, then allow it to reach a domain that does not exist (refused by hearth-netd)."
risk = "change"
examples = ["test the rollback of a network domain"]

[[params]]
name = "domain"
type = "new-domain"
description = "the new domain"

[[steps]]
call = "net.CreateDomain"
args = { name = "{domain}", subnet = "" }
undo = { call = "net.DeleteDomain", args = { name = "{domain}" } }

[[steps]]
call = "net.Allow"
args = { from = "{domain}", to = "nosuchdomain", port = 0, protocol = "" }
undo = { call = "net.Revoke", args = { from = "{domain}", to = "nosuchdomain" } }
"#;

fn rollback(cx: &mut Ctx, real_repo: &Path, tmp: &Path) {
    let src = tmp.join("custom");
    let signed = tmp.join("signed");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&signed).unwrap();
    fs::write(src.join("test.rollback_dns.toml"), ROLLBACK_DNS).unwrap();
    fs::write(src.join("test.rollback_net.toml"), ROLLBACK_NET).unwrap();
    let keys = real_repo.join(".build-keys");
    let out = Command::new(cx.bin_dir.join("hearth-playbook"))
        .arg("sign")
        .arg("--key")
        .arg(keys.join("signer.key"))
        .arg("--chain")
        .arg(keys.join("signer.pem"))
        .arg("--out")
        .arg(&signed)
        .arg(src.join("test.rollback_dns.toml"))
        .arg(src.join("test.rollback_net.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "hearth-playbook sign: {out:?}");
    for id in ["test.rollback_dns", "test.rollback_net"] {
        let f = signed.join(format!("{id}.dsse.json"));
        let r = cx.ctl(&["playbook", "install", f.to_str().unwrap()]);
        assert!(r.ok, "playbook install {id}: {r:?}");
        // An outsider may not install.
        let r = outsider(
            cx,
            &["playbook".into(), "install".into(), f.display().to_string()],
        );
        r.refused("NotAuthorized");
    }

    // DNS: the record of step 1 is gone after step 2 failed.
    assert_eq!(cx.dig("rb.home.arpa", "A"), "");
    let r = cx.ask_raw(
        "test.rollback_dns",
        &[("name", "rb.home.arpa"), ("address", "10.6.6.6")],
        true,
    );
    assert!(!r.ok, "a failed plan exits non-zero: {r:?}");
    let o = r.outcome();
    assert_eq!(o.status, Status::Failed, "{r:?}");
    let [first, second] = &o.steps[..] else {
        panic!("two steps ran: {r:?}");
    };
    assert!(first.ok && !second.ok, "{r:?}");
    let [undo] = &o.rollback[..] else {
        panic!("one undo call: {r:?}");
    };
    assert_eq!(undo.call, "dns.RemoveRecord", "{r:?}");
    assert!(undo.ok, "{r:?}");
    assert!(o.error.is_some_and(|e| !e.is_empty()), "{r:?}");
    assert_eq!(cx.dig("rb.home.arpa", "A"), "", "step 1 was undone");
    assert_eq!(cx.dig("rb.home.arpa", "CNAME"), "");
    assert_eq!(cx.dig("nas.home.arpa", "A"), "192.168.1.20");

    // Network: the bridge of step 1 is gone after step 2 failed.
    assert!(!cx.bridge_exists("hb-rbnet"));
    let r = cx.ask_raw("test.rollback_net", &[("domain", "rbnet")], true);
    let o = r.outcome();
    assert_eq!(o.status, Status::Failed, "{r:?}");
    let [undo] = &o.rollback[..] else {
        panic!("one undo call: {r:?}");
    };
    assert_eq!(undo.call, "net.DeleteDomain", "{r:?}");
    assert!(undo.ok, "{r:?}");
    assert!(!cx.bridge_exists("hb-rbnet"), "step 1 was undone");
    assert!(!cx.nft().contains("hb-rbnet"), "{}", cx.nft());
    assert!(!cx.domain_names().contains(&"rbnet".to_string()));
}

/// An admin signs a new version of a default playbook with the
/// playbook-signer key held in the HSM (through hearth-pkid), installs it,
/// and runs it; the older, vendor-signed version can then no longer be
/// installed (anti-rollback).
fn signed_in_the_hsm(cx: &mut Ctx, real_repo: &Path, tmp: &Path) {
    let src = tmp.join("hsm-src");
    let out = tmp.join("hsm-signed");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&out).unwrap();
    let v1 = fs::read_to_string(real_repo.join("catalog/dns.add_record.toml")).unwrap();
    assert!(
        v1.contains("\nversion = 1\n"),
        "dns.add_record is at version 1"
    );
    let file = src.join("dns.add_record.toml");
    fs::write(&file, v1.replace("\nversion = 1\n", "\nversion = 2\n")).unwrap();
    let r = cx.ctl(&[
        "playbook",
        "sign",
        "--pkid",
        "--out",
        out.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(r.ok, "playbook sign --pkid: {r:?}");
    let envelope = out.join("dns.add_record.dsse.json");
    let env: Envelope = serde_json::from_str(&fs::read_to_string(&envelope).unwrap()).unwrap();
    let [signature] = &env.signatures[..] else {
        panic!("one signature: {env:?}");
    };
    assert!(
        signature.cert_chain.len() >= 2,
        "the envelope carries the signer's chain: {env:?}"
    );
    // An outsider may not sign with the appliance's key.
    let r = outsider(
        cx,
        &s(&[
            "playbook",
            "sign",
            "--pkid",
            "--out",
            out.to_str().unwrap(),
            file.to_str().unwrap(),
        ]),
    );
    assert!(!r.ok, "an outsider signed: {r:?}");

    let r = cx.ctl(&["playbook", "install", envelope.to_str().unwrap()]);
    assert!(r.ok, "install the HSM-signed v2: {r:?}");
    let installed: intent_c::Summary = r.get();
    assert_eq!(
        (installed.id.as_str(), installed.version),
        ("dns.add_record", 2)
    );
    assert_eq!(cx.playbook_version("dns.add_record"), 2, "v2 is in force");
    let r = cx.ask_raw(
        "dns.add_record",
        &[("name", "hsm.home.arpa"), ("address", "10.9.9.9")],
        true,
    );
    assert!(r.ok, "v2 runs: {r:?}");
    assert_eq!(cx.dig("hsm.home.arpa", "A"), "10.9.9.9");

    // The vendor-signed v1 is validly signed but older: refused.
    let old = real_repo.join("build/catalog/dns.add_record.dsse.json");
    let r = cx.ctl(&["playbook", "install", old.to_str().unwrap()]);
    assert!(!r.ok, "a rolled-back version was installed: {r:?}");
    assert_eq!(cx.playbook_version("dns.add_record"), 2, "v2 stays");
}

fn event_log(cx: &mut Ctx) {
    let r = cx.ctl(&["attest", "log"]);
    assert!(r.ok, "attest log: {r:?}");
    let log: Vec<attest_c::Event> = r.get();
    let actions: Vec<(String, String)> = log
        .into_iter()
        .filter(|e| e.content.kind == MeasurementKind::Action)
        .map(|e| (e.content.name, e.content.sha256))
        .collect();
    // Each plan that ran is measured twice, write-ahead: its intent record
    // before the first step (the record just before the outcome here, one
    // client asking at a time), then its outcome record.
    let want: Vec<String> = cx
        .measured
        .iter()
        .flat_map(|(id, seq, _)| [format!("{id}@{}", seq - 1), format!("{id}@{seq}")])
        .collect();
    assert!(want.len() >= 36, "{want:?}");
    let names: Vec<String> = actions.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        names, want,
        "an intent and an outcome entry per executed or failed plan, in order"
    );
    for (id, seq, hash) in &cx.measured {
        let name = format!("{id}@{seq}");
        assert!(
            actions.iter().any(|(n, h)| *n == name && h == hash),
            "{name}: the outcome record's hash {hash} is measured"
        );
    }
}

fn audit_tampering(cx: &mut Ctx) {
    let v = cx.audit_verify();
    assert!(v.ok, "{v:?}");
    let path = cx.audit_log();
    let original = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert_eq!(v.records as usize, lines.len(), "{v:?}");
    assert!(lines.len() >= 10);

    let broken = |cx: &Ctx, what: &str, text: String| {
        fs::write(&path, text).unwrap();
        let v = cx.audit_verify();
        assert!(!v.ok, "{what}: {v:?}");
        assert!(!v.problems.is_empty(), "{what}: {v:?}");
        fs::write(&path, &original).unwrap();
        let v = cx.audit_verify();
        assert!(v.ok, "restored after {what}: {v:?}");
    };

    // Edited: the first record's caller changes (still valid JSON).
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    assert!(edited[0].contains("\"caller_uid\":0"), "{}", edited[0]);
    edited[0] = edited[0].replacen("\"caller_uid\":0", "\"caller_uid\":1", 1);
    broken(cx, "edited", edited.join("\n") + "\n");

    // Edited in the middle: an address in a plan.
    let mid = lines.len() / 2;
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[mid] = edited[mid].replacen("\"caller_uid\":0", "\"caller_uid\":7", 1);
    assert_ne!(edited[mid], lines[mid]);
    broken(cx, "edited (middle)", edited.join("\n") + "\n");

    // Deleted: a record in the middle.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(mid);
    broken(cx, "deleted", deleted.join("\n") + "\n");

    // Deleted: the last record.
    let deleted = &lines[..lines.len() - 1];
    broken(cx, "deleted (last)", deleted.join("\n") + "\n");

    // Reordered: two neighbours swapped.
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(mid, mid + 1);
    broken(cx, "reordered", swapped.join("\n") + "\n");
}

/// With `two_person = true`, a destructive plan needs an admin other than
/// its requester: root's own confirmation does not run it; a second admin
/// (uid 65534 in the group made the admins group here) does.
#[test]
fn the_two_person_rule_needs_a_second_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    let real_repo = opts.repo.clone();
    opts.repo = repo_view(&real_repo, &tmp.path().join("repo"), |t| {
        assert!(t.contains("two_person = false"), "{t}");
        format!(
            "{}\n[access]\nadmins_group = \"{OPERATORS_GROUP}\"\n",
            t.replace("two_person = false", "two_person = true")
        )
    });
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let mut cx = Ctx {
        bus: sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone(),
        dns_port: sb.env["HEARTH_DNS_PORT"].clone(),
        sb,
        hearthctl: opts.bin_dir.join("hearthctl"),
        bin_dir: opts.bin_dir.clone(),
        measured: Vec::new(),
    };
    let r = cx.ask_raw("net.delete_domain", &[("domain", "guest")], true);
    let o = r.outcome();
    assert_eq!(o.status, Status::Pending, "{r:?}");
    let plan_id = o.plan.plan_id;
    assert!(
        cx.bridge_exists("hb-guest"),
        "a two-person plan ran at once"
    );
    // The requester approving their own plan is not a second person.
    let a = cx.ctl(&["playbook", "approve", &plan_id]);
    assert!(
        a.error().is_some() || a.outcome().status != Status::Executed,
        "{a:?}"
    );
    assert!(
        cx.bridge_exists("hb-guest"),
        "one admin ran a two-person plan"
    );
    // A second admin approves: it runs.
    let a = operator(&cx, &s(&["playbook", "approve", &plan_id]));
    cx.note(&a);
    assert_eq!(a.outcome().status, Status::Executed, "{a:?}");
    assert!(!cx.bridge_exists("hb-guest"), "the approved delete ran");
    assert!(!cx.nft().contains("hb-guest"));
    cx.sb.teardown();
}

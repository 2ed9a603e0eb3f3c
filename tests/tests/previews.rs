//! What a person sees before and after a change, against the real
//! daemons: for the default catalog's change playbooks, the plan printed
//! by `hearthctl ask` without a terminal (nothing runs) carries the
//! daemon's own diff in one line and in `--json`, and the diff lists
//! exactly what the kernel's table, `dig` or the CA then show changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hearth_common::contract::dns::ZoneDiff;
use hearth_common::contract::intent::{Ended, Outcome, PreviewAnswer, Status};
use hearth_common::contract::network::{Domain, NetChange};
use hearth_common::contract::pki::{CertificateStatus, CertificateSummary};
use hearth_testbed::{Options, Sandbox};
use serde::de::DeserializeOwned;
use serde_json::Value;

struct Cx {
    sb: Sandbox,
    hearthctl: PathBuf,
    bus: String,
    dns_port: String,
}

struct Run {
    ok: bool,
    stdout: String,
    text: String,
}

impl Run {
    /// The `--json` document read as `T`, the type hearthctl printed.
    fn get<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not a {}: {e}: {}", std::any::type_name::<T>(), self.text))
    }
}

impl Cx {
    fn ctl(&self, json: bool, args: &[&str]) -> Run {
        let mut c = Command::new(&self.hearthctl);
        if json {
            c.arg("--json");
        }
        let out = c
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null())
            .output()
            .expect("hearthctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        Run {
            ok: out.status.success(),
            text: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            stdout,
        }
    }

    fn ask_args(id: &str, params: &[(&str, &str)]) -> Vec<String> {
        let mut a = vec!["ask".to_string(), "--playbook".into(), id.into()];
        for (k, v) in params {
            a.push("--param".into());
            a.push(format!("{k}={v}"));
        }
        a
    }

    /// The plan shown without a terminal and without --yes: nothing runs.
    /// Returns the text and the first preview: the daemon's answer to the
    /// dry run, the JSON of its change type.
    fn preview(&self, id: &str, params: &[(&str, &str)]) -> (String, Value) {
        let a = Self::ask_args(id, params);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let shown = self.ctl(false, &a);
        assert!(!shown.ok, "ran without a confirmation: {}", shown.text);
        assert!(shown.text.contains("Not run"), "{}", shown.text);
        assert_eq!(
            shown.text.matches("Plan ").count(),
            1,
            "the plan is printed once: {}",
            shown.text
        );
        // With --json and no --yes the pending plan is the answer: it
        // waits for a confirmation, so it is cancelled here.
        let j = self.ctl(true, &a);
        let o: Outcome = j.get();
        assert_eq!(o.status, Status::Pending, "{}", j.text);
        let p = match o.plan.preview.first().map(|p| &p.preview) {
            Some(PreviewAnswer::Answer(v)) if v.is_object() => v.clone(),
            other => panic!("a preview in --json, not {other:?}: {}", j.text),
        };
        let c = self.ctl(true, &["playbook", "cancel", &o.plan.plan_id]);
        assert!(
            matches!(c.get::<Ended>(), Ended::Outcome(o) if o.status == Status::Cancelled),
            "{}",
            c.text
        );
        (shown.text, p)
    }

    /// Runs it with --yes; returns the outcome.
    fn run(&self, id: &str, params: &[(&str, &str)]) -> Outcome {
        let mut a = Self::ask_args(id, params);
        a.push("--yes".into());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = self.ctl(true, &a);
        assert!(r.ok, "{}", r.text);
        let o: Outcome = r.get();
        assert_eq!(o.status, Status::Executed, "{}", r.text);
        o
    }

    /// `hearthctl --json pki list`.
    fn certificates(&self) -> Vec<CertificateSummary> {
        let r = self.ctl(true, &["pki", "list"]);
        assert!(r.ok, "{}", r.text);
        r.get()
    }

    fn nft(&self) -> BTreeSet<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.sb.netns, "nft", "list", "table"])
            .args(["inet", "hearth"])
            .output()
            .expect("nft");
        assert!(out.status.success(), "nft: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split([',', '\n', '{', '}'])
            .map(|s| s.trim().to_string())
            // The table's comment names the ruleset's digest: not a rule.
            .filter(|s| !s.is_empty() && !s.starts_with("comment "))
            .collect()
    }

    fn bridge(&self, name: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.sb.netns, "link", "show", name])
            .output()
            .expect("ip")
            .status
            .success()
    }

    fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("dig")
            .args(["+short", "+time=2", "+tries=2", "@127.0.0.1", "-p"])
            .arg(&self.dns_port)
            .args([name, rtype])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn new_elements(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    after.difference(before).cloned().collect()
}

#[test]
fn previews_say_in_one_line_exactly_what_then_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(
        [
            "hearth-pkid",
            "hearth-attestd",
            "hearth-netd",
            "hearth-dnsd",
            "hearth-intentd",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let cx = Cx {
        bus: sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone(),
        dns_port: sb.env["HEARTH_DNS_PORT"].clone(),
        hearthctl: opts.bin_dir.join("hearthctl"),
        sb,
    };

    // A new domain: the preview names its bridge and subnet, which the
    // kernel then has.
    let (text, p) = cx.preview("net.create_domain", &[("domain", "lab")]);
    let diff: NetChange = serde_json::from_value(p).unwrap();
    let made = &diff.domains_created[0];
    assert!(
        text.contains(&format!(
            "Creates domain lab (bridge hb-lab, {}",
            made.subnet
        )),
        "{text}"
    );
    assert!(!cx.bridge("hb-lab"), "the preview created nothing");
    cx.run("net.create_domain", &[("domain", "lab")]);
    assert!(cx.bridge("hb-lab"));
    let listed = cx.ctl(true, &["net", "list"]);
    let domains: Vec<Domain> = listed.get();
    let lab = domains
        .iter()
        .find(|d| d.name.as_str() == "lab")
        .unwrap_or_else(|| panic!("lab in net list: {}", listed.text));
    assert_eq!(lab.subnet, made.subnet);

    // An allow: one flow opened, and exactly one element more in the table.
    let params = [("from", "lab"), ("to", "lan"), ("port", "8080")];
    let (text, p) = cx.preview("net.allow", &params);
    assert!(
        text.contains("Opens lab → lan tcp/8080. Nothing else changes."),
        "{text}"
    );
    let diff: NetChange = serde_json::from_value(p).unwrap();
    assert_eq!(diff.opened.len(), 1);
    let before = cx.nft();
    let out = cx.run("net.allow", &params);
    let added = new_elements(&before, &cx.nft());
    assert_eq!(
        added,
        vec!["\"hb-lab\" . \"hb-lan\" . tcp . 8080".to_string()],
        "{out:?}"
    );
    // The same allow again changes nothing, and says so.
    let (text, _) = cx.preview("net.allow", &params);
    assert!(text.contains("Nothing changes."), "{text}");

    // A revoke closes that flow, and the element goes.
    let params = [("from", "lab"), ("to", "lan")];
    let (text, _) = cx.preview("net.revoke", &params);
    assert!(
        text.contains("Closes lab → lan tcp/8080. Nothing else changes."),
        "{text}"
    );
    let before = cx.nft();
    cx.run("net.revoke", &params);
    let gone: Vec<String> = before.difference(&cx.nft()).cloned().collect();
    assert_eq!(
        gone,
        vec!["\"hb-lab\" . \"hb-lan\" . tcp . 8080".to_string()]
    );

    // A deletion names the bridge and subnet that then disappear.
    let (text, _) = cx.preview("net.delete_domain", &[("domain", "lab")]);
    assert!(
        text.contains(&format!(
            "Deletes domain lab (bridge hb-lab, {}",
            made.subnet
        )),
        "{text}"
    );
    cx.run("net.delete_domain", &[("domain", "lab")]);
    assert!(!cx.bridge("hb-lab"));

    // A DNS record: the record and the serial the zone then serves.
    let params = [("name", "preview.home.arpa"), ("address", "192.168.1.77")];
    let (text, p) = cx.preview("dns.add_record", &params);
    let diff: ZoneDiff = serde_json::from_value(p).unwrap();
    assert!(
        text.contains(&format!(
            "Adds A preview.home.arpa → 192.168.1.77 (zone {}, serial {} → {}).",
            diff.zone, diff.serial_before, diff.serial_after
        )),
        "{text}"
    );
    assert_eq!(
        cx.dig("preview.home.arpa", "A"),
        "",
        "the preview added nothing"
    );
    cx.run("dns.add_record", &params);
    assert_eq!(cx.dig("preview.home.arpa", "A"), "192.168.1.77");
    let soa = cx.dig(&diff.zone.to_string(), "SOA");
    let serial = soa.split_whitespace().nth(2).unwrap_or_default();
    assert_eq!(serial, diff.serial_after.to_string(), "SOA: {soa}");
    let (text, _) = cx.preview("dns.remove_record", &[("name", "preview.home.arpa")]);
    assert!(
        text.contains("Removes A preview.home.arpa → 192.168.1.77"),
        "{text}"
    );
    // An alias, then a new address for the name (two steps: the first
    // step's preview is the removal of the old record).
    let params = [("name", "alias.home.arpa"), ("target", "preview.home.arpa")];
    let (text, _) = cx.preview("dns.add_alias", &params);
    assert!(
        text.contains("Adds CNAME alias.home.arpa → preview.home.arpa"),
        "{text}"
    );
    cx.run("dns.add_alias", &params);
    assert!(
        cx.dig("alias.home.arpa", "CNAME")
            .starts_with("preview.home.arpa"),
        "{}",
        cx.dig("alias.home.arpa", "CNAME")
    );
    let params = [("name", "preview.home.arpa"), ("address", "192.168.1.78")];
    let (text, _) = cx.preview("dns.update_record", &params);
    assert!(
        text.contains("Removes A preview.home.arpa → 192.168.1.77"),
        "{text}"
    );
    cx.run("dns.update_record", &params);
    assert_eq!(cx.dig("preview.home.arpa", "A"), "192.168.1.78");

    // A certificate (no dry run in the CA): the outcome says what was
    // issued, and the CA's inventory holds that serial.
    let shown = cx.ctl(
        false,
        &[
            "ask",
            "--playbook",
            "pki.issue_certificate",
            "--param",
            "name=preview.home.arpa",
            "--yes",
        ],
    );
    assert!(shown.ok, "{}", shown.text);
    assert!(
        shown.text.contains("Issues certificate ") && shown.text.contains("for preview.home.arpa"),
        "{}",
        shown.text
    );
    let certs = cx.certificates();
    let listed_serial = certs.last().expect("a certificate").serial.clone();
    let issued_line = shown
        .text
        .lines()
        .find(|l| l.contains("Issues certificate"))
        .unwrap_or_default()
        .to_string();
    let short = hearth_common::contract::pki::short_serial(&listed_serial);
    assert!(
        issued_line.contains(&short),
        "{issued_line} vs {listed_serial}"
    );
    // Revoked: the outcome names the same certificate, and the CA's
    // inventory then says revoked.
    let revoked = cx.ctl(
        false,
        &[
            "ask",
            "--playbook",
            "pki.revoke_certificate",
            "--param",
            "name=preview.home.arpa",
            "--yes",
        ],
    );
    assert!(revoked.ok, "{}", revoked.text);
    assert!(
        revoked.text.contains(&format!(
            "Revokes certificate {short} for preview.home.arpa"
        )),
        "{}",
        revoked.text
    );
    let certs = cx.certificates();
    let it = certs
        .iter()
        .find(|c| c.serial == listed_serial)
        .unwrap_or_else(|| panic!("{listed_serial} in pki list: {certs:?}"));
    assert_eq!(it.status, CertificateStatus::Revoked, "{it:?}");
    let mut sb = cx.sb;
    sb.teardown();
}

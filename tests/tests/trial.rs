//! Trial runs against the real daemons: a change applied with
//! `hearthctl ask --trial` is reverted by hearth-intentd's own clock unless
//! kept, and a trial left by a killed daemon is reverted when it starts
//! again. The kernel's table (`nft list table inet hearth` in the sandbox's
//! namespace) is compared before and after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_testbed::{Options, Sandbox};
use serde_json::Value;

struct Cx {
    sb: Sandbox,
    hearthctl: PathBuf,
    bus: String,
}

impl Cx {
    fn ctl(&self, args: &[&str]) -> (bool, Value, String) {
        let out = Command::new(&self.hearthctl)
            .arg("--json")
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null())
            .output()
            .expect("hearthctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.success(), v, all)
    }

    fn nft(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.sb.netns, "nft", "list", "table"])
            .args(["inet", "hearth"])
            .output()
            .expect("nft");
        assert!(out.status.success(), "nft: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Asks for an allow on trial; returns the plan id.
    fn allow_on_trial(&self, from: &str, to: &str, port: &str, secs: &str) -> String {
        let (ok, v, all) = self.ctl(&[
            "ask",
            "--playbook",
            "net.allow",
            "--param",
            &format!("from={from}"),
            "--param",
            &format!("to={to}"),
            "--param",
            &format!("port={port}"),
            "--yes",
            "--trial",
            secs,
        ]);
        assert!(ok, "{all}");
        assert_eq!(v["status"], "trial", "{all}");
        assert!(v["trial_until_ms"].as_u64().is_some(), "{all}");
        v["plan"]["plan_id"].as_str().expect("plan id").to_string()
    }

    fn wait_for_table(&self, want: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.nft() == want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }

    fn audit_kinds(&self) -> Vec<String> {
        let (ok, v, all) = self.ctl(&["audit", "list", "--limit", "0"]);
        assert!(ok, "{all}");
        v.as_array()
            .expect("records")
            .iter()
            .map(|r| r["event"]["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[test]
fn trials_revert_by_themselves_stay_when_kept_and_survive_a_killed_daemon() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(
        ["hearth-attestd", "hearth-netd", "hearth-intentd"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    let sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let mut cx = Cx {
        bus: sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone(),
        hearthctl: opts.bin_dir.join("hearthctl"),
        sb,
    };

    // 1. A trial nobody keeps: applied, then reverted by the daemon alone;
    //    the table is the one from before, byte for byte.
    let before = cx.nft();
    let rule = "\"hb-iot\" . \"hb-lan\" . tcp . 8443";
    assert!(!before.contains(rule), "{before}");
    let id = cx.allow_on_trial("iot", "lan", "8443", "10");
    assert!(cx.nft().contains(rule), "applied: {}", cx.nft());
    let (ok, v, all) = cx.ctl(&["playbook", "trials"]);
    assert!(ok && v[0]["plan_id"] == id.as_str(), "{all}");
    assert!(
        cx.wait_for_table(&before, Duration::from_secs(30)),
        "not reverted: {}",
        cx.nft()
    );
    let kinds = cx.audit_kinds();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("reverted"),
        "{kinds:?}"
    );
    let (_, v, _) = cx.ctl(&["playbook", "trials"]);
    assert_eq!(v, serde_json::json!([]));

    // 2. A trial kept in time stays after its window.
    let id = cx.allow_on_trial("iot", "lan", "8443", "10");
    let (ok, v, all) = cx.ctl(&["playbook", "keep", &id]);
    assert!(ok && v["status"] == "kept", "{all}");
    std::thread::sleep(Duration::from_secs(12));
    assert!(cx.nft().contains(rule), "kept: {}", cx.nft());
    assert_eq!(cx.audit_kinds().last().map(String::as_str), Some("kept"));

    // 3. The daemon is killed during a trial (SIGKILL: no chance to clean
    //    up) and started again: the change is reverted at start.
    let before = cx.nft();
    let rule = "\"hb-guest\" . \"hb-lan\" . tcp . 631";
    cx.allow_on_trial("guest", "lan", "631", "3600");
    assert!(cx.nft().contains(rule), "applied: {}", cx.nft());
    let d = cx.sb.daemon("hearth-intentd").expect("intentd");
    d.child.kill().expect("SIGKILL");
    d.child.wait().expect("wait");
    cx.sb.restart("hearth-intentd").expect("restart");
    assert!(
        cx.wait_for_table(&before, Duration::from_secs(30)),
        "not reverted at start: {}",
        cx.nft()
    );
    let kinds = cx.audit_kinds();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("reverted"),
        "{kinds:?}"
    );
    let (ok, v, all) = cx.ctl(&["audit", "verify"]);
    assert!(ok && v["ok"] == true, "{all}");
    cx.sb.teardown();
}

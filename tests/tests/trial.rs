//! Trial runs against the real daemons: a change applied with
//! `hearthctl ask --trial` is reverted by hearth-intentd's own clock unless
//! kept, and a trial left by a killed daemon is reverted when it starts
//! again. The kernel's table (`nft list table inet hearth` in the sandbox's
//! namespace) is compared before and after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearth_common::contract::intent::{
    AuditRecord, Outcome, Status, Trial, TrialEnd, TrialStatus, Verification,
};
use hearth_testbed::{wait_until, Options, Sandbox};
use serde::de::DeserializeOwned;

/// How often hearth-intentd looks for trials whose window is over (its
/// ticker in `daemons/intentd/src/main.rs`): a trial is reverted within
/// one tick of its deadline.
const REVERT_TICK: Duration = Duration::from_secs(1);

struct Cx {
    sb: Sandbox,
    hearthctl: PathBuf,
    bus: String,
}

impl Cx {
    /// `hearthctl --json ARGS`, required to succeed, its document read as
    /// `T`, the contract type hearthctl printed.
    fn ctl<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let out = Command::new(&self.hearthctl)
            .arg("--json")
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null())
            .output()
            .expect("hearthctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "hearthctl {args:?}: {all}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "hearthctl {args:?}: not a {}: {e}: {all}",
                std::any::type_name::<T>()
            )
        })
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

    /// Asks for an allow on trial; returns the outcome, on trial.
    fn allow_on_trial(&self, from: &str, to: &str, port: &str, secs: &str) -> Outcome {
        let o: Outcome = self.ctl(&[
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
        assert_eq!(o.status, Status::Trial, "{o:?}");
        assert!(o.trial_until_ms.is_some(), "{o:?}");
        o
    }

    /// Waits until the table is `want` again.
    fn wait_for_table(&self, want: &str, what: &str, within: Duration) {
        wait_until(what, within, || Ok((self.nft() == want).then_some(())))
            .unwrap_or_else(|e| panic!("{e}: {}", self.nft()));
    }

    fn trials(&self) -> Vec<Trial> {
        self.ctl(&["playbook", "trials"])
    }

    /// Waits until the audit log's last record is of `kind`: the daemon
    /// writes the record after the revert's calls, so the table can be
    /// back a moment before the record is there.
    fn wait_for_audit(&self, kind: &str, within: Duration) {
        wait_until(&format!("a {kind} audit record"), within, || {
            Ok((self.audit_kinds().last().map(String::as_str) == Some(kind)).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", self.audit_kinds()));
    }

    fn audit_kinds(&self) -> Vec<String> {
        self.ctl::<Vec<AuditRecord>>(&["audit", "list", "--limit", "0"])
            .into_iter()
            .map(|r| r.event.kind)
            .collect()
    }
}

/// Sleeps until `margin` after the Unix-milliseconds instant `until_ms`.
fn sleep_past(until_ms: u64, margin: Duration) {
    let deadline = UNIX_EPOCH + Duration::from_millis(until_ms) + margin;
    if let Ok(left) = deadline.duration_since(SystemTime::now()) {
        std::thread::sleep(left);
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
    let o = cx.allow_on_trial("iot", "lan", "8443", "10");
    assert!(cx.nft().contains(rule), "applied: {}", cx.nft());
    let trials = cx.trials();
    let ids: Vec<&str> = trials.iter().map(|t| t.plan_id.as_str()).collect();
    assert_eq!(ids, [o.plan.plan_id.as_str()], "{trials:?}");
    assert_eq!(Some(trials[0].until_ms), o.trial_until_ms, "{trials:?}");
    cx.wait_for_table(&before, "the trial reverted", Duration::from_secs(30));
    cx.wait_for_audit("reverted", Duration::from_secs(30));
    assert!(cx.trials().is_empty(), "{:?}", cx.trials());

    // 2. A trial kept in time stays after its window: past the deadline
    //    the daemon returned, and the tick in which it would have reverted
    //    it (two ticks: the revert's own calls take time too).
    let o = cx.allow_on_trial("iot", "lan", "8443", "10");
    let id = o.plan.plan_id;
    let kept: TrialEnd = cx.ctl(&["playbook", "keep", &id]);
    assert_eq!(kept.status, TrialStatus::Kept, "{kept:?}");
    assert_eq!(kept.plan_id, id, "{kept:?}");
    assert!(cx.trials().is_empty(), "a kept trial is no longer listed");
    sleep_past(o.trial_until_ms.expect("trial_until_ms"), 2 * REVERT_TICK);
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
    cx.wait_for_table(
        &before,
        "the trial reverted at start",
        Duration::from_secs(30),
    );
    cx.wait_for_audit("reverted", Duration::from_secs(30));
    let v: Verification = cx.ctl(&["audit", "verify"]);
    assert!(v.ok, "{v:?}");
    cx.sb.teardown();
}

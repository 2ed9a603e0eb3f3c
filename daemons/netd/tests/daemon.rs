//! The hearth-netd binary on a private bus, inside its own network
//! namespace: org.hearth.Network1 end to end (dry runs, changes, named
//! errors, the Changed signal, restart). Run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use hearth_common::contract::network::{self as net_c, Flow, NetChange, Reach};
use hearth_common::proxies::network::NetworkProxy;
use hearth_common::types::DomainId;
use hearth_common::HearthError;

/// The project's private test bus (the shipped policy), stopped on drop.
type Bus = hearth_testbed::PrivateBus;

/// hearth-netd running in `ns`, started when READY=1 came (the testbed's
/// `Daemon::start`), stopped when dropped.
struct Daemon(hearth_testbed::Started);

impl Daemon {
    fn start(ns: &Netns, bus: &Bus, config: &Path, state: &Path, dir: &Path) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_hearth-netd")])
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("HEARTH_LOG", "info");
        Daemon(
            hearth_testbed::Daemon::start(hearth_common::names::NETWORK, cmd, dir)
                .unwrap_or_else(|e| panic!("hearth-netd: {e:#}")),
        )
    }

    /// SIGTERM: a clean stop is part of the contract.
    fn stop(mut self) {
        let status = self.0 .0.terminate(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "hearth-netd exited with {status}");
    }
}

/// The elements of the allow sets in `nft list table inet hearth`'s
/// output, each as `set: element`.
fn allow_elements(table: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for set in ["allow_any", "allow_proto", "allow_port"] {
        let Some(i) = table.find(&format!("set {set} {{")) else {
            continue;
        };
        let body = &table[i..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        let Some(j) = body.find("elements = {") else {
            continue;
        };
        for e in body[j + "elements = {".len()..].split(',') {
            let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
            if !e.is_empty() {
                out.insert(format!("{set}: {e}"));
            }
        }
    }
    out
}

/// The element a flow is in the table.
fn element_of(f: &Flow) -> String {
    let pair = format!("\"{}\" . \"{}\"", f.from.bridge_name(), f.to.bridge_name());
    match (f.protocol, f.port) {
        (None, None) => format!("allow_any: {pair}"),
        (Some(p), None) => format!("allow_proto: {pair} . {p}"),
        (Some(p), Some(port)) => format!("allow_port: {pair} . {p} . {port}"),
        (None, Some(_)) => panic!("the table has no such flow: {f}"),
    }
}

fn kind<T: std::fmt::Debug>(r: Result<T, HearthError>) -> (String, String) {
    let e = r.expect_err("should be refused");
    (e.kind().to_string(), e.message())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network1_previews_changes_refuses_bad_input_guards_the_table_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::start(dir.path()).unwrap();
    let ns = Netns::new("d");
    let config: PathBuf = dir.path().join("hearth-netd.toml");
    std::fs::write(
        &config,
        config_text("[[allow]]\nfrom = \"lan\"\nto = \"iot\"\n[access]\nroot_is_admin = true\n"),
    )
    .unwrap();
    let state = dir.path().join("state");
    let daemon = Daemon::start(&ns, &bus, &config, &state, dir.path());
    assert!(ns.ip(&["-o", "link", "show", "hb-lan"]).contains("hb-lan"));

    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let net = NetworkProxy::new(&conn).await.unwrap();
    let mut changed = net.receive_changed().await.unwrap();

    let domains = net_c::domains(&net).await.unwrap();
    assert_eq!(domains.len(), 4);
    assert_eq!(domains.iter().filter(|d| d.admin).count(), 1, "{domains:?}");

    // Dry run: the diff, and nothing in the kernel or the state.
    let preview = net_c::create_domain(&net, "cams", "", true).await.unwrap();
    assert!(preview.dry_run);
    assert_eq!(preview.domains_created.len(), 1, "{preview:?}");
    assert_eq!(
        preview.domains_created[0].subnet.to_string(),
        "10.62.0.0/24"
    );
    assert_eq!(preview.domains_created[0].bridge, "hb-cams");
    assert!(preview.opened.is_empty() && preview.closed.is_empty());
    assert!(!ns.ip(&["-o", "link", "show"]).contains("hb-cams"));
    assert!(!state.join(hearth_netd::engine::STATE_FILE).exists());

    // The real thing, with its signal.
    let done = net_c::create_domain(&net, "cams", "", false).await.unwrap();
    assert!(!done.dry_run);
    assert_eq!(done.domains_created, preview.domains_created);
    assert!(ns
        .ip(&["-o", "addr", "show", "hb-cams"])
        .contains("10.62.0.1/24"));
    let sig = tokio::time::timeout(Duration::from_secs(5), changed.next())
        .await
        .expect("Changed within 5 s")
        .unwrap();
    let args = sig.args().unwrap();
    assert_eq!(args.what, "create");
    let detail: NetChange = hearth_common::contract::decode("Changed", &args.detail).unwrap();
    assert_eq!(detail.domains_created[0].name.as_str(), "cams");

    // The diff of an Allow lists exactly the flow the table gains.
    let table_before = ns.nft_table().unwrap();
    let dry = net_c::allow(&net, "cams", "lan", 554, "tcp", true)
        .await
        .unwrap();
    assert_eq!(
        ns.nft_table().unwrap(),
        table_before,
        "a dry run changes nothing"
    );
    let a = net_c::allow(&net, "cams", "lan", 554, "tcp", false)
        .await
        .unwrap();
    assert_eq!(a.opened, dry.opened);
    assert_eq!(
        a.to_string(),
        "Opens cams → lan tcp/554. Nothing else changes."
    );
    let added = allow_elements(&ns.nft_table().unwrap())
        .difference(&allow_elements(&table_before))
        .cloned()
        .collect::<BTreeSet<String>>();
    let want = dry
        .opened
        .iter()
        .map(element_of)
        .collect::<BTreeSet<String>>();
    assert_eq!(
        added, want,
        "the table gained exactly the flows the dry run listed"
    );
    assert_eq!(want.len(), 1);
    // Repeating it changes nothing, and says so.
    let table_now = ns.nft_table().unwrap();
    let again = net_c::allow(&net, "cams", "lan", 554, "tcp", false)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(again.to_string(), "Nothing changes.");
    let again = net_c::allow(&net, "cams", "lan", 554, "tcp", true)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(ns.nft_table().unwrap(), table_now);

    let r = net_c::revoke(&net, "lan", "iot", true).await.unwrap();
    assert_eq!(
        r.to_string(),
        "Closes lan → iot everything. Nothing else changes."
    );
    let m = net_c::matrix(&net).await.unwrap();
    let id = |s: &str| DomainId::parse(s).unwrap();
    assert_eq!(
        m.matrix[&id("lan")]["iot"],
        Reach::All,
        "a dry-run revoke changed nothing"
    );
    assert_eq!(
        m.matrix[&id("cams")]["lan"],
        Reach::Only(vec!["tcp/554".into()])
    );

    // Named errors that name the problem.
    for (call, want, names) in [
        (
            net.create_domain("Bad Name", "", false).await,
            "InvalidArgument",
            "Bad Name",
        ),
        (
            net.create_domain("x", "10.61.1.0/25", false).await,
            "Conflict",
            "lan",
        ),
        (net.create_domain("lan", "", true).await, "Conflict", "lan"),
        (
            net.create_domain("pub", "128.0.0.0/1", true).await,
            "InvalidArgument",
            "private",
        ),
        (
            net.create_domain("pub", "8.8.8.0/24", false).await,
            "InvalidArgument",
            "8.8.8.0/24",
        ),
        (
            net.create_domain("pub", "10.64.0.0/31", false).await,
            "InvalidArgument",
            "/16 to /30",
        ),
        (net.delete_domain("admin", false).await, "Conflict", "admin"),
        (net.delete_domain("nope", true).await, "NotFound", "nope"),
        (
            net.allow("lan", "guest", 70000, "", false).await,
            "InvalidArgument",
            "70000",
        ),
        (
            net.allow("lan", "guest", 0, "gre", false).await,
            "InvalidArgument",
            "gre",
        ),
        (net.revoke("admin", "lan", false).await, "Conflict", "admin"),
        (net.revoke("guest", "lan", false).await, "NotFound", "guest"),
    ] {
        let (k, msg) = kind(call);
        assert_eq!(k, want, "{msg}");
        assert!(msg.contains(names), "{msg:?} should name {names}");
    }

    // The daemon's guard: another program flushes the ruleset.
    ns.sh(&["nft", "flush", "ruleset"]);
    let t0 = std::time::Instant::now();
    loop {
        if net_c::show(&net).await.unwrap().table.current == Some(true) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "table not restored within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and says so on the bus.
    let restored = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(sig) = changed.next().await {
            let args = sig.args().unwrap();
            if args.what == "restore" {
                return hearth_common::contract::decode::<net_c::Restored>("Changed", &args.detail)
                    .unwrap_or_else(|e| panic!("Changed(restore) detail: {e}: {}", args.detail));
            }
        }
        panic!("signal stream ended");
    })
    .await
    .expect("Changed(restore) within 5 s");
    assert!(restored.why.contains("nft"), "{restored:?}");
    assert!(restored.generation > 0, "{restored:?}");

    let before = net_c::show(&net).await.unwrap();
    assert_eq!(before.table.current, Some(true));
    let table = ns.nft_table().unwrap();
    drop(net);
    drop(changed);
    daemon.stop();

    // Restarted: the same network, and nothing left to reconcile.
    let daemon = Daemon::start(&ns, &bus, &config, &state, dir.path());
    let net = NetworkProxy::new(&conn).await.unwrap();
    let after = net_c::show(&net).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(ns.nft_table().unwrap(), table);
    let rep = net_c::reconcile(&net).await.unwrap();
    assert_eq!(rep.changes, 0, "{rep:?}");
    daemon.stop();
}

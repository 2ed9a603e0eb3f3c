//! hearth-netd against the real kernel: every test builds its own router
//! namespace (and host namespaces joined by veth to the domain bridges) and
//! deletes them on drop, also when it fails. Run as root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use hearth_netd::{nft, Engine};

/// Policy used by the matrix tests: lan reaches iot entirely, iot reaches
/// lan only on tcp/8080, guest reaches nobody, admin reaches everyone.
const POLICY: &str = "[[allow]]\nfrom = \"lan\"\nto = \"iot\"\n\
[[allow]]\nfrom = \"iot\"\nto = \"lan\"\nport = 8080\nprotocol = \"tcp\"\n";

const NAMES: [&str; 4] = ["admin", "lan", "iot", "guest"];

/// What the lab actually lets through: (from, to) -> (ping, tcp/8080,
/// tcp/9090), every probe run concurrently.
fn observe(lab: &Lab) -> BTreeMap<(String, String), (bool, bool, bool)> {
    let mut pairs = Vec::new();
    for f in NAMES {
        for t in NAMES {
            if f != t {
                pairs.push((f, t));
            }
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(f, t)| {
                s.spawn(move || {
                    let (h, a) = (lab.host(f), Lab::addr(t));
                    let r = (
                        pings(h, &a),
                        tcp_connects(h, &a, 8080),
                        tcp_connects(h, &a, 9090),
                    );
                    ((f.to_string(), t.to_string()), r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The expected matrix: every pair blocked except those listed.
fn expect(
    open: &[(&str, &str, (bool, bool, bool))],
) -> BTreeMap<(String, String), (bool, bool, bool)> {
    let mut m = BTreeMap::new();
    for f in NAMES {
        for t in NAMES {
            if f == t {
                continue;
            }
            let v = if f == "admin" {
                (true, true, true)
            } else {
                (false, false, false)
            };
            m.insert((f.to_string(), t.to_string()), v);
        }
    }
    for (f, t, v) in open {
        m.insert((f.to_string(), t.to_string()), *v);
    }
    m
}

fn listeners(lab: &Lab) -> Vec<Listener> {
    NAMES
        .iter()
        .flat_map(|n| [listen_tcp(lab.host(n), 8080), listen_tcp(lab.host(n), 9090)])
        .collect()
}

#[test]
fn reachability_matrix_matches_the_policy_before_and_after_allows_and_revokes() {
    let mut lab = Lab::new(&config_text(POLICY), true);
    let _l = listeners(&lab);

    let all = (true, true, true);
    let only_8080 = (false, true, false);
    assert_eq!(
        observe(&lab),
        expect(&[("lan", "iot", all), ("iot", "lan", only_8080)]),
        "initial policy"
    );

    // A port-specific allow: guest reaches lan on tcp/9090 only.
    lab.in_router(|e| e.allow("guest", "lan", 9090, "tcp"))
        .unwrap();
    // Revoke lan -> iot entirely.
    lab.in_router(|e| e.revoke("lan", "iot")).unwrap();
    assert_eq!(
        observe(&lab),
        expect(&[
            ("iot", "lan", only_8080),
            ("guest", "lan", (false, false, true))
        ]),
        "after allow guest->lan tcp/9090 and revoke lan->iot"
    );

    // A protocol-only allow (tcp, any port) and back to nothing else.
    lab.in_router(|e| e.allow("guest", "iot", 0, "tcp"))
        .unwrap();
    lab.in_router(|e| e.revoke("guest", "lan")).unwrap();
    lab.in_router(|e| e.revoke("iot", "lan")).unwrap();
    assert_eq!(
        observe(&lab),
        expect(&[("guest", "iot", (false, true, true))]),
        "after allow guest->iot tcp and revokes"
    );
    let rules = lab.router.nft_table().expect("table listed");
    assert!(rules.contains("@allow_proto"), "{rules}");
}

#[test]
fn reapplying_100_times_lets_not_one_packet_cross_an_isolated_pair() {
    let mut lab = Lab::new(&config_text(POLICY), false);
    for n in ["lan", "iot", "guest"] {
        lab.add_host(n);
    }
    // guest -> lan is isolated; lan -> iot is allowed (the control that
    // shows traffic really flows while the rules are replaced).
    let blocked_rx = udp_counter(lab.host("lan"), 5001);
    let control_rx = udp_counter(lab.host("iot"), 5002);
    let blocked_tx = udp_sender(lab.host("guest"), &Lab::addr("lan"), 5001);
    let control_tx = udp_sender(lab.host("lan"), &Lab::addr("iot"), 5002);

    let reports = lab.in_router(|e| {
        (0..100)
            .map(|_| e.apply_firewall().expect("apply"))
            .collect::<Vec<_>>()
    });
    assert_eq!(reports.len(), 100);
    let gens: Vec<u32> = reports.iter().map(|r| r.generation).collect();
    assert!(
        gens.windows(2).all(|w| w[1] > w[0]),
        "each apply is a new generation: {gens:?}"
    );

    let sent = blocked_tx.stop();
    let control_sent = control_tx.stop();
    // Let the last datagrams in flight arrive before counting.
    std::thread::sleep(Duration::from_millis(100));
    let crossed = blocked_rx.stop();
    let control_got = control_rx.stop();
    assert!(sent > 1000, "the isolated sender sent {sent} datagrams");
    assert!(
        control_got > 0,
        "control pair carried {control_got} of {control_sent}"
    );
    assert_eq!(
        crossed, 0,
        "{crossed} of {sent} datagrams crossed an isolated pair"
    );
}

#[test]
fn restart_brings_back_identical_bridges_and_rules_and_a_second_reconcile_changes_nothing() {
    let mut lab = Lab::new(&config_text(POLICY), false);
    let created = lab.in_router(|e| e.create_domain("cams", "")).unwrap();
    assert_eq!(
        created.subnet.to_string(),
        "10.62.0.0/24",
        "first free /24 of the pool"
    );
    lab.in_router(|e| e.allow("cams", "lan", 554, "tcp"))
        .unwrap();
    lab.in_router(|e| e.delete_domain("guest")).unwrap();
    let links_before = bridge_summary(&lab.router);
    let table_before = lab.router.nft_table().unwrap();
    assert!(links_before.contains("hb-cams") && !links_before.contains("hb-guest"));

    // Restart on an intact kernel: a new engine from config + state.
    let config = lab.config.clone();
    let state = lab.state_dir();
    let restarted = Engine::load(&config, &state).unwrap();
    let rep = lab.router.run(|| restarted.reconcile()).unwrap();
    assert_eq!(
        rep.changes(),
        0,
        "nothing to do on an intact kernel: {rep:?}"
    );

    // Restart after losing everything (table gone, a bridge gone).
    lab.router.sh(&["nft", "delete", "table", "inet", "hearth"]);
    lab.router.ip(&["link", "del", "hb-cams"]);
    let restarted = Engine::load(&config, &state).unwrap();
    let rep = lab.router.run(|| restarted.reconcile()).unwrap();
    assert!(rep.firewall.is_some() && rep.changes() >= 2, "{rep:?}");
    assert_eq!(bridge_summary(&lab.router), links_before);
    assert_eq!(lab.router.nft_table().unwrap(), table_before);

    let rep = lab.router.run(|| restarted.reconcile()).unwrap();
    assert_eq!(rep.changes(), 0, "second reconcile: {rep:?}");
    assert_eq!(restarted.model(), lab.engine.model());
}

#[test]
fn reconcile_removes_stale_owned_bridges_and_never_touches_foreign_links() {
    let lab = Lab::new(&config_text(""), false);
    // A foreign bridge and a foreign hb- bridge without our alias.
    lab.router
        .ip(&["link", "add", "br-other", "type", "bridge"]);
    lab.router
        .ip(&["link", "add", "hb-foreign", "type", "bridge"]);
    // An owned bridge that is no longer configured.
    lab.router.ip(&["link", "add", "hb-old", "type", "bridge"]);
    lab.router
        .ip(&["link", "set", "hb-old", "alias", hearth_netd::links::ALIAS]);
    let rep = lab.router.run(|| lab.engine.reconcile()).unwrap();
    let links = lab.router.ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("hb-old"),
        "stale owned bridge removed: {rep:?}"
    );
    assert!(
        links.contains("br-other") && links.contains("hb-foreign"),
        "{links}"
    );
}

#[test]
fn nft_flush_ruleset_is_undone_within_one_second() {
    let lab = Lab::new(&config_text(POLICY), false);
    let rs = lab.engine.ruleset();
    let watcher = lab.router.run(|| lab.engine.watch()).unwrap();
    for round in 0..3 {
        lab.router.sh(&["nft", "flush", "ruleset"]);
        let t0 = Instant::now();
        let mut back = false;
        while t0.elapsed() < Duration::from_secs(1) {
            if lab.router.run(|| nft::is_current(&rs)).unwrap() {
                back = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(back, "round {round}: table not restored within 1 s");
    }
    // An alteration that leaves the table in place is undone as well.
    lab.router
        .sh(&["nft", "add", "rule", "inet", "hearth", "forward", "accept"]);
    let t0 = Instant::now();
    while !lab.router.run(|| nft::is_current(&rs)).unwrap() {
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "added rule not removed within 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The kernel shows the restored table as soon as the watcher's batch is
    // committed; the watcher counts the restore only once the kernel has
    // answered that batch, a moment later.
    let t0 = Instant::now();
    while watcher.restores() < 4 && t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(watcher.restores() >= 4, "restores: {}", watcher.restores());
    // Our own applies are not mistaken for someone else's.
    let before = watcher.restores();
    lab.router.run(|| lab.engine.apply_firewall()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watcher.restores(), before);
}

#[test]
fn a_rejected_batch_is_an_error_and_leaves_the_old_rules_in_force() {
    let lab = Lab::new(&config_text(POLICY), false);
    let before = lab.router.nft_table().unwrap();
    let mut rs = lab.engine.ruleset();
    rs.allow_any.push(("hb-guest".into(), "hb-lan".into()));
    let err = lab
        .router
        .run(|| nft::apply_with_bogus_rule(&rs))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("rejected") && msg.contains("bogus"), "{msg}");
    assert_eq!(lab.router.nft_table().unwrap(), before);
}

#[test]
fn bad_input_is_refused_by_name_and_changes_nothing() {
    let mut lab = Lab::new(&config_text(POLICY), false);
    let table = lab.router.nft_table().unwrap();
    let links = bridge_summary(&lab.router);
    let state = read(&lab.state_dir().join(hearth_netd::engine::STATE_FILE));
    let cases: Vec<(&str, Call, &str, &str)> = vec![
        (
            "invalid name",
            Box::new(|e| e.create_domain("Bad Name", "").map(|_| ())),
            "InvalidArgument",
            "Bad Name",
        ),
        (
            "malformed subnet",
            Box::new(|e| e.create_domain("cams", "10.1.2/24").map(|_| ())),
            "InvalidArgument",
            "10.1.2/24",
        ),
        (
            "host bits set",
            Box::new(|e| e.create_domain("cams", "10.9.9.9/24").map(|_| ())),
            "InvalidArgument",
            "10.9.9.9/24",
        ),
        (
            "overlapping subnet",
            Box::new(|e| e.create_domain("cams", "10.61.1.0/25").map(|_| ())),
            "Conflict",
            "lan",
        ),
        (
            "duplicate",
            Box::new(|e| e.create_domain("lan", "10.99.0.0/24").map(|_| ())),
            "Conflict",
            "lan",
        ),
        (
            "unknown domain delete",
            Box::new(|e| e.delete_domain("nope").map(|_| ())),
            "NotFound",
            "nope",
        ),
        (
            "unknown domain allow",
            Box::new(|e| e.allow("lan", "nope", 0, "").map(|_| ())),
            "NotFound",
            "nope",
        ),
        (
            "port out of range",
            Box::new(|e| e.allow("lan", "guest", 70000, "tcp").map(|_| ())),
            "InvalidArgument",
            "70000",
        ),
        (
            "unknown protocol",
            Box::new(|e| e.allow("lan", "guest", 80, "sctp-ish").map(|_| ())),
            "InvalidArgument",
            "sctp-ish",
        ),
        (
            "revoke what is not allowed",
            Box::new(|e| e.revoke("guest", "lan").map(|_| ())),
            "NotFound",
            "guest",
        ),
        (
            "delete admin",
            Box::new(|e| e.delete_domain("admin").map(|_| ())),
            "Conflict",
            "admin",
        ),
        (
            "revoke admin reach",
            Box::new(|e| e.revoke("admin", "lan").map(|_| ())),
            "Conflict",
            "admin",
        ),
    ];
    for (what, f, kind, names) in &cases {
        let err = lab.in_router(|e| f(e)).unwrap_err();
        assert_eq!(err.kind(), *kind, "{what}: {err}");
        assert!(
            err.to_string().contains(names),
            "{what}: {err:?} should name {names}"
        );
    }
    // An allow already in force is no error: its diff is empty.
    let again = lab.in_router(|e| e.allow("lan", "iot", 0, "")).unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(lab.router.nft_table().unwrap(), table, "table unchanged");
    assert_eq!(bridge_summary(&lab.router), links, "links unchanged");
    assert_eq!(
        read(&lab.state_dir().join(hearth_netd::engine::STATE_FILE)),
        state,
        "state unchanged"
    );
}

#[test]
fn subnets_outside_private_space_or_clashing_with_the_appliance_are_refused_and_change_nothing() {
    let mut lab = Lab::new(&format!("uplink = \"up0\"\n{}", config_text("")), false);
    // The uplink, on a private network, and a further link of the appliance
    // that hearth-netd does not own. The uplink's network sits in the pool,
    // where the first free /24 would otherwise be handed out.
    lab.router
        .ip(&["link", "add", "up0", "type", "veth", "peer", "name", "up1"]);
    lab.router
        .ip(&["addr", "add", "10.62.0.5/24", "dev", "up0"]);
    lab.router.ip(&["link", "set", "up0", "up"]);
    lab.router.ip(&[
        "link", "add", "mgmt0", "type", "veth", "peer", "name", "mgmt1",
    ]);
    lab.router
        .ip(&["addr", "add", "172.20.5.1/32", "dev", "mgmt0"]);
    let table = lab.router.nft_table().unwrap();
    let links = bridge_summary(&lab.router);
    let state_file = lab.state_dir().join(hearth_netd::engine::STATE_FILE);
    let state = read(&state_file);
    let cases: [(&str, &str, &str, &[&str]); 10] = [
        (
            "half the internet",
            "128.0.0.0/1",
            "InvalidArgument",
            &["128.0.0.0/1", "private"],
        ),
        (
            "public /24",
            "8.8.8.0/24",
            "InvalidArgument",
            &["8.8.8.0/24", "private"],
        ),
        (
            "documentation range",
            "192.0.2.0/24",
            "InvalidArgument",
            &["192.0.2.0/24", "private"],
        ),
        (
            "a /8",
            "10.0.0.0/8",
            "InvalidArgument",
            &["10.0.0.0/8", "/16"],
        ),
        (
            "a /31",
            "10.64.0.0/31",
            "InvalidArgument",
            &["10.64.0.0/31", "/30"],
        ),
        (
            "a /32",
            "10.64.0.1/32",
            "InvalidArgument",
            &["10.64.0.1/32", "/30"],
        ),
        (
            "the uplink's network",
            "10.62.0.0/24",
            "Conflict",
            &["10.62.0.0/24", "up0"],
        ),
        (
            "around the uplink's network",
            "10.62.0.0/16",
            "Conflict",
            &["up0"],
        ),
        (
            "an address of the appliance",
            "172.20.0.0/16",
            "Conflict",
            &["mgmt0", "172.20.5.1"],
        ),
        (
            "another domain",
            "10.61.2.0/24",
            "Conflict",
            &["10.61.2.0/24", "iot"],
        ),
    ];
    for (what, subnet, kind, names) in cases {
        for dry_run in [true, false] {
            let req = hearth_netd::engine::Request::Create {
                name: "pub".into(),
                subnet: subnet.into(),
            };
            let err = lab
                .in_router(|e| e.request(&req, dry_run))
                .expect_err(&format!("{what}: {subnet} accepted (dry run: {dry_run})"));
            assert_eq!(err.kind(), kind, "{what}: {err}");
            for n in names {
                assert!(err.to_string().contains(n), "{what}: {err} should name {n}");
            }
        }
    }
    assert_eq!(lab.router.nft_table().unwrap(), table, "table unchanged");
    assert_eq!(bridge_summary(&lab.router), links, "links unchanged");
    assert_eq!(read(&state_file), state, "state unchanged");
    assert!(!lab.router.ip(&["-o", "link", "show"]).contains("hb-pub"));

    // The pool hands out its first /24 that is clear of the uplink too.
    let created = lab.in_router(|e| e.create_domain("cams", "")).unwrap();
    assert_eq!(created.subnet.to_string(), "10.62.1.0/24", "{created:?}");
    // Private space of the right size, clear of everything, is accepted.
    let created = lab
        .in_router(|e| e.create_domain("lab", "172.16.8.0/22"))
        .unwrap();
    assert_eq!(created.subnet.to_string(), "172.16.8.0/22");
    assert!(lab
        .router
        .ip(&["-o", "addr", "show", "hb-lab"])
        .contains("172.16.8.1/22"));
}

/// One engine call of the bad-input table.
type Call = Box<dyn Fn(&mut Engine) -> Result<(), hearth_netd::NetError> + Send + Sync>;

/// `name kind addresses` of every hb-/hv- link, sorted.
fn bridge_summary(ns: &Netns) -> String {
    let out = ns.ip(&["-o", "-d", "addr", "show"]);
    let mut lines: Vec<String> = ns
        .ip(&["-o", "-d", "link", "show"])
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?.split('@').next()?.to_string();
            if !(name.starts_with("hb-") || name.starts_with("hv-")) {
                return None;
            }
            let kind = if l.contains(" bridge ") {
                "bridge"
            } else {
                "other"
            };
            let up = l.contains(",UP");
            let addrs: Vec<&str> = out
                .lines()
                .filter(|a| a.split_whitespace().nth(1) == Some(name.as_str()))
                .filter_map(|a| a.split_whitespace().nth(3))
                .filter(|a| !a.starts_with("fe80"))
                .collect();
            Some(format!("{name} {kind} up={up} {}", addrs.join(",")))
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn a_domain_with_vlan_and_ula_gets_its_vlan_link_enslaved_and_both_gateways() {
    let ns = Netns::new("vlan");
    // The VLAN's parent: a link hearth-netd does not own.
    ns.ip(&[
        "link", "add", "vpar0", "type", "veth", "peer", "name", "vpar1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network.toml");
    let with_cams = "admin = \"admin\"\n[[domain]]\nname = \"admin\"\nsubnet = \"10.63.0.0/24\"\n\
        [[domain]]\nname = \"cams\"\nsubnet = \"10.63.1.0/24\"\nula = \"fd42:63:1::/64\"\n\
        vlan = { parent = \"vpar0\", id = 10 }\n";
    std::fs::write(&path, with_cams).unwrap();
    let engine = Engine::load(&path, &dir.path().join("state")).unwrap();
    // tests/vm/run sets HEARTH_REQUIRE_VLAN: its kernel has 802.1Q, the
    // success path must run there.
    let vlan_support = ns.vlan_support("vpar0");
    // A parent that is down cannot carry the VLAN: named, nothing created.
    let err = ns.run(|| engine.reconcile()).unwrap_err().to_string();
    assert!(err.contains("vpar0") && err.contains("down"), "{err}");
    assert!(
        !ns.exec(&["ip", "link", "show", "hv-cams"]).status.success(),
        "a VLAN link was created over a parent that is down"
    );
    ns.ip(&["link", "set", "vpar0", "up"]);
    if !vlan_support {
        // This kernel has no 802.1Q: the refusal must be an error naming
        // the link and the kernel's answer, not a silent half-done domain.
        let err = ns.run(|| engine.reconcile()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("hv-cams") && msg.contains("Unknown device type"),
            "{msg}"
        );
        // The bridge and both gateways come before the VLAN step.
        let addrs = ns.ip(&["-o", "addr", "show", "hb-cams"]);
        assert!(
            addrs.contains("10.63.1.1/24") && addrs.contains("fd42:63:1::1/64"),
            "{addrs}"
        );
        eprintln!("kernel without 802.1Q VLAN support: checked the refusal and the gateways");
        return;
    }
    ns.run(|| engine.reconcile()).unwrap();

    let vlan = ns.ip(&["-d", "link", "show", "hv-cams"]);
    assert!(vlan.contains("master hb-cams"), "{vlan}");
    assert!(vlan.contains("vlan protocol 802.1Q id 10"), "{vlan}");
    assert!(vlan.contains("hv-cams@vpar0"), "{vlan}");
    let addrs = ns.ip(&["-o", "addr", "show", "hb-cams"]);
    assert!(
        addrs.contains("10.63.1.1/24") && addrs.contains("fd42:63:1::1/64"),
        "{addrs}"
    );
    let again = ns.run(|| engine.reconcile()).unwrap();
    assert_eq!(again.changes(), 0, "{again:?}");

    // The domain removed from the configuration: its links go, the parent stays.
    std::fs::write(
        &path,
        "admin = \"admin\"\n[[domain]]\nname = \"admin\"\nsubnet = \"10.63.0.0/24\"\n",
    )
    .unwrap();
    let engine = Engine::load(&path, &dir.path().join("state")).unwrap();
    let rep = ns.run(|| engine.reconcile()).unwrap();
    let links = ns.ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("hv-cams") && !links.contains("hb-cams"),
        "{rep:?}\n{links}"
    );
    assert!(links.contains("vpar0"), "{links}");
}

//! What hearth-netd leaves in the kernel, compared with listings recorded
//! from the kernel (daemons/netd/tests/golden/). Run as root.
//!
//! * The `inet hearth` table: the text and JSON forms of `nft list table
//!   inet hearth`, and the expressions with their registers (`nft
//!   --debug=netlink`). Recorded with the hand-written nf_tables encoder
//!   that preceded the nftnl one, so this shows the two build the same table.
//! * The links of a fixed reconcile (bridges, gateways with ULA, an adopted
//!   bridge, a stale one deleted, a VLAN link enslaved to its bridge): `ip
//!   -d -j link` and `ip -j addr`, normalised, and the changes the
//!   reconcile reported. Recorded with the hand-written rtnetlink encoder
//!   that preceded the netlink-packet-route one, so this shows the two leave
//!   the same links.
//!
//! `HEARTH_BLESS=1` rewrites the files (only after a reviewed change), and
//! also prints them (a virtual machine of tests/vm/run cannot write them).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::*;
use hearth_netd::links;
use hearth_netd::nft::{self, Ruleset};
use hearth_netd::Engine;
use serde_json::Value;

/// Five domains, an uplink, allows of all three kinds (with and without
/// port and protocol), services and NAT.
fn ruleset() -> Ruleset {
    let s = |x: &str| x.to_string();
    Ruleset {
        bridges: ["hb-admin", "hb-cams", "hb-guest", "hb-iot", "hb-lan"]
            .map(s)
            .to_vec(),
        admin: s("hb-admin"),
        uplink: Some(s("eth9")),
        allow_any: vec![(s("hb-lan"), s("hb-iot")), (s("hb-lan"), s("hb-cams"))],
        allow_proto: vec![(s("hb-iot"), s("hb-cams"), 17)],
        allow_port: vec![
            (s("hb-guest"), s("hb-lan"), 6, 53),
            (s("hb-guest"), s("hb-lan"), 17, 53),
            (s("hb-iot"), s("hb-lan"), 6, 8080),
        ],
        services: vec![
            (s("hb-guest"), 17, 67),
            (s("hb-lan"), 6, 53),
            (s("hb-lan"), 17, 53),
        ],
        nat: vec![
            (Ipv4Addr::new(10, 61, 0, 0), 24),
            (Ipv4Addr::new(10, 61, 1, 0), 24),
            (Ipv4Addr::new(10, 61, 2, 0), 23),
        ],
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Set elements live in hash tables whose order depends on a random seed:
/// the elements of each set are compared as a sorted list.
fn normalize_text(listing: &str) -> String {
    let mut out = Vec::new();
    let mut elems: Option<Vec<String>> = None;
    for line in listing.lines() {
        let t = line.trim();
        // Inside an element list, or at its first line.
        let rest = match t.strip_prefix("elements = {") {
            _ if elems.is_some() => t,
            Some(rest) => {
                elems = Some(Vec::new());
                rest
            }
            None => {
                out.push(line.trim_end().to_string());
                continue;
            }
        };
        let list = elems.as_mut().unwrap();
        list.extend(
            rest.trim_end_matches('}')
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(String::from),
        );
        if rest.ends_with('}') {
            let mut list = elems.take().unwrap();
            list.sort();
            out.push(format!("\t\telements = {{ {} }}", list.join(", ")));
        }
    }
    out.join("\n") + "\n"
}

/// The JSON listing with `metainfo` dropped (nft's version) and each set's
/// elements sorted.
fn normalize_json(listing: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(listing).expect("nft -j output");
    let items = v["nftables"].as_array_mut().expect("nftables array");
    items.retain(|i| i.get("metainfo").is_none());
    for i in items.iter_mut() {
        if let Some(elems) = i
            .get_mut("set")
            .and_then(|s| s.get_mut("elem"))
            .and_then(|e| e.as_array_mut())
        {
            elems.sort_by_key(|e| e.to_string());
        }
    }
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// `nft --debug=netlink` prints each set's elements and each rule's
/// expressions, registers included; element lines are sorted per set.
fn normalize_netlink(listing: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut elems: Vec<String> = Vec::new();
    for line in listing.lines() {
        let t = line.trim_end();
        if t.trim_start().starts_with("element ") {
            elems.push(t.to_string());
            continue;
        }
        if !elems.is_empty() {
            elems.sort();
            out.append(&mut elems);
        }
        // The listing that follows the debug output is compared elsewhere.
        if t.starts_with("table inet hearth") {
            break;
        }
        out.push(t.to_string());
    }
    elems.sort();
    out.append(&mut elems);
    out.join("\n") + "\n"
}

fn compare(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("HEARTH_BLESS").is_some() {
        println!("HEARTH-BLESS-BEGIN {name}\n{actual}HEARTH-BLESS-END {name}");
        if let Err(e) = std::fs::create_dir_all(path.parent().unwrap())
            .and_then(|()| std::fs::write(&path, actual))
        {
            eprintln!("cannot write {}: {e}", path.display());
        }
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        expected == actual,
        "{name} differs from the recorded listing\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn the_table_the_kernel_holds_matches_the_recorded_listing() {
    let ns = Netns::new("golden");
    let rs = ruleset();
    let rep = ns.run(|| nft::apply(&rs)).unwrap();
    assert_eq!(rep.rules, rs.rule_count());
    // Applied twice: the second batch replaces the first table whole.
    ns.run(|| nft::apply(&rs)).unwrap();
    assert!(ns.run(|| nft::is_current(&rs)).unwrap());

    let text = ns.nft_table().expect("nft list table inet hearth");
    compare("table.nft", &normalize_text(&text));
    let json = ns.sh(&["nft", "-j", "list", "table", "inet", "hearth"]);
    compare("table.json", &normalize_json(&json));
    let netlink = ns.sh(&["nft", "--debug=netlink", "list", "table", "inet", "hearth"]);
    compare("table.netlink", &normalize_netlink(&netlink));
}

/// Keys of `ip -d -j link` that differ from run to run or from kernel to
/// kernel without saying anything about what hearth-netd asked for:
/// indexes, MAC addresses (and the bridge ids made of them), timers and
/// counters, carrier-driven state (the link watch updates it
/// asynchronously), the offload and queue limits whose defaults change
/// between kernel versions, and the bridge's VLAN-filtering attributes,
/// which only a kernel built with CONFIG_BRIDGE_VLAN_FILTERING reports
/// (`vlan_filtering` itself is kept: every kernel reports it).
const VOLATILE_LINK_KEYS: &[&str] = &[
    "ifindex",
    "link_index",
    "address",
    "broadcast",
    "permaddr",
    "operstate",
    "stats",
    "stats64",
    "bridge_id",
    "root_id",
    "designated_root",
    "designated_bridge",
    "hello_timer",
    "tcn_timer",
    "topology_change_timer",
    "gc_timer",
    "forward_delay_timer",
    "hold_timer",
    "message_age_timer",
    "state",
    "gso_max_size",
    "gso_max_segs",
    "gso_ipv4_max_size",
    "tso_max_size",
    "tso_max_segs",
    "gro_max_size",
    "gro_ipv4_max_size",
    "num_tx_queues",
    "num_rx_queues",
    "parentbus",
    "parentdev",
    "vlan_default_pvid",
    "vlan_protocol",
    "vlan_stats_enabled",
    "vlan_stats_per_port",
];

fn drop_keys(v: &mut Value, keys: &[&str]) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !keys.contains(&k.as_str()));
            for x in m.values_mut() {
                drop_keys(x, keys);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| drop_keys(x, keys)),
        _ => {}
    }
}

/// `ip -d -j link`: every link but `lo`, sorted by name, volatile keys
/// dropped, and the carrier flags (LOWER_UP, NO-CARRIER) left out.
fn normalize_links(listing: &str) -> String {
    let v: Value = serde_json::from_str(listing).expect("ip -j output");
    let mut links: Vec<Value> = v
        .as_array()
        .expect("array")
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .cloned()
        .collect();
    for l in &mut links {
        drop_keys(l, VOLATILE_LINK_KEYS);
        if let Some(flags) = l.get_mut("flags").and_then(Value::as_array_mut) {
            flags.retain(|f| f != "LOWER_UP" && f != "NO-CARRIER");
        }
    }
    links.sort_by_key(|l| l["ifname"].to_string());
    serde_json::to_string_pretty(&links).unwrap() + "\n"
}

/// `ip -j addr`: for every link but `lo` its name and addresses, IPv6
/// link-local ones (derived from the MAC, added when the kernel gets to
/// it) left out, sorted by name.
fn normalize_addrs(listing: &str) -> String {
    let v: Value = serde_json::from_str(listing).expect("ip -j output");
    let mut out: Vec<Value> = v
        .as_array()
        .expect("array")
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .map(|l| {
            let addrs: Vec<Value> = l["addr_info"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|a| !a["local"].as_str().unwrap_or("").starts_with("fe80:"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({ "ifname": l["ifname"], "addr_info": addrs })
        })
        .collect();
    out.sort_by_key(|l| l["ifname"].to_string());
    serde_json::to_string_pretty(&out).unwrap() + "\n"
}

/// The links of one fixed reconcile, in a fresh namespace that already
/// holds an unmarked bridge of a configured domain (adopted: alias set,
/// brought up, a stray address removed), a stale bridge of ours (deleted),
/// a foreign `hb-` bridge (left alone) and the up veth `vpar0` that
/// carries the VLAN of the domain cams. The golden files hold the VLAN
/// domain (recorded in the virtual machine of tests/vm/run); on a kernel
/// without 802.1Q (the VLAN test of tests/kernel.rs says why that is
/// allowed) cams is left out of the configuration, and its links and the
/// VLAN's parent (promiscuous under a bridge port) out of the compared
/// listings.
#[test]
fn the_links_the_kernel_holds_match_the_recorded_listing() {
    let ns = Netns::new("glinks");
    ns.ip(&[
        "link", "add", "vpar0", "type", "veth", "peer", "name", "vpar1",
    ]);
    ns.ip(&["link", "set", "vpar0", "up"]);
    ns.ip(&["link", "add", "hb-iot", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.64.9.1/24", "dev", "hb-iot"]);
    ns.ip(&["link", "add", "hb-old", "type", "bridge"]);
    ns.ip(&["link", "set", "hb-old", "alias", links::ALIAS]);
    ns.ip(&["link", "add", "hb-foreign", "type", "bridge"]);
    let vlan_support = ns.vlan_support("vpar0");
    if !vlan_support {
        eprintln!("kernel without 802.1Q VLAN support: the domain cams is left out");
    }

    let mut config = String::from(
        "admin = \"admin\"\n\
         [[domain]]\nname = \"admin\"\nsubnet = \"10.64.0.0/24\"\n\
         [[domain]]\nname = \"lan\"\nsubnet = \"10.64.1.0/24\"\nula = \"fd42:64:1::/64\"\n\
         [[domain]]\nname = \"iot\"\nsubnet = \"10.64.2.0/23\"\nula = \"fd42:64:2::/56\"\n",
    );
    if vlan_support {
        config.push_str(
            "[[domain]]\nname = \"cams\"\nsubnet = \"10.64.4.0/24\"\nula = \"fd42:64:4::/64\"\n\
             vlan = { parent = \"vpar0\", id = 10 }\n",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("network.toml");
    std::fs::write(&path, config).unwrap();
    let engine = Engine::load(&path, &dir.path().join("state")).unwrap();
    let model = engine.model();

    let changes = ns.run(|| links::reconcile(model)).unwrap();
    // Sysctls are not links, and which exist depends on the kernel's modules.
    let changes: Vec<Value> = changes
        .iter()
        .filter(|c| !matches!(c, links::Change::Sysctl { .. }))
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    let again = ns.run(|| links::reconcile(model)).unwrap();
    assert_eq!(again, vec![], "a second reconcile changes nothing");

    // A listing entry names its link in "ifname", a change in "link".
    let cams = |v: &Value| {
        ["hb-cams", "hv-cams", "vpar0"].contains(&v["ifname"].as_str().unwrap_or(""))
            || ["hb-cams", "hv-cams"].contains(&v["link"].as_str().unwrap_or(""))
    };
    let filter = |text: String| -> String {
        if vlan_support {
            return text;
        }
        let entries: Vec<Value> = serde_json::from_str(&text).unwrap();
        let kept: Vec<&Value> = entries.iter().filter(|v| !cams(v)).collect();
        serde_json::to_string_pretty(&kept).unwrap() + "\n"
    };
    let compare_filtered = |name: &str, actual: String| {
        if vlan_support {
            compare(name, &actual);
            return;
        }
        assert!(
            std::env::var_os("HEARTH_BLESS").is_none(),
            "the golden files hold the VLAN domain: bless them on a kernel with 802.1Q \
             (tests/vm/run prints them)"
        );
        let expected =
            std::fs::read_to_string(golden(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let (expected, actual) = (filter(expected), filter(actual));
        assert!(
            expected == actual,
            "{name} differs from the recorded listing (cams left out)\n--- expected\n{expected}\n--- actual\n{actual}"
        );
    };
    compare_filtered(
        "links.changes.json",
        serde_json::to_string_pretty(&changes).unwrap() + "\n",
    );
    compare_filtered(
        "links.link.json",
        normalize_links(&ns.sh(&["ip", "-d", "-j", "link", "show"])),
    );
    compare_filtered(
        "links.addr.json",
        normalize_addrs(&ns.sh(&["ip", "-j", "addr", "show"])),
    );
}

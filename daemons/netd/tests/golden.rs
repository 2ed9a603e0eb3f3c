//! The `inet hearth` table as the kernel holds it, compared with a listing
//! recorded from the kernel (daemons/netd/tests/golden/): the text and JSON
//! forms of `nft list table inet hearth`, and the expressions with their
//! registers (`nft --debug=netlink`). Run as root.
//!
//! The golden files were recorded with the hand-written nf_tables encoder
//! that preceded the nftnl one, so this test shows the two build the same
//! table. `HEARTH_BLESS=1` rewrites them (only after a reviewed change of
//! the ruleset).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use common::*;
use hearth_netd::nft::{self, Ruleset};

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
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
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

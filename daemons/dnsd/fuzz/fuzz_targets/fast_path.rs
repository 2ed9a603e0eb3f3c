//! Any datagram: when the UDP fast path answers it, the answer is the
//! general path's (hickory's decoder and encoder) byte for byte.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use hearth_common::types::{Address, DnsName};
use hearth_dnsd::answer::Snapshot;
use hearth_dnsd::engine::{Node, StoredState, ZoneState};
use hearth_dnsd::fast::MAX_ANSWER;
use hearth_dnsd::server::answer_udp;
use hearth_dnsd::ZoneConfig;
use libfuzzer_sys::fuzz_target;

fn name(s: &str) -> DnsName {
    DnsName::parse(s).expect("valid name")
}

fn addrs(list: &[&str]) -> Node {
    Node::Addresses(
        list.iter()
            .map(|s| Address::parse(s).expect("valid address"))
            .collect::<BTreeSet<_>>(),
    )
}

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let ns = |s: &str| vec![Address::parse(s).expect("valid address")];
        let mut zones = vec![
            ZoneConfig::new(name("home.arpa"), ns("192.168.1.1")),
            ZoneConfig::new(name("iot.home.arpa"), ns("192.168.5.1")),
            ZoneConfig::new(name("test.local"), ns("192.168.1.1")),
            // Shaped like the made-up names of the parent's NXDOMAIN answers.
            ZoneConfig::new(name("xx.home.arpa"), ns("192.168.6.1")),
        ];
        zones.sort_by(|a, b| a.name.cmp(&b.name));
        let mut state = StoredState {
            version: 1,
            ..Default::default()
        };
        state
            .zones
            .insert(name("home.arpa"), ZoneState { serial: 9 });
        let medium: Vec<String> = (1..=30).map(|i| format!("192.168.3.{i}")).collect();
        let medium: Vec<&str> = medium.iter().map(String::as_str).collect();
        for (n, node) in [
            ("nas.home.arpa", addrs(&["192.168.1.10", "fd00::10"])),
            ("a.b.home.arpa", addrs(&["192.168.1.11"])),
            ("files.home.arpa", Node::Alias(name("nas.home.arpa"))),
            ("share.test.local", Node::Alias(name("files.home.arpa"))),
            ("ext.home.arpa", Node::Alias(name("example.org"))),
            ("gone.home.arpa", Node::Alias(name("missing.home.arpa"))),
            ("cam.iot.home.arpa", addrs(&["192.168.5.5"])),
            ("medium.home.arpa", addrs(&medium)),
        ] {
            state.names.insert(name(n), node);
        }
        Snapshot::build(&zones, &state)
    })
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    let mut out = [0u8; MAX_ANSWER];
    if let Some(len) = snap.fast().answer(data, &mut out) {
        let slow = answer_udp(snap, data);
        assert_eq!(Some(&out[..len]), slow.as_deref(), "query {data:02x?}");
    }
});

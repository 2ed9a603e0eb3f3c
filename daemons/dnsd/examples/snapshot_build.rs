//! Times `Snapshot::build` (with the fast path's table) for zones of N
//! names: `cargo run --release -p hearth-dnsd --example snapshot_build -- 250 1000 4000`.
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Instant;

use hearth_common::types::{Address, DnsName};
use hearth_dnsd::answer::Snapshot;
use hearth_dnsd::engine::{Node, StoredState};
use hearth_dnsd::ZoneConfig;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number of names"))
        .collect();
    let zones = vec![ZoneConfig::new(
        DnsName::parse("home.arpa").expect("name"),
        vec![Address::parse("192.168.1.1").expect("address")],
    )];
    for n in sizes {
        let mut state = StoredState {
            version: 1,
            ..Default::default()
        };
        for i in 0..n {
            let name = DnsName::parse(&format!("host{i}.home.arpa")).expect("name");
            let addr = Address::parse(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
                .expect("address");
            state
                .names
                .insert(name, Node::Addresses(BTreeSet::from([addr])));
        }
        let runs = 5;
        let start = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(Snapshot::build(&zones, &state));
        }
        let each = start.elapsed() / runs;
        println!(
            "{n} names: {:.1} ms per snapshot build",
            each.as_secs_f64() * 1e3
        );
    }
}

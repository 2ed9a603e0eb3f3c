//! Benchmark (not a timed test; ignored by default): time to replace the
//! `inet hearth` table with hearth-netd's one netlink batch, beside loading
//! the same ruleset with `nft -f` in the same run, for 4, 16, 64 and 256
//! domains. Results go to docs/perf.md.
//!
//! `cargo test -p hearth-netd --release --test bench -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hearth_netd::nft::{self, Ruleset};

/// N domains, each allowed to reach the next on tcp/443, each with dns and
/// dhcp, all masqueraded to the uplink.
fn ruleset(n: usize) -> Ruleset {
    let br = |i: usize| format!("hb-d{i}");
    let mut rs = Ruleset {
        bridges: (0..n).map(br).collect(),
        admin: br(0),
        uplink: Some("hup0".into()),
        allow_any: Vec::new(),
        allow_proto: Vec::new(),
        allow_port: (1..n).map(|i| (br(i), br((i + 1) % n), 6, 443)).collect(),
        services: Vec::new(),
        nat: (0..n)
            .map(|i| {
                (
                    Ipv4Addr::new(10, 100 + (i / 256) as u8, (i % 256) as u8, 0),
                    24,
                )
            })
            .collect(),
    };
    for i in 0..n {
        rs.services.push((br(i), 17, 53));
        rs.services.push((br(i), 6, 53));
        rs.services.push((br(i), 17, 67));
    }
    rs
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Medians of RUNS runs each.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_apply_against_nft_f() {
    const RUNS: usize = 21;
    let ns = Netns::new("bench");
    let dir = tempfile::tempdir().unwrap();
    println!("| domains | rules | set elements | hearth-netd replace | `nft -f` replace | hearth-netd into empty netns | `nft -f` into empty netns | `nft -f` empty file (process start) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [4usize, 16, 64, 256] {
        let rs = ruleset(n);
        ns.run(|| nft::apply(&rs)).unwrap();
        // The equivalent ruleset, as nft itself prints what we loaded.
        let listing = ns.nft_table().unwrap();
        let file = dir.path().join(format!("hearth-{n}.nft"));
        std::fs::write(
            &file,
            format!("table inet hearth\ndelete table inet hearth\n{listing}"),
        )
        .unwrap();
        let fresh_file = dir.path().join(format!("hearth-{n}-fresh.nft"));
        std::fs::write(&fresh_file, &listing).unwrap();
        let empty = dir.path().join("empty.nft");
        std::fs::write(&empty, "").unwrap();

        let ours: Vec<Duration> = ns.run(|| {
            (0..RUNS)
                .map(|_| {
                    let t = Instant::now();
                    nft::apply(&rs).unwrap();
                    t.elapsed()
                })
                .collect()
        });
        let nft_f = |path: &std::path::Path| -> Vec<Duration> {
            (0..RUNS)
                .map(|_| {
                    let t = Instant::now();
                    let o = Command::new("ip")
                        .args(["netns", "exec", &ns.name, "nft", "-f"])
                        .arg(path)
                        .output()
                        .unwrap();
                    let d = t.elapsed();
                    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                    d
                })
                .collect()
        };
        let theirs = nft_f(&file);
        let start_only = nft_f(&empty);
        // Into a namespace without the table (deleting it is not timed).
        let mut ours_fresh = Vec::new();
        let mut theirs_fresh = Vec::new();
        for _ in 0..RUNS {
            ns.run(nft::delete_table).unwrap();
            ours_fresh.push(ns.run(|| {
                let t = Instant::now();
                nft::apply(&rs).unwrap();
                t.elapsed()
            }));
            ns.run(nft::delete_table).unwrap();
            let t = Instant::now();
            let o = Command::new("ip")
                .args(["netns", "exec", &ns.name, "nft", "-f"])
                .arg(&fresh_file)
                .output()
                .unwrap();
            theirs_fresh.push(t.elapsed());
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        // Both loaded the same thing.
        assert_eq!(ns.nft_table().unwrap(), listing);
        let st = ns.run(nft::read_state).unwrap().unwrap();
        assert_eq!(st.rules.iter().sum::<usize>(), rs.rule_count());
        println!(
            "| {n} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            rs.rule_count(),
            rs.element_counts().iter().sum::<usize>(),
            median(ours).as_secs_f64() * 1e3,
            median(theirs).as_secs_f64() * 1e3,
            median(ours_fresh).as_secs_f64() * 1e3,
            median(theirs_fresh).as_secs_f64() * 1e3,
            median(start_only).as_secs_f64() * 1e3,
        );
    }
}

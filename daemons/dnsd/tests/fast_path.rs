//! The UDP fast path answers exactly as the general path (hickory's decoder
//! and encoder), byte for byte, and the general path exactly as hickory's
//! own UDP server; what the fast path does not take, it leaves alone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use hearth_common::types::{Address, DnsName};
use hearth_dnsd::answer::Snapshot;
use hearth_dnsd::engine::{Node, StoredState, ZoneState};
use hearth_dnsd::fast::MAX_ANSWER;
use hearth_dnsd::server::{answer_udp, ZoneHandler};
use hearth_dnsd::{DnsServer, Engine, ZoneConfig};
use support::{a, n};

fn zones() -> Vec<ZoneConfig> {
    vec![
        ZoneConfig::new(n("home.arpa"), vec![a("192.168.1.1")]),
        ZoneConfig::new(n("test.local"), vec![a("192.168.1.1")]),
        ZoneConfig::new(n("iot.home.arpa"), vec![a("192.168.5.1")]),
        // A zone whose label looks like the made-up names the table uses
        // for NXDOMAIN answers of its parent.
        ZoneConfig::new(n("xx.home.arpa"), vec![a("192.168.6.1")]),
    ]
}

fn addresses(list: &[&str]) -> Node {
    Node::Addresses(list.iter().map(|s| a(s)).collect::<BTreeSet<Address>>())
}

fn state() -> StoredState {
    let mut s = StoredState {
        version: 1,
        ..Default::default()
    };
    s.zones.insert(n("home.arpa"), ZoneState { serial: 42 });
    let names: Vec<(&str, Node)> = vec![
        ("nas.home.arpa", addresses(&["192.168.1.10", "fd00::10"])),
        (
            "multi.home.arpa",
            addresses(&["192.168.1.20", "192.168.1.21", "192.168.1.22"]),
        ),
        ("v6only.home.arpa", addresses(&["fd00::30"])),
        ("files.home.arpa", Node::Alias(n("nas.home.arpa"))),
        ("share.test.local", Node::Alias(n("files.home.arpa"))),
        ("ext.home.arpa", Node::Alias(n("example.org"))),
        ("gone.home.arpa", Node::Alias(n("missing.home.arpa"))),
        ("a.b.home.arpa", addresses(&["192.168.1.40"])),
        ("_svc._tcp.home.arpa", addresses(&["192.168.1.41"])),
        ("cam.iot.home.arpa", addresses(&["192.168.5.5"])),
        ("test.local", addresses(&["192.168.1.100"])),
    ];
    for (name, node) in names {
        s.names.insert(n(name), node);
    }
    // 30 addresses: larger than 512 bytes, smaller than 1232.
    let medium: Vec<String> = (1..=30).map(|i| format!("192.168.3.{i}")).collect();
    let medium: Vec<&str> = medium.iter().map(String::as_str).collect();
    s.names.insert(n("medium.home.arpa"), addresses(&medium));
    // 120 addresses: larger than 1232 bytes.
    let big: Vec<String> = (1..=120).map(|i| format!("192.168.2.{i}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    s.names.insert(n("big.home.arpa"), addresses(&big));
    // A name of 253 characters (255 bytes on the wire).
    let long = format!(
        "{}.{}.{}.{}.home.arpa",
        "l".repeat(61),
        "o".repeat(61),
        "n".repeat(61),
        "g".repeat(53)
    );
    s.names.insert(
        DnsName::parse(&long).expect("a long valid name"),
        addresses(&["192.168.1.50"]),
    );
    s
}

fn snapshot() -> Snapshot {
    let mut zones = zones();
    zones.sort_by(|x, y| x.name.cmp(&y.name));
    Snapshot::build(&zones, &state())
}

fn wire_name(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

#[derive(Clone, Copy)]
enum Edns {
    None,
    /// Payload, version, DO flag, options (a cookie) or not.
    Opt(u16, u8, bool, bool),
}

fn query(id: u16, flags: [u8; 2], name: &[u8], qtype: u16, qclass: u16, edns: Edns) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&flags);
    let ar: u16 = if matches!(edns, Edns::None) { 0 } else { 1 };
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
    q.extend_from_slice(&ar.to_be_bytes());
    q.extend_from_slice(name);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    if let Edns::Opt(payload, version, dnssec_ok, cookie) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0]);
        if cookie {
            q.extend_from_slice(&[0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        } else {
            q.extend_from_slice(&[0, 0]);
        }
    }
    q
}

/// The fast path's answer, checked against the general path's whenever it
/// gives one.
fn check(snap: &Snapshot, q: &[u8]) -> Option<Vec<u8>> {
    let mut out = [0u8; MAX_ANSWER];
    let fast = snap
        .fast()
        .answer(q, &mut out)
        .map(|len| out[..len].to_vec());
    if let Some(fast) = &fast {
        let slow = answer_udp(snap, q);
        assert_eq!(
            Some(fast),
            slow.as_ref(),
            "fast and general answers differ for query {q:02x?}"
        );
    }
    fast
}

const NAMES: &[&str] = &[
    "nas.home.arpa",
    "NAS.Home.ARPA",
    "nAs.HoMe.ArPa",
    "multi.home.arpa",
    "v6only.home.arpa",
    "files.home.arpa",
    "share.test.local",
    "SHARE.TEST.LOCAL",
    "ext.home.arpa",
    "gone.home.arpa",
    "a.b.home.arpa",
    "b.home.arpa",
    "_svc._tcp.home.arpa",
    "_tcp.home.arpa",
    "home.arpa",
    "Home.Arpa",
    "ns.home.arpa",
    "ns.iot.home.arpa",
    "iot.home.arpa",
    "cam.iot.home.arpa",
    "nope.iot.home.arpa",
    "nope.home.arpa",
    "x.y.z.nope.home.arpa",
    "missing.home.arpa",
    "test.local",
    "x.test.local",
    "medium.home.arpa",
    "big.home.arpa",
    "example.com",
    "EXAMPLE.org",
    "local",
    "arpa",
    "",
];

const TYPES: &[u16] = &[
    1, 28, 5, 15, 16, 65, 6, 2, 255, 252, 251, 41, 12, 0, 99, 65535,
];

fn edns_variants() -> Vec<Edns> {
    vec![
        Edns::None,
        Edns::Opt(512, 0, false, false),
        Edns::Opt(1232, 0, false, false),
        Edns::Opt(4096, 0, true, false),
        Edns::Opt(1000, 0, false, false),
        Edns::Opt(100, 0, false, false),
        Edns::Opt(4096, 1, false, false),
        Edns::Opt(4096, 0, false, true),
    ]
}

#[test]
fn fast_answers_equal_the_general_path_byte_for_byte() {
    let snap = snapshot();
    let long = format!(
        "{}.{}.{}.{}.home.arpa",
        "l".repeat(61),
        "O".repeat(61),
        "n".repeat(61),
        "g".repeat(53)
    );
    let too_long_missing = format!(
        "{}.{}.{}.{}.home.arpa",
        "m".repeat(61),
        "o".repeat(61),
        "n".repeat(61),
        "g".repeat(53)
    );
    let mut names: Vec<Vec<u8>> = NAMES.iter().map(|s| wire_name(s)).collect();
    // Missing names of the same lengths, one below the sub-zone xx, one
    // not, for label lengths around the made-up names' split.
    for k in 1..=6 {
        for first in [63, 40, 5] {
            for below in ["xx", "ab", "XX"] {
                let label = "m".repeat(first);
                let extra = "k".repeat(k);
                names.push(wire_name(&format!("{label}.{extra}.{below}.home.arpa")));
                names.push(wire_name(&format!("{label}.{below}.home.arpa")));
                names.push(wire_name(&format!(
                    "{extra}.{label}.{label}.{below}.home.arpa"
                )));
            }
        }
    }
    names.push(wire_name(&long));
    names.push(wire_name(&too_long_missing));
    // Bytes outside letters, digits, '-' and '_': the general path's.
    names.push(b"\x03n*s\x04home\x04arpa\x00".to_vec());
    names.push(b"\x03n\xc3s\x04home\x04arpa\x00".to_vec());
    // A compression pointer in the question: the general path's.
    names.push(b"\x03nas\xc0\x0c".to_vec());

    let flag_sets: [[u8; 2]; 6] = [
        [0x00, 0x00],
        [0x01, 0x00],
        [0x01, 0x10],
        [0x01, 0x20],
        [0x07, 0xff],
        [0x81, 0x00],
    ];
    let mut fast = 0;
    let mut total = 0;
    for name in &names {
        for &qtype in TYPES {
            for qclass in [1u16, 3, 255] {
                for edns in edns_variants() {
                    for flags in flag_sets {
                        let q = query(0xbeef, flags, name, qtype, qclass, edns);
                        total += 1;
                        if check(&snap, &q).is_some() {
                            fast += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(fast > total / 10, "the fast path took {fast} of {total}");

    // The common cases are taken.
    for (name, qtype, edns) in [
        ("nas.home.arpa", 1, Edns::None),
        ("NAS.home.arpa", 28, Edns::Opt(1232, 0, false, false)),
        ("share.test.local", 1, Edns::None),
        ("files.home.arpa", 5, Edns::None),
        ("nope.home.arpa", 1, Edns::None),
        ("nope.iot.home.arpa", 28, Edns::Opt(4096, 0, true, false)),
        ("b.home.arpa", 1, Edns::None),
        ("nas.home.arpa", 65, Edns::None),
        ("example.com", 1, Edns::None),
        ("medium.home.arpa", 1, Edns::Opt(1232, 0, false, false)),
    ] {
        let q = query(7, [0x01, 0x00], &wire_name(name), qtype, 1, edns);
        assert!(
            check(&snap, &q).is_some(),
            "{name} {qtype} not on the fast path"
        );
    }
    // What must stay general: truncation, EDNS options and versions, SOA,
    // NS, ANY, zone transfers, other classes, responses, other opcodes.
    for (name, qtype, qclass, edns, flags) in [
        ("medium.home.arpa", 1, 1, Edns::None, [1, 0]),
        (
            "big.home.arpa",
            1,
            1,
            Edns::Opt(4096, 0, false, false),
            [1, 0],
        ),
        (
            "nas.home.arpa",
            1,
            1,
            Edns::Opt(4096, 0, false, true),
            [1, 0],
        ),
        (
            "nas.home.arpa",
            1,
            1,
            Edns::Opt(4096, 1, false, false),
            [1, 0],
        ),
        ("home.arpa", 6, 1, Edns::None, [1, 0]),
        ("home.arpa", 2, 1, Edns::None, [1, 0]),
        ("nas.home.arpa", 255, 1, Edns::None, [1, 0]),
        ("home.arpa", 252, 1, Edns::None, [1, 0]),
        ("nas.home.arpa", 1, 3, Edns::None, [1, 0]),
        ("nas.home.arpa", 1, 1, Edns::None, [0x81, 0]),
        ("nas.home.arpa", 1, 1, Edns::None, [0x11, 0]),
    ] {
        let q = query(7, flags, &wire_name(name), qtype, qclass, edns);
        assert!(check(&snap, &q).is_none(), "{name} {qtype} taken");
    }
}

#[test]
fn malformed_queries_are_left_to_the_general_path_or_answered_alike() {
    let snap = snapshot();
    let base = [
        query(1, [1, 0], &wire_name("nas.home.arpa"), 1, 1, Edns::None),
        query(
            2,
            [1, 0],
            &wire_name("nope.home.arpa"),
            28,
            1,
            Edns::Opt(1232, 0, false, false),
        ),
        query(3, [1, 0], &wire_name("example.com"), 1, 1, Edns::None),
    ];
    for q in &base {
        // Every prefix, and trailing bytes.
        for len in 0..=q.len() {
            check(&snap, &q[..len]);
        }
        let mut longer = q.clone();
        longer.extend_from_slice(&[0, 0, 0]);
        check(&snap, &longer);
        // Every single byte changed to a few values.
        for i in 0..q.len() {
            for v in [0x00, 0x01, 0x3f, 0x40, 0xc0, 0xff, q[i] ^ 0x20] {
                let mut m = q.clone();
                m[i] = v;
                check(&snap, &m);
            }
        }
        // Pseudo-random multi-byte changes.
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..5000 {
            let mut m = q.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = (x as usize) % m.len();
                m[i] = (x >> 8) as u8;
            }
            check(&snap, &m);
        }
    }
}

#[test]
fn the_table_follows_each_new_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::open(&zones(), dir.path()).unwrap();
    let view = engine.view();
    let q = query(9, [1, 0], &wire_name("new.home.arpa"), 1, 1, Edns::None);
    let rcode = |resp: &[u8]| resp[3] & 0x0f;
    let resp = check(&view.current(), &q).expect("fast");
    assert_eq!(rcode(&resp), 3, "NXDOMAIN before");
    engine
        .add_record(&n("new.home.arpa"), a("192.168.1.77"))
        .unwrap();
    let resp = check(&view.current(), &q).expect("fast");
    assert_eq!(rcode(&resp), 0, "NOERROR right after the change");
    assert!(resp.ends_with(&[192, 168, 1, 77]), "{resp:02x?}");
    engine.remove(&n("new.home.arpa")).unwrap();
    let resp = check(&view.current(), &q).expect("fast");
    assert_eq!(rcode(&resp), 3, "NXDOMAIN after the removal");
}

async fn exchange(socket: &tokio::net::UdpSocket, to: SocketAddr, q: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(q, to).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await {
        Ok(Ok((len, _))) => Some(buf[..len].to_vec()),
        Ok(Err(e)) => panic!("receive: {e}"),
        Err(_) => None,
    }
}

/// Over real sockets: our UDP server against hickory's own UDP server with
/// the same handler and the same records.
#[tokio::test]
async fn our_udp_server_answers_as_hickorys_udp_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join(hearth_dnsd::engine::STATE_FILE),
        serde_json::to_vec(&state())?,
    )?;
    let engine = Engine::open(&zones(), dir.path())?;
    let ours = DnsServer::start(&["127.0.0.1:0".parse()?], engine.view()).await?;
    let ours_addr = ours.local_addrs()[0];
    let mut reference = hickory_server::Server::new(ZoneHandler::new(engine.view()));
    let ref_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let ref_addr = ref_socket.local_addr()?;
    reference.register_socket(ref_socket);

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut compared = 0;
    for name in NAMES {
        for &qtype in &[1u16, 28, 5, 16, 6, 2, 255, 252] {
            for edns in edns_variants() {
                let q = query(0x1234, [0x01, 0x10], &wire_name(name), qtype, 1, edns);
                let theirs = exchange(&client, ref_addr, &q).await;
                let mine = exchange(&client, ours_addr, &q).await;
                assert_eq!(mine, theirs, "{name} {qtype}: {q:02x?}");
                compared += 1;
            }
        }
    }
    // Garbage: a short packet (no answer from either), a response, bad
    // counts.
    for q in [
        vec![1u8, 2, 3],
        query(5, [0x81, 0], &wire_name("nas.home.arpa"), 1, 1, Edns::None),
        {
            let mut q = query(6, [1, 0], &wire_name("nas.home.arpa"), 1, 1, Edns::None);
            q[5] = 2;
            q
        },
    ] {
        let theirs = exchange(&client, ref_addr, &q).await;
        let mine = exchange(&client, ours_addr, &q).await;
        assert_eq!(mine, theirs, "{q:02x?}");
    }
    assert!(compared > 100);
    ours.shutdown().await;
    reference.shutdown_gracefully().await?;
    Ok(())
}

/// The UDP sockets share their port (SO_REUSEPORT) only among themselves:
/// a second server on an address in use still fails to start.
#[tokio::test]
async fn a_second_server_on_the_same_address_fails_to_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(&zones(), dir.path())?;
    let first = DnsServer::start(&["127.0.0.1:0".parse()?], engine.view()).await?;
    let addr = first.local_addrs()[0];
    let second = DnsServer::start(&[addr], engine.view()).await;
    let err = second.expect_err("the address is in use");
    assert!(err.to_string().contains("in use"), "{err}");
    // A plain UDP socket cannot take the port either.
    assert!(std::net::UdpSocket::bind(addr).is_err());
    first.shutdown().await;
    // After the shutdown the address is free again, for UDP too.
    let udp = std::net::UdpSocket::bind(addr)?;
    drop(udp);
    Ok(())
}

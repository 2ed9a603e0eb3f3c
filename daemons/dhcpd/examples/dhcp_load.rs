//! A small, bounded DHCPv4 client load for docs/perf.md: N simulated
//! clients (random locally administered MACs), each a DISCOVER → OFFER →
//! REQUEST → ACK exchange, at most W exchanges in flight. Run it inside a
//! network namespace whose interface reaches the server:
//!
//! ```sh
//! ip netns exec NS target/debug/examples/dhcp_load --iface eth0 --clients 1000 --window 1
//! ```
//!
//! Prints one JSON line: clients, acked, failed, seconds, leases_per_s and
//! the DISCOVER→ACK latency (p50, p90, p99, max, in ms). Packets are built
//! and read with dhcproto. Nothing is configured on the interface.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

struct Args {
    iface: String,
    clients: usize,
    window: usize,
    timeout: Duration,
}

fn args() -> Args {
    let mut a = Args {
        iface: "eth0".into(),
        clients: 1000,
        window: 1,
        timeout: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--iface" => a.iface = v,
            "--clients" => a.clients = v.parse().expect("a number"),
            "--window" => a.window = v.parse::<usize>().expect("a number").max(1),
            "--timeout-ms" => a.timeout = Duration::from_millis(v.parse().expect("a number")),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

struct Exchange {
    mac: [u8; 6],
    started: Instant,
    sent: Instant,
    requested: bool,
}

fn request(
    xid: u32,
    mac: &[u8; 6],
    kind: MessageType,
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    let mut m = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        mac,
    );
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    if let Some((ip, server)) = offer {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
    }
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    let mut out = Vec::new();
    m.encode(&mut Encoder::new(&mut out)).unwrap();
    out
}

fn main() {
    let a = args();
    let sock = {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        s.bind_device(Some(a.iface.as_bytes())).unwrap();
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
            .unwrap();
        let u: UdpSocket = s.into();
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        u
    };
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let mut seed: u64 = std::process::id() as u64 ^ 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut inflight: HashMap<u32, Exchange> = HashMap::new();
    let mut latencies: Vec<f64> = Vec::with_capacity(a.clients);
    let (mut started, mut failed) = (0usize, 0usize);
    let t0 = Instant::now();
    let mut buf = [0u8; 1500];
    while latencies.len() + failed < a.clients {
        while inflight.len() < a.window && started < a.clients {
            let r = rnd();
            let mut mac = [0x02, 0x42, 0, 0, 0, 0];
            mac[2..].copy_from_slice(&(r as u32).to_be_bytes());
            let xid = (r >> 32) as u32;
            sock.send_to(&request(xid, &mac, MessageType::Discover, None), to)
                .unwrap();
            let now = Instant::now();
            inflight.insert(
                xid,
                Exchange {
                    mac,
                    started: now,
                    sent: now,
                    requested: false,
                },
            );
            started += 1;
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            let Some(ex) = inflight.get_mut(&m.xid()) else {
                continue;
            };
            match m.opts().msg_type() {
                Some(MessageType::Offer) if !ex.requested => {
                    let server = match m.opts().get(OptionCode::ServerIdentifier) {
                        Some(DhcpOption::ServerIdentifier(s)) => *s,
                        _ => continue,
                    };
                    let pkt = request(
                        m.xid(),
                        &ex.mac,
                        MessageType::Request,
                        Some((m.yiaddr(), server)),
                    );
                    sock.send_to(&pkt, to).unwrap();
                    ex.requested = true;
                    ex.sent = Instant::now();
                }
                Some(MessageType::Ack) if ex.requested => {
                    latencies.push(ex.started.elapsed().as_secs_f64() * 1e3);
                    inflight.remove(&m.xid());
                }
                Some(MessageType::Nak) => {
                    inflight.remove(&m.xid());
                    failed += 1;
                }
                _ => {}
            }
        }
        let late: Vec<u32> = inflight
            .iter()
            .filter(|(_, e)| e.sent.elapsed() > a.timeout)
            .map(|(x, _)| *x)
            .collect();
        for x in late {
            inflight.remove(&x);
            failed += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    latencies.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        (latencies[i] * 1000.0).round() / 1000.0
    };
    println!(
        "{{\"clients\": {}, \"window\": {}, \"acked\": {}, \"failed\": {}, \"seconds\": {:.3}, \"leases_per_s\": {:.1}, \"latency_ms\": {{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"max\": {}}}}}",
        a.clients,
        a.window,
        latencies.len(),
        failed,
        secs,
        latencies.len() as f64 / secs,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

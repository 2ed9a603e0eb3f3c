//! hearth-dnsd's engine and server on loopback, queried with the real `dig`.
#![allow(clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use hearth_common::types::{Address, DnsName};
use hearth_dnsd::{DnsServer, Engine, ZoneConfig, ZoneError};
use support::{a, dig, n, Reply};

fn zones() -> Vec<ZoneConfig> {
    vec![
        ZoneConfig::new(n("home.arpa"), vec![a("192.168.1.1")]),
        ZoneConfig::new(n("test.local"), vec![a("192.168.1.1")]),
    ]
}

struct Fixture {
    dir: tempfile::TempDir,
    engine: Engine,
    server: DnsServer,
    addr: SocketAddr,
}

impl Fixture {
    async fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::open(dir, "127.0.0.1:0".parse()?).await
    }

    async fn open(dir: tempfile::TempDir, listen: SocketAddr) -> Result<Self> {
        let engine = Engine::open(&zones(), dir.path())?;
        // After a shutdown the old sockets may close a moment later: retry
        // while the port is still in use (bounded).
        let mut tries = 0;
        let server = loop {
            match DnsServer::start(&[listen], engine.view()).await {
                Ok(s) => break s,
                Err(e) if tries < 100 && e.to_string().contains("in use") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let addr = server.local_addrs()[0];
        Ok(Fixture {
            dir,
            engine,
            server,
            addr,
        })
    }

    /// Stops the server, drops the engine, and opens both again from the
    /// state directory on the same address.
    async fn restart(self) -> Result<Self> {
        let Fixture {
            dir,
            engine,
            server,
            addr,
        } = self;
        server.shutdown().await;
        drop(engine);
        Self::open(dir, addr).await
    }

    async fn dig(&self, name: &str, rtype: &str) -> Result<Reply> {
        dig(self.addr, name, rtype, &[]).await
    }

    fn state_dir(&self) -> &Path {
        self.dir.path()
    }
}

#[tokio::test]
async fn a_and_aaaa_records_are_answered_over_udp_and_tcp() -> Result<()> {
    let mut f = Fixture::new().await?;
    let nas = n("nas.home.arpa");
    f.engine.add_record(&nas, a("192.168.1.10"))?;
    f.engine.add_record(&nas, a("192.168.1.11"))?;
    f.engine.add_record(&nas, a("fd00::10"))?;

    let r = f.dig("nas.home.arpa", "A").await?;
    assert_eq!(r.status, "NOERROR");
    assert!(r.has_flag("aa"), "authoritative: {r:?}");
    assert!(!r.has_flag("ra"), "never recursion available: {r:?}");
    assert_eq!(r.answer_data("A"), ["192.168.1.10", "192.168.1.11"]);
    assert!(r
        .answer
        .iter()
        .all(|x| x.ttl == 300 && x.name == "nas.home.arpa."));

    let r = f.dig("NAS.Home.Arpa", "AAAA").await?;
    assert_eq!(r.answer_data("AAAA"), ["fd00::10"]);

    let r = dig(f.addr, "nas.home.arpa", "A", &["+tcp"]).await?;
    assert_eq!(r.answer_data("A"), ["192.168.1.10", "192.168.1.11"]);

    // The demo's record, in a second zone.
    f.engine.add_record(&n("test.local"), a("192.168.1.100"))?;
    let r = f.dig("test.local", "A").await?;
    assert_eq!(r.answer_data("A"), ["192.168.1.100"]);
    Ok(())
}

#[tokio::test]
async fn alias_answer_includes_the_targets_records() -> Result<()> {
    let mut f = Fixture::new().await?;
    f.engine
        .add_record(&n("nas.home.arpa"), a("192.168.1.10"))?;
    f.engine
        .add_alias(&n("files.home.arpa"), &n("nas.home.arpa"))?;
    f.engine
        .add_alias(&n("share.test.local"), &n("files.home.arpa"))?;
    f.engine.add_alias(&n("ext.home.arpa"), &n("example.org"))?;

    let r = f.dig("share.test.local", "A").await?;
    assert_eq!(r.status, "NOERROR");
    assert_eq!(
        r.answer_data("CNAME"),
        ["files.home.arpa.", "nas.home.arpa."]
    );
    assert_eq!(r.answer_data("A"), ["192.168.1.10"]);

    let r = f.dig("files.home.arpa", "CNAME").await?;
    assert_eq!(r.answer_data("CNAME"), ["nas.home.arpa."]);
    assert!(r.answer_data("A").is_empty());

    // A target outside the zones is not chased: no recursion.
    let r = f.dig("ext.home.arpa", "A").await?;
    assert_eq!(r.status, "NOERROR");
    assert_eq!(r.answer_data("CNAME"), ["example.org."]);
    assert!(r.answer_data("A").is_empty());
    Ok(())
}

#[tokio::test]
async fn unknown_name_in_a_zone_is_nxdomain_with_the_soa() -> Result<()> {
    let mut f = Fixture::new().await?;
    f.engine
        .add_record(&n("nas.home.arpa"), a("192.168.1.10"))?;
    let r = f.dig("nope.home.arpa", "A").await?;
    assert_eq!(r.status, "NXDOMAIN");
    assert!(r.has_flag("aa"));
    assert!(r.answer.is_empty());
    assert_eq!(r.authority.len(), 1);
    assert_eq!(r.authority[0].rtype, "SOA");
    assert_eq!(r.authority[0].name, "home.arpa.");

    // The name exists without that type: NODATA.
    let r = f.dig("nas.home.arpa", "AAAA").await?;
    assert_eq!(r.status, "NOERROR");
    assert!(r.answer.is_empty());
    assert_eq!(r.authority[0].rtype, "SOA");

    // A removed name is gone at once.
    f.engine.remove(&n("nas.home.arpa"))?;
    let r = f.dig("nas.home.arpa", "A").await?;
    assert_eq!(r.status, "NXDOMAIN");
    Ok(())
}

#[tokio::test]
async fn names_outside_every_zone_are_refused_and_never_resolved() -> Result<()> {
    let f = Fixture::new().await?;
    for (name, rtype) in [
        ("example.com", "A"),
        ("arpa", "SOA"),
        (".", "NS"),
        ("local", "A"),
    ] {
        let r = dig(f.addr, name, rtype, &["+rec"]).await?;
        assert_eq!(r.status, "REFUSED", "{name}: {r:?}");
        assert!(r.answer.is_empty() && r.authority.is_empty());
        assert!(!r.has_flag("ra"), "{name}: {r:?}");
        assert!(!r.has_flag("aa"), "{name}: {r:?}");
    }
    // No zone transfer either.
    let r = dig(f.addr, "home.arpa", "AXFR", &["+tcp"]).await;
    assert!(
        r.map(|r| r.status == "REFUSED").unwrap_or(true),
        "AXFR is refused"
    );
    Ok(())
}

#[tokio::test]
async fn each_apex_serves_its_soa_and_ns_with_the_configured_server() -> Result<()> {
    let f = Fixture::new().await?;
    for zone in ["home.arpa", "test.local"] {
        let r = f.dig(zone, "SOA").await?;
        assert_eq!(r.status, "NOERROR");
        let soa = &r.answer_data("SOA")[0];
        assert!(
            soa.starts_with(&format!("ns.{zone}. hostmaster.{zone}. 1 ")),
            "{soa}"
        );
        let r = f.dig(zone, "NS").await?;
        assert_eq!(r.answer_data("NS"), [format!("ns.{zone}.")]);
        assert!(
            r.additional
                .iter()
                .any(|x| x.rtype == "A" && x.data == "192.168.1.1"),
            "glue for the name server: {r:?}"
        );
        let r = f.dig(&format!("ns.{zone}"), "A").await?;
        assert_eq!(r.answer_data("A"), ["192.168.1.1"]);
    }
    Ok(())
}

#[tokio::test]
async fn the_soa_serial_increases_with_every_change() -> Result<()> {
    let mut f = Fixture::new().await?;
    let serial = |r: &Reply| r.soa_serial().expect("an SOA");
    let s0 = serial(&f.dig("home.arpa", "SOA").await?);
    let c = f
        .engine
        .add_record(&n("nas.home.arpa"), a("192.168.1.10"))?;
    let s1 = serial(&f.dig("home.arpa", "SOA").await?);
    assert!(s1 > s0);
    assert_eq!((c.serial_before, c.serial_after), (s0, s1));
    f.engine
        .add_alias(&n("www.home.arpa"), &n("nas.home.arpa"))?;
    let s2 = serial(&f.dig("home.arpa", "SOA").await?);
    f.engine.remove(&n("www.home.arpa"))?;
    let s3 = serial(&f.dig("home.arpa", "SOA").await?);
    assert!(s0 < s1 && s1 < s2 && s2 < s3, "{s0} {s1} {s2} {s3}");
    // The negative answer carries the new serial too.
    let r = f.dig("www.home.arpa", "A").await?;
    assert_eq!(serial(&r), s3);
    // The other zone did not change.
    assert_eq!(serial(&f.dig("test.local", "SOA").await?), 1);
    Ok(())
}

#[tokio::test]
async fn records_and_serials_survive_a_restart() -> Result<()> {
    let mut f = Fixture::new().await?;
    f.engine
        .add_record(&n("nas.home.arpa"), a("192.168.1.10"))?;
    f.engine.add_record(&n("nas.home.arpa"), a("fd00::10"))?;
    f.engine
        .add_alias(&n("files.home.arpa"), &n("nas.home.arpa"))?;
    let serial = f.dig("home.arpa", "SOA").await?.soa_serial();
    assert!(f.state_dir().join("zones.json").exists());

    let addr = f.addr;
    let mut f = f.restart().await?;
    assert_eq!(f.addr, addr);
    let r = f.dig("files.home.arpa", "A").await?;
    assert_eq!(r.answer_data("CNAME"), ["nas.home.arpa."]);
    assert_eq!(r.answer_data("A"), ["192.168.1.10"]);
    assert_eq!(
        f.dig("nas.home.arpa", "AAAA").await?.answer_data("AAAA"),
        ["fd00::10"]
    );
    assert_eq!(f.dig("home.arpa", "SOA").await?.soa_serial(), serial);

    // And the serial keeps rising after the restart.
    let c = f.engine.remove(&n("files.home.arpa"))?;
    assert_eq!(Some(c.serial_before), serial);
    assert!(Some(c.serial_after) > serial);
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_named_error_and_changes_nothing() -> Result<()> {
    let mut f = Fixture::new().await?;
    let nas = n("nas.home.arpa");
    f.engine.add_record(&nas, a("192.168.1.10"))?;
    f.engine.add_alias(&n("www.home.arpa"), &nas)?;
    let serial = f.dig("home.arpa", "SOA").await?.soa_serial();
    let file = std::fs::read(f.state_dir().join("zones.json"))?;

    // Invalid names and addresses are refused at the edge, naming the value.
    let e = DnsName::parse_field("name", "bad..name.home.arpa").expect_err("invalid");
    assert!(e.to_string().contains("bad..name.home.arpa"), "{e}");
    let e = Address::parse_field("address", "192.168.1.300").expect_err("invalid");
    assert!(e.to_string().contains("192.168.1.300"), "{e}");

    let outside = f
        .engine
        .add_record(&n("printer.example.com"), a("192.168.1.20"));
    assert!(
        matches!(&outside, Err(ZoneError::InvalidArgument(m)) if m.contains("printer.example.com")),
        "{outside:?}"
    );
    let beside = f.engine.add_alias(&nas, &n("other.home.arpa"));
    assert!(matches!(beside, Err(ZoneError::Conflict(_))), "{beside:?}");
    let beside = f.engine.add_record(&n("www.home.arpa"), a("192.168.1.30"));
    assert!(matches!(beside, Err(ZoneError::Conflict(_))), "{beside:?}");
    let dup = f.engine.add_record(&nas, a("192.168.1.10"));
    assert!(
        matches!(&dup, Err(ZoneError::Conflict(m)) if m.contains("192.168.1.10")),
        "{dup:?}"
    );
    let missing = f.engine.remove(&n("ghost.home.arpa"));
    assert!(
        matches!(missing, Err(ZoneError::NotFound(_))),
        "{missing:?}"
    );

    // Nothing changed: not the served data, not the serial, not the file.
    assert_eq!(f.dig("home.arpa", "SOA").await?.soa_serial(), serial);
    assert_eq!(
        f.dig("nas.home.arpa", "A").await?.answer_data("A"),
        ["192.168.1.10"]
    );
    assert_eq!(
        f.dig("www.home.arpa", "A").await?.answer_data("CNAME"),
        ["nas.home.arpa."]
    );
    assert_eq!(f.dig("printer.example.com", "A").await?.status, "REFUSED");
    assert_eq!(f.dig("ghost.home.arpa", "A").await?.status, "NXDOMAIN");
    assert_eq!(std::fs::read(f.state_dir().join("zones.json"))?, file);
    Ok(())
}

#[tokio::test]
async fn the_advertised_edns_payload_size_is_at_most_1232() -> Result<()> {
    let mut f = Fixture::new().await?;
    f.engine
        .add_record(&n("nas.home.arpa"), a("192.168.1.10"))?;
    for bufsize in ["4096", "65535", "1233"] {
        let opt = format!("+bufsize={bufsize}");
        for (name, status) in [("nas.home.arpa", "NOERROR"), ("example.com", "REFUSED")] {
            let r = dig(f.addr, name, "A", &[&opt]).await?;
            assert_eq!(r.status, status, "{r:?}");
            let udp = r.edns_udp.expect("an OPT record in the reply");
            assert!(udp <= 1232, "{name} asked with {opt}: OPT says udp {udp}");
            assert!(udp >= 512, "{name} asked with {opt}: OPT says udp {udp}");
        }
    }
    // An answer larger than 1232 bytes is truncated over UDP even when the
    // client offers more, and whole over TCP.
    let big = n("big.home.arpa");
    for i in 1..=120 {
        f.engine.add_record(&big, a(&format!("192.168.2.{i}")))?;
    }
    let r = dig(f.addr, "big.home.arpa", "A", &["+bufsize=4096", "+ignore"]).await?;
    let (flags, size) = (&r.flags, r.size.expect("a size"));
    assert!(
        r.has_flag("tc") && size <= 1232,
        "UDP answer of {size} bytes, flags {flags:?}, OPT udp {:?}",
        r.edns_udp
    );
    let r = dig(f.addr, "big.home.arpa", "A", &["+tcp"]).await?;
    assert_eq!(r.answer_data("A").len(), 120);
    assert!(r.size.expect("a size") > 1232, "{:?}", r.size);
    // A smaller size asked for is not raised above what was asked (down to 512).
    let r = dig(f.addr, "nas.home.arpa", "A", &["+bufsize=1000"]).await?;
    assert_eq!(r.edns_udp, Some(1000), "{r:?}");
    Ok(())
}

//! The real hearth-dnsd binary on a private bus: records changed over
//! `org.hearth.Dns1` (through hearth-common's proxy), answered to the real
//! `dig`, kept across a restart, and refused to callers without the role.
#![allow(clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use hearth_common::contract::dns::{self as contract, RecordType};
use hearth_common::proxies::dns::DnsProxy;
use hearth_common::HearthError;
use support::dig;

/// The project's private test bus (the shipped policy), stopped on drop.
type Bus = hearth_testbed::PrivateBus;

/// A running hearth-dnsd, started and awaited like systemd does (READY=1
/// on its notify socket), stopped when dropped.
struct Daemon(hearth_testbed::Started);

impl Daemon {
    async fn start(bus: &Bus, dir: &Path, config: &Path) -> Result<Daemon> {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-dnsd"));
        cmd.arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .env("HEARTH_LOG", "warn");
        let dir = dir.to_path_buf();
        // The wait blocks: off the runtime.
        let started = tokio::task::spawn_blocking(move || {
            hearth_testbed::Daemon::start(hearth_common::names::DNS, cmd, &dir)
        })
        .await??;
        Ok(Daemon(started))
    }

    /// SIGTERM, then the exit status must be success.
    async fn stop(mut self) -> Result<()> {
        let exit =
            tokio::task::spawn_blocking(move || self.0 .0.terminate(Duration::from_secs(20)))
                .await??;
        assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    // A port free for both UDP and TCP right now.
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

fn write_config(dir: &Path, port: u16, access: &str) -> Result<PathBuf> {
    let path = dir.join(format!("dnsd-{}.toml", access.len()));
    std::fs::write(
        &path,
        format!(
            "listen = [\"127.0.0.1:{port}\"]\n\
             [[zone]]\nname = \"home.arpa\"\nns_addresses = [\"127.0.0.1\"]\n\
             [[zone]]\nname = \"local\"\nns_name = \"ns.home.arpa\"\nns_addresses = [\"127.0.0.1\"]\n\
             {access}"
        ),
    )?;
    Ok(path)
}

async fn proxy(bus: &Bus) -> Result<DnsProxy<'static>> {
    let conn = zbus::connection::Builder::address(bus.address.as_str())?
        .build()
        .await?;
    Ok(DnsProxy::new(&conn).await?)
}

fn kind<T: std::fmt::Debug>(r: &Result<T, HearthError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    }
}

#[tokio::test]
async fn records_changed_over_the_bus_are_served_and_survive_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::start(dir.path())?;
    let port = free_port()?;
    let server: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = write_config(dir.path(), port, "")?;
    let daemon = Daemon::start(&bus, dir.path(), &config).await?;
    let dns = proxy(&bus).await?;

    // A preview changes nothing; its diff is exactly what the real change
    // then does: the one record dig answers, and the serial the SOA shows.
    let soa_before = dig(server, "local", "SOA", &[]).await?.soa_serial();
    let preview = contract::add_record(&dns, "test.local", "192.168.1.100", true).await?;
    assert!(preview.dry_run);
    assert!(preview.removed.is_empty());
    assert_eq!(Some(preview.serial_before), soa_before);
    assert_eq!(
        dig(server, "test.local", "A", &[]).await?.status,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(server, "local", "SOA", &[]).await?.soa_serial(),
        soa_before
    );

    // The demo's record.
    let c = contract::add_record(&dns, "test.local", "192.168.1.100", false).await?;
    assert_eq!(
        (c.added.clone(), c.removed.clone()),
        (preview.added.clone(), vec![])
    );
    assert_eq!(
        (c.serial_before, c.serial_after),
        (preview.serial_before, preview.serial_after)
    );
    assert_eq!(c.zone.as_str(), "local");
    let r = dig(server, "test.local", "A", &[]).await?;
    assert_eq!(r.status, "NOERROR");
    assert!(r.has_flag("aa"));
    assert_eq!(r.answer_data("A"), ["192.168.1.100"]);
    assert_eq!(r.soa_serial(), None);
    let answered: Vec<(String, String, String, u32)> = r
        .answer
        .iter()
        .map(|x| {
            let name = x.name.trim_end_matches('.').to_string();
            (name, x.rtype.clone(), x.data.clone(), x.ttl)
        })
        .collect();
    let previewed: Vec<(String, String, String, u32)> = preview
        .added
        .iter()
        .map(|x| {
            (
                x.name.to_string(),
                x.rtype.to_string(),
                x.value.clone(),
                x.ttl,
            )
        })
        .collect();
    assert_eq!(
        previewed, answered,
        "the preview lists exactly what dig answers"
    );
    assert_eq!(
        dig(server, "local", "SOA", &[]).await?.soa_serial(),
        Some(preview.serial_after)
    );
    assert_eq!(
        preview.to_string(),
        format!(
            "Adds A test.local → 192.168.1.100 (zone local, serial {} → {}).",
            preview.serial_before, preview.serial_after
        )
    );

    // An alias, and an AAAA record.
    dns.add_record("nas.home.arpa", "fd00::10", false).await?;
    let alias = contract::add_alias(&dns, "files.home.arpa", "nas.home.arpa", false).await?;
    assert_eq!(alias.added[0].rtype, RecordType::CNAME);
    let r = dig(server, "files.home.arpa", "AAAA", &[]).await?;
    assert_eq!(r.answer_data("CNAME"), ["nas.home.arpa."]);
    assert_eq!(r.answer_data("AAAA"), ["fd00::10"]);

    // Bad input is named and changes nothing.
    let before = contract::zones(&dns).await?;
    let bad = dns
        .add_record("bad..name.home.arpa", "10.0.0.1", false)
        .await;
    assert_eq!(kind(&bad), "InvalidArgument");
    assert!(bad
        .expect_err("bad")
        .message()
        .contains("bad..name.home.arpa"));
    let bad = dns.add_record("x.home.arpa", "10.0.0.300", false).await;
    assert!(bad.expect_err("bad").message().contains("address"));
    let outside = dns
        .add_record("printer.example.com", "10.0.0.1", false)
        .await;
    assert_eq!(kind(&outside), "InvalidArgument");
    let beside = dns.add_record("files.home.arpa", "10.0.0.1", false).await;
    assert_eq!(kind(&beside), "Conflict");
    let dup = dns.add_record("test.local", "192.168.1.100", false).await;
    assert_eq!(kind(&dup), "Conflict");
    let missing = dns.remove("ghost.home.arpa", false).await;
    assert_eq!(kind(&missing), "NotFound");
    assert_eq!(contract::zones(&dns).await?, before);
    assert_eq!(
        dig(server, "printer.example.com", "A", &[]).await?.status,
        "REFUSED"
    );

    // Remove, then Restore with Remove's own result: the gate's undo (it
    // passes the raw document back).
    let removed = dns.remove("nas.home.arpa", false).await?;
    let diff: contract::ZoneDiff = hearth_common::contract::decode("Dns1.Remove", &removed)?;
    assert_eq!(diff.removed.len(), 1);
    assert_eq!(
        dig(server, "nas.home.arpa", "AAAA", &[]).await?.status,
        "NXDOMAIN"
    );
    let back = contract::restore(&dns, &[], true).await;
    assert_eq!(kind(&back), "InvalidArgument");
    dns.restore(&removed, false).await?;
    assert_eq!(
        dig(server, "nas.home.arpa", "AAAA", &[])
            .await?
            .answer_data("AAAA"),
        ["fd00::10"]
    );
    let desc = contract::name_records(&dns, "nas.home.arpa").await?;
    assert_eq!(desc.records[0].value, "fd00::10");
    assert!(!desc.fixed);
    let listing = contract::zones(&dns).await?;
    let home_serial = dig(server, "home.arpa", "SOA", &[]).await?.soa_serial();

    // Restart: the same data and serials are served. This time root is only
    // an operator: changes are refused, previews and reads allowed.
    daemon.stop().await?;
    assert!(
        dig(server, "test.local", "A", &["+time=1"]).await.is_err(),
        "nothing answers while stopped"
    );
    let config = write_config(
        dir.path(),
        port,
        "[access]\nroot_is_admin = false\noperators_group = \"root\"\n",
    )?;
    let daemon = Daemon::start(&bus, dir.path(), &config).await?;
    let dns = proxy(&bus).await?;
    assert_eq!(contract::zones(&dns).await?, listing);
    assert_eq!(
        dig(server, "test.local", "A", &[]).await?.answer_data("A"),
        ["192.168.1.100"]
    );
    assert_eq!(
        dig(server, "home.arpa", "SOA", &[]).await?.soa_serial(),
        home_serial
    );
    let refused = dns.add_record("new.home.arpa", "10.0.0.2", false).await;
    assert_eq!(kind(&refused), "NotAuthorized");
    let preview = contract::add_record(&dns, "new.home.arpa", "10.0.0.2", true).await;
    assert_eq!(kind(&preview), "ok");
    assert_eq!(contract::zones(&dns).await?, listing);
    daemon.stop().await?;
    Ok(())
}

//! hearth-dhcpd against real parts: the sandbox's private bus, hearth-netd
//! (bridges and nftables in the sandbox's namespace), hearth-dnsd, and real
//! DHCP clients (busybox `udhcpc`, ISC `dhclient`) each in its own network
//! namespace joined by a veth pair to a domain's bridge. Names are checked
//! with `dig` against hearth-dnsd.
//!
//! Needs root (namespaces, nftables) and the binaries of hearth-netd,
//! hearth-dnsd and hearth-dhcpd in target/debug.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hearth_common::contract::dhcp as dhcp_c;
use hearth_common::proxies::daemon::DaemonProxy;
use hearth_common::proxies::dhcp::DhcpProxy;
use hearth_common::proxies::network::NetworkProxy;
use hearth_testbed::{Options, Sandbox};

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc calls this with deconfig | bound | renew | nak | leasefail.
out="$OUT_DIR/$1"
env | sort > "$out"
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    ;;
esac
exit 0
"#;

const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
env | sort > "$(dirname "$0")/$reason"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_routers" ] && ip route replace default via "$new_routers" dev "$interface"
    ;;
esac
exit 0
"#;

fn sh(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("command runs")
}

fn ok(cmd: &mut Command) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client: its own namespace, a veth whose peer is enslaved to a bridge
/// in the sandbox's namespace.
struct Client {
    ns: String,
    dir: PathBuf,
}

impl Client {
    fn new(sb: &Sandbox, tag: &str, bridge: &str, mac: &str) -> Client {
        let ns = format!("{}-{tag}", sb.netns);
        let dir = sb.dir.join(format!("client-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        ok(Command::new("ip").args(["netns", "add", &ns]));
        let host_end = format!("hv{tag}");
        ok(Command::new("ip").args([
            "-n", &ns, "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name",
            &host_end,
        ]));
        ok(Command::new("ip").args(["-n", &ns, "link", "set", &host_end, "netns", &sb.netns]));
        ok(Command::new("ip").args([
            "-n", &sb.netns, "link", "set", &host_end, "master", bridge, "up",
        ]));
        ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        ok(Command::new("ip").args(["-n", &ns, "link", "set", "eth0", "up"]));
        Client { ns, dir }
    }

    /// busybox udhcpc, once: Some(its variables at "bound").
    fn udhcpc(&self, hostname: Option<&str>) -> Option<BTreeMap<String, String>> {
        let script = self.dir.join("udhcpc.sh");
        std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
        ok(Command::new("chmod").arg("755").arg(&script));
        let _ = std::fs::remove_file(self.dir.join("bound"));
        let mut c = Command::new("ip");
        c.args([
            "netns", "exec", &self.ns, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
        ])
        .args(["-t", "4", "-T", "1", "-A", "1", "-s"])
        .arg(&script)
        .env("OUT_DIR", &self.dir);
        if let Some(h) = hostname {
            c.args(["-x", &format!("hostname:{h}")]);
        }
        let out = sh(&mut c);
        if !out.status.success() {
            return None;
        }
        Some(read_env(&self.dir.join("bound")))
    }

    /// ISC dhclient, once, in the foreground until bound: Some(variables).
    fn dhclient(&self, hostname: &str) -> Option<BTreeMap<String, String>> {
        let script = self.dir.join("dhclient.sh");
        std::fs::write(&script, DHCLIENT_SCRIPT).unwrap();
        ok(Command::new("chmod").arg("755").arg(&script));
        let conf = self.dir.join("dhclient.conf");
        std::fs::write(
            &conf,
            format!("send host-name \"{hostname}\";\nrequest subnet-mask, routers, domain-name-servers, domain-name, domain-search;\n"),
        )
        .unwrap();
        let out = sh(Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &self.ns, "dhclient", "-1", "-v", "-sf",
            ])
            .arg(&script)
            .arg("-lf")
            .arg(self.dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(self.dir.join("dhclient.pid"))
            .arg("-cf")
            .arg(&conf)
            .arg("eth0")
            .env("OUT_DIR", &self.dir));
        if !out.status.success() {
            eprintln!(
                "dhclient: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(read_env(&self.dir.join("BOUND")))
    }

    /// `dhclient -r`: releases the lease the earlier [`Client::dhclient`]
    /// run holds (a DHCPRELEASE to the server) and stops that client.
    /// (busybox udhcpc -q -R quits before it counts as bound and sends none.)
    fn dhclient_release(&self) {
        ok(Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &self.ns, "dhclient", "-r", "-v", "-sf",
            ])
            .arg(self.dir.join("dhclient.sh"))
            .arg("-lf")
            .arg(self.dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(self.dir.join("dhclient.pid"))
            .arg("-cf")
            .arg(self.dir.join("dhclient.conf"))
            .arg("eth0")
            .env("OUT_DIR", &self.dir));
    }

    fn ping(&self, ip: &str) -> bool {
        sh(Command::new("ip").args(["netns", "exec", &self.ns, "ping", "-c", "1", "-W", "1", ip]))
            .status
            .success()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("dhclient.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

fn read_env(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `dig` run inside namespace `ns` against `server`:`port`.
fn dig_in(ns: &str, server: &str, port: &str, name: &str) -> String {
    let out = sh(Command::new("ip").args([
        "netns",
        "exec",
        ns,
        "dig",
        "+short",
        "+time=2",
        "+tries=1",
        "-p",
        port,
        &format!("@{server}"),
        name,
        "A",
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `dig` from the sandbox's namespace at hearth-dnsd's loopback listener.
fn dig(sb: &Sandbox, name: &str) -> String {
    dig_in(&sb.netns, "127.0.0.1", &sb.env["HEARTH_DNS_PORT"], name)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Bus {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl Bus {
    fn new(sb: &Sandbox) -> Bus {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr = sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone();
        let conn = rt.block_on(async {
            zbus::connection::Builder::address(addr.as_str())
                .unwrap()
                .build()
                .await
                .unwrap()
        });
        Bus { rt, conn }
    }

    fn dhcp<T>(&self, f: impl AsyncFnOnce(&DhcpProxy<'_>) -> T) -> T {
        self.rt.block_on(async {
            let p = DhcpProxy::new(&self.conn).await.unwrap();
            f(&p).await
        })
    }

    fn net<T>(&self, f: impl AsyncFnOnce(&NetworkProxy<'_>) -> T) -> T {
        self.rt.block_on(async {
            let p = NetworkProxy::new(&self.conn).await.unwrap();
            f(&p).await
        })
    }

    fn pools(&self) -> Vec<dhcp_c::Pool> {
        self.dhcp(async |p| dhcp_c::pools(p).await.unwrap())
    }

    fn served(&self, domain: &str) -> bool {
        self.pools().iter().any(|p| p.domain.as_str() == domain)
    }

    fn status_dhcpd(&self) -> String {
        self.rt.block_on(async {
            DaemonProxy::builder(&self.conn)
                .destination("org.hearth.Dhcp1")
                .unwrap()
                .path("/org/hearth/Dhcp1")
                .unwrap()
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap()
                .status()
                .await
                .unwrap()
        })
    }

    fn ping_dhcpd(&self) -> String {
        self.rt.block_on(async {
            DaemonProxy::builder(&self.conn)
                .destination("org.hearth.Dhcp1")
                .unwrap()
                .path("/org/hearth/Dhcp1")
                .unwrap()
                .build()
                .await
                .unwrap()
                .ping()
                .await
                .unwrap()
        })
    }
}

fn log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.dir.join("log/hearth-dhcpd.log")).unwrap_or_default()
}

#[test]
fn real_clients_get_addresses_names_reservations_and_a_full_pool_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec![
        "hearth-netd".into(),
        "hearth-dnsd".into(),
        "hearth-dhcpd".into(),
    ]);
    // hearth-dnsd in the namespace answers on every domain's gateway.
    opts.in_netns = vec!["hearth-dnsd".into()];
    if let Ok(filter) = std::env::var("HEARTH_TEST_LOG") {
        opts.log = filter;
    }
    let mut sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let keep = KeepLog(sb.dir.clone());
    let bus = Bus::new(&sb);
    wait_until("lan and iot served", Duration::from_secs(20), || {
        bus.served("lan") && bus.served("iot")
    });

    // udhcpc on lan, dhclient on iot: each in its own domain's subnet, with
    // the gateway as router and DNS, and the search domain.
    let cam = Client::new(&sb, "c1", "hb-lan", "00:00:0c:00:00:01");
    let v = cam.udhcpc(Some("cam1")).expect("udhcpc bound on lan");
    let cam_ip = v["ip"].clone();
    assert!(cam_ip.starts_with("10.77.1."), "{v:?}");
    assert_eq!(v["router"], "10.77.1.1");
    assert_eq!(v["dns"], "10.77.1.1");
    assert_eq!(v["subnet"], "255.255.255.0");
    assert_eq!(v["domain"], "lan.home.arpa");
    assert!(
        v.get("search").is_some_and(|s| s.contains("lan.home.arpa")),
        "{v:?}"
    );

    let printer = Client::new(&sb, "p1", "hb-iot", "00:11:22:33:44:55");
    let v = printer.dhclient("printer").expect("dhclient bound on iot");
    let printer_ip = v["new_ip_address"].clone();
    assert!(printer_ip.starts_with("10.77.2."), "{v:?}");
    assert_eq!(v["new_routers"], "10.77.2.1");
    assert_eq!(v["new_domain_name_servers"], "10.77.2.1");

    // Their names resolve through hearth-dnsd, asked where the lease says:
    // the domain's gateway, port 53.
    wait_until("cam1's name", Duration::from_secs(10), || {
        dig_in(&cam.ns, "10.77.1.1", "53", "cam1.lan.home.arpa") == cam_ip
    });
    wait_until("printer's name", Duration::from_secs(10), || {
        dig_in(&printer.ns, "10.77.2.1", "53", "printer.iot.home.arpa") == printer_ip
    });
    assert_eq!(dig(&sb, "cam1.lan.home.arpa"), cam_ip);

    // Isolation still holds: lan may reach iot, iot may not reach lan.
    assert!(cam.ping(&printer_ip), "lan reaches iot (allowed)");
    assert!(!printer.ping(&cam_ip), "iot does not reach lan");

    // The inventory knows both, with the vendor from ieee-data when present.
    let list = bus.dhcp(async |p| dhcp_c::devices(p).await.unwrap());
    let macs: Vec<String> = list.iter().map(|d| d.mac.to_string()).collect();
    assert!(
        macs.contains(&"00:00:0c:00:00:01".to_string())
            && macs.contains(&"00:11:22:33:44:55".to_string()),
        "{macs:?}"
    );
    let shown = bus.dhcp(async |p| dhcp_c::device(p, "cam1").await.unwrap());
    assert_eq!(
        shown.address.map(|a| a.to_string()).as_deref(),
        Some(cam_ip.as_str())
    );
    assert_eq!(shown.domain.as_ref().map(|d| d.as_str()), Some("lan"));
    assert_eq!(shown.name.as_deref(), Some("cam1.lan.home.arpa"));
    if Path::new("/usr/share/ieee-data/oui.txt").exists() {
        assert!(
            shown.vendor.as_deref().is_some_and(|v| v.contains("Cisco")),
            "{shown:?}"
        );
    }

    // Restart: the leases survive, the same client gets the same address.
    sb.restart("hearth-dhcpd").unwrap();
    wait_until("lan served again", Duration::from_secs(20), || {
        bus.served("lan")
    });
    let v = cam
        .udhcpc(Some("cam1"))
        .expect("udhcpc bound after restart");
    assert_eq!(v["ip"], cam_ip, "same address after a restart");
    // A name the owner made is never overwritten by a client calling
    // itself that.
    bus.rt.block_on(async {
        let p = hearth_common::proxies::dns::DnsProxy::new(&bus.conn)
            .await
            .unwrap();
        p.add_record("nas.lan.home.arpa", "10.77.1.99", false)
            .await
            .unwrap();
    });
    let other = Client::new(&sb, "c2", "hb-lan", "00:00:0c:00:00:02");
    let v = other.udhcpc(Some("nas")).expect("a second lan client");
    assert_ne!(
        v["ip"], cam_ip,
        "a leased address is never handed out twice"
    );
    wait_until("the clash logged", Duration::from_secs(10), || {
        log(&sb).contains("not overwritten")
    });
    assert_eq!(dig(&sb, "nas.lan.home.arpa"), "10.77.1.99");

    // A reservation: refused outside the domain, honoured inside.
    let e = bus
        .dhcp(async |p| p.reserve("cam1", "10.77.2.50", false).await)
        .unwrap_err();
    assert_eq!(e.kind(), "InvalidArgument", "{e:?}");
    let e = bus
        .dhcp(async |p| p.reserve("00:00:0c:00:00:02", &cam_ip, false).await)
        .unwrap_err();
    assert_eq!(e.kind(), "Conflict", "{e:?}");
    let r = bus
        .dhcp(async |p| dhcp_c::reserve(p, "cam1", "10.77.1.200", false).await)
        .unwrap();
    assert_eq!(r.address.to_string(), "10.77.1.200");
    assert_eq!(r.device.and_then(|d| d.reserved), Some(r.address));
    let e = bus
        .dhcp(async |p| p.reserve("00:00:0c:00:00:02", "10.77.1.200", false).await)
        .unwrap_err();
    assert_eq!(e.kind(), "Conflict", "already reserved: {e:?}");
    let v = cam.udhcpc(Some("cam1")).expect("udhcpc with a reservation");
    assert_eq!(v["ip"], "10.77.1.200", "reservation honoured");
    wait_until("cam1's name follows", Duration::from_secs(10), || {
        dig(&sb, "cam1.lan.home.arpa") == "10.77.1.200"
    });

    // hearthctl devices: a table, --json, and a clear refusal.
    let ctl = |args: &[&str]| {
        sh(Command::new(sb.bin_dir.join("hearthctl")).args(args).env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            &sb.env["DBUS_SYSTEM_BUS_ADDRESS"],
        ))
    };
    let out = ctl(&["devices", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with("MAC")
            && text.contains("cam1.lan.home.arpa")
            && text.contains("10.77.1.200"),
        "{text}"
    );
    let out = ctl(&["--json", "devices", "show", "00:00:0c:00:00:01"]);
    let j: dhcp_c::Device = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`devices show --json` is not a Device: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        j.reserved.map(|a| a.to_string()).as_deref(),
        Some("10.77.1.200"),
        "{j:?}"
    );
    let out = ctl(&["devices", "reserve", "cam1", "192.168.9.9"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("not a host address of the device's domain lan"),
        "{said}"
    );

    // Malformed packets (one with a Client FQDN option too short for
    // dhcproto's decoder) are dropped; the daemon keeps serving.
    ok(Command::new("ip").args(["netns", "exec", &other.ns, "python3", "-c",
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BINDTODEVICE,b'eth0')\nfqdn=b'\\x01\\x01\\x06\\x00'+bytes(24)+b'\\x02\\x00\\x00\\x00\\x00\\x09'+bytes(202)+b'\\x63\\x82\\x53\\x63\\x35\\x01\\x01\\x51\\x01\\x00\\xff'\nfor junk in [b'', b'\\x01', b'\\x01\\x01\\x06\\x00'+b'\\xff'*300, bytes(range(256))*2, fqdn]:\n    s.sendto(junk,('255.255.255.255',67))\n"]));
    assert_eq!(bus.ping_dhcpd(), "pong");
    assert!(other.udhcpc(None).is_some(), "still serving after junk");
    let l = log(&sb);
    assert!(
        !l.contains("serving it again") && !l.contains("panicked"),
        "the junk was dropped without a panic: {l}"
    );

    // A pool of four and five clients: four served, the fifth refused and
    // logged, nothing crashes.
    let made = bus
        .net(async |p| {
            hearth_common::contract::network::create_domain(p, "tiny", "10.77.40.0/24", false).await
        })
        .unwrap();
    assert_eq!(made.dhcp_scopes_added.len(), 1, "{made:?}");
    wait_until("tiny served", Duration::from_secs(20), || {
        bus.served("tiny")
    });
    let tiny: Vec<Client> = (1..=5)
        .map(|i| {
            Client::new(
                &sb,
                &format!("t{i}"),
                "hb-tiny",
                &format!("00:00:0c:00:40:0{i}"),
            )
        })
        .collect();
    let mut served = 0;
    for (i, c) in tiny.iter().enumerate() {
        if let Some(v) = c.udhcpc(Some(&format!("tiny{}", i + 1))) {
            assert!(v["ip"].starts_with("10.77.40.1"), "{v:?}");
            served += 1;
        }
    }
    assert_eq!(served, 4, "four of five clients served");
    assert!(log(&sb).contains("pool full"), "the full pool is logged");
    let pools = bus.pools();
    let t = pools.iter().find(|p| p.domain.as_str() == "tiny").unwrap();
    assert!(t.full, "{t:?}");
    assert_eq!(bus.ping_dhcpd(), "pong");
    let status = bus.status_dhcpd();
    assert!(status.contains("pool full: tiny"), "status: {status}");
    wait_until("tiny1's name", Duration::from_secs(10), || {
        dig(&sb, "tiny1.tiny.home.arpa").starts_with("10.77.40.")
    });

    // Deleting the domain stops its service and removes its names.
    let gone = bus
        .net(async |p| hearth_common::contract::network::delete_domain(p, "tiny", false).await)
        .unwrap();
    assert_eq!(gone.dhcp_scopes_removed.len(), 1, "{gone:?}");
    wait_until("tiny no longer served", Duration::from_secs(20), || {
        !bus.served("tiny")
    });
    wait_until("tiny's names removed", Duration::from_secs(10), || {
        dig(&sb, "tiny1.tiny.home.arpa").is_empty()
    });
    drop(tiny);

    // A lease that ends takes its name with it: a client on iot binds
    // (name made), then releases its lease (DHCPRELEASE).
    let sensor = Client::new(&sb, "s1", "hb-iot", "00:00:0c:00:00:07");
    let v = sensor.dhclient("sensor7").expect("sensor bound on iot");
    let sensor_ip = v["new_ip_address"].clone();
    wait_until("sensor7's name", Duration::from_secs(10), || {
        dig(&sb, "sensor7.iot.home.arpa") == sensor_ip
    });
    sensor.dhclient_release();
    wait_until(
        "sensor7's name removed at release",
        Duration::from_secs(10),
        || dig(&sb, "sensor7.iot.home.arpa").is_empty(),
    );
    assert!(log(&sb).contains("released"), "the release is logged");
    drop(sensor);

    // Forget a device: its name goes too.
    let f = bus
        .dhcp(async |p| dhcp_c::forget(p, "printer", false).await)
        .unwrap();
    assert_eq!(f.device.hostname.as_deref(), Some("printer"));
    wait_until("printer's name removed", Duration::from_secs(10), || {
        dig(&sb, "printer.iot.home.arpa").is_empty()
    });
    drop((cam, printer, other));
    drop(keep);
    sb.teardown();
}

/// On failure (or with HEARTH_KEEP_LOGS set), copies the daemons' logs where
/// they can be read after the sandbox is gone (target/dhcp-test-logs).
struct KeepLog(PathBuf);

impl Drop for KeepLog {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("HEARTH_KEEP_LOGS").is_some() {
            let to = hearth_testbed::repo_root().join("target/dhcp-test-logs");
            let _ = std::fs::create_dir_all(&to);
            for f in std::fs::read_dir(self.0.join("log"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::copy(f.path(), to.join(f.file_name()));
            }
        }
    }
}

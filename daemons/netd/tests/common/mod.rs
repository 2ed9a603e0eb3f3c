//! Test labs in real network namespaces: a router namespace where the engine
//! runs, and one host namespace per domain joined by a veth pair to the
//! domain's bridge. Everything is deleted on drop, also when a test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hearth_netd::netlink::enter_netns;
use hearth_netd::Engine;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
    file: File,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("hnt{}-{n}-{tag}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let file = File::open(format!("/run/netns/{name}")).expect("open netns");
        let ns = Netns { name, file };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec <ns> <args>`, output returned.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("spawn ip netns exec")
    }

    /// `ip netns exec <ns> <args>`, must succeed; stdout returned.
    pub fn sh(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{:?} in {} failed: {}",
            args,
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ip -n <ns> <args>`, must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        run_ok(&mut c)
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&self.file).expect("setns");
                f()
            })
            .join()
            .expect("netns thread panicked")
        })
    }

    /// The table as `nft list` prints it.
    /// Whether this kernel can make an 802.1Q link on `parent` (tried with
    /// a probe link, removed again). Under `HEARTH_REQUIRE_VLAN` (tests/vm/run
    /// sets it: its kernel has 802.1Q) a kernel without it fails the test,
    /// so the VLAN path cannot be skipped where it must run.
    #[allow(dead_code)]
    pub fn vlan_support(&self, parent: &str) -> bool {
        let ok = self
            .exec(&[
                "ip", "link", "add", "link", parent, "name", "probe", "type", "vlan", "id", "9",
            ])
            .status
            .success();
        assert!(
            ok || std::env::var_os("HEARTH_REQUIRE_VLAN").is_none(),
            "HEARTH_REQUIRE_VLAN is set but this kernel cannot make a VLAN link"
        );
        if ok {
            self.ip(&["link", "del", "probe"]);
        }
        ok
    }

    pub fn nft_table(&self) -> Option<String> {
        let o = self.exec(&["nft", "list", "table", "inet", "hearth"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run_ok(c: &mut Command) -> String {
    let o = c.output().expect("spawn");
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lab's domains: name, /24 subnet prefix (three octets).
pub const DOMAINS: [(&str, &str); 4] = [
    ("admin", "10.61.0"),
    ("lan", "10.61.1"),
    ("iot", "10.61.2"),
    ("guest", "10.61.3"),
];

pub fn config_text(extra: &str) -> String {
    let mut t = String::from("admin = \"admin\"\npool = \"10.62.0.0/16\"\n");
    for (name, net) in DOMAINS {
        t.push_str(&format!(
            "[[domain]]\nname = \"{name}\"\nsubnet = \"{net}.0/24\"\n"
        ));
    }
    t.push_str(extra);
    t
}

/// A router namespace running the engine, with one host namespace per domain.
pub struct Lab {
    pub engine: Engine,
    pub hosts: BTreeMap<String, Netns>,
    pub router: Netns,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Lab {
    /// Builds the lab from `config` (TOML); `with_hosts`: also the host
    /// namespaces.
    pub fn new(config: &str, with_hosts: bool) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.toml");
        std::fs::write(&path, config).unwrap();
        let router = Netns::new("r");
        let engine = Engine::load(&path, &dir.path().join("state")).unwrap();
        let rep = router.run(|| engine.reconcile()).unwrap();
        assert!(rep.firewall.is_some(), "first reconcile writes the table");
        let mut lab = Lab {
            engine,
            hosts: BTreeMap::new(),
            router,
            dir,
            config: path,
        };
        if with_hosts {
            for (name, _) in DOMAINS {
                lab.add_host(name);
            }
        }
        lab
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn net(name: &str) -> &'static str {
        DOMAINS.iter().find(|d| d.0 == name).expect("domain").1
    }

    /// A host namespace on domain `name`, address .2, gateway .1.
    pub fn add_host(&mut self, name: &str) {
        let h = Netns::new(name);
        let net = Lab::net(name);
        let port = format!("vr-{name}");
        self.router.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &h.name,
        ]);
        self.router
            .ip(&["link", "set", &port, "master", &format!("hb-{name}"), "up"]);
        h.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "eth0"]);
        h.ip(&["link", "set", "eth0", "up"]);
        h.ip(&["route", "add", "default", "via", &format!("{net}.1")]);
        self.hosts.insert(name.to_string(), h);
    }

    pub fn host(&self, name: &str) -> &Netns {
        &self.hosts[name]
    }

    pub fn addr(name: &str) -> String {
        format!("{}.2", Lab::net(name))
    }

    /// Runs `f(engine)` inside the router namespace.
    pub fn in_router<T: Send>(&mut self, f: impl FnOnce(&mut Engine) -> T + Send) -> T {
        let engine = &mut self.engine;
        let router = &self.router;
        router.run(move || f(engine))
    }
}

/// A TCP listener in a namespace, accepting until dropped.
pub struct Listener {
    stop: Arc<AtomicBool>,
    h: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
    }
}

pub fn listen_tcp(ns: &Netns, port: u16) -> Listener {
    let l = ns.run(|| TcpListener::bind(("0.0.0.0", port)).unwrap());
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            match l.accept() {
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Listener { stop, h: Some(h) }
}

/// True when a TCP connection from `ns` to `addr:port` is established
/// within the timeout.
pub fn tcp_connects(ns: &Netns, addr: &str, port: u16) -> bool {
    let target: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    ns.run(|| TcpStream::connect_timeout(&target, Duration::from_millis(700)).is_ok())
}

/// True when one ICMP echo from `ns` to `addr` is answered.
pub fn pings(ns: &Netns, addr: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "1", "-q", addr])
        .status
        .success()
}

/// A UDP receiver counting datagrams, until stopped.
pub struct Counter {
    pub count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    h: Option<JoinHandle<()>>,
}

impl Counter {
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.h.take() {
            let _ = h.join();
        }
        self.count.load(Ordering::SeqCst)
    }
}

pub fn udp_counter(ns: &Netns, port: u16) -> Counter {
    let sock = ns.run(|| UdpSocket::bind(("0.0.0.0", port)).unwrap());
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (count.clone(), stop.clone());
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !s.load(Ordering::SeqCst) {
            if sock.recv(&mut buf).is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Counter {
        count,
        stop,
        h: Some(h),
    }
}

/// A UDP sender from `ns` to `addr:port` as fast as it can (with a short
/// pause every 64 datagrams), until stopped.
pub fn udp_sender(ns: &Netns, addr: &str, port: u16) -> Counter {
    let sock = ns.run(|| UdpSocket::bind(("0.0.0.0", 0)).unwrap());
    let target: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (c, s) = (count.clone(), stop.clone());
    let h = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(Ordering::SeqCst) {
            if sock.send_to(b"hearth", target).is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
            n += 1;
            if n.is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    Counter {
        count,
        stop,
        h: Some(h),
    }
}

pub fn read(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

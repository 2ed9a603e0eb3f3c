//! hearth-testbed: the sandbox of real components that the end-to-end
//! tests, the demo and anyone checking the appliance by hand run against.
//!
//! [`Sandbox::up`] starts, inside one directory: a private dbus-daemon with
//! a system-bus-like configuration that loads the project's own policy files
//! (`systemd/dbus-1/system.d`); a SoftHSM2 token labelled `hearth` (made
//! through PKCS#11 itself, its PINs in mode-0600 files, never in argv or the
//! environment); swtpm, manufactured by `swtpm_setup` with an EK certificate
//! from its local CA kept in the directory; a network namespace with a veth
//! uplink, which hearth-netd manages so the host's networking is never
//! touched; then every daemon whose binary exists, each from its
//! `daemons/<x>/sandbox.toml` template, each awaited on a notify socket the
//! sandbox owns until it sends `READY=1`.
//!
//! Invariants: nothing outside the directory and the namespace is created;
//! [`Sandbox::down`] (or dropping an attached sandbox) removes all of it,
//! processes first. Never used by the product itself.
//!
//! The parts, one module each, re-exported here: `bus` ([`PrivateBus`]),
//! `token` (SoftHSM2), `tpm` (swtpm and the credentials sealed to it),
//! `netns` (the namespace and its uplink), `processes` (waiting on and
//! stopping what the sandbox started, and [`wait_until`], the one polling
//! helper).

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hearth_common::names::{self, Service};

mod bus;
mod netns;
mod processes;
mod token;
mod tpm;

pub use bus::{PrivateBus, POLICY_DIR};
pub use netns::UPLINK;
use processes::{stop_child, stop_pid, tail, wait_tcp};
pub use processes::{wait_until, Started};
pub use token::{SOFTHSM_MODULE, TOKEN_LABEL};
use tpm::remove_credentials;
pub use tpm::{creds_decrypt, creds_encrypt, PIN_CREDENTIAL};

/// How long a daemon may take to send READY=1.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The start order: what later daemons call must already be up.
pub const START_ORDER: [Service; 6] = [
    names::PKI,
    names::ATTESTATION,
    names::NETWORK,
    names::DNS,
    names::DHCP,
    names::INTENT,
];

/// What to start and from where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sandbox directory (created; must not hold a running sandbox).
    pub dir: PathBuf,
    /// The repository root (daemon templates, playbooks, models, policy).
    pub repo: PathBuf,
    /// Where the built daemon binaries are (`target/debug` or `target/release`).
    pub bin_dir: PathBuf,
    /// Daemons to start, by unit name; `None` starts every one whose binary
    /// and template exist.
    pub only: Option<Vec<String>>,
    /// RUST_LOG for the daemons.
    pub log: String,
    /// Daemons (unit names) to run inside the network namespace besides
    /// hearth-netd and hearth-dhcpd, which always run there. hearth-dnsd run
    /// there answers on every domain's gateway too; the host then cannot
    /// reach its 127.0.0.1 listener (use `ip netns exec`).
    pub in_netns: Vec<String>,
}

impl Options {
    /// Options for a test binary of this workspace: repository from
    /// CARGO_MANIFEST_DIR, binaries next to the test executable.
    pub fn for_tests(dir: &Path) -> Self {
        let repo = repo_root();
        let bin_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.parent()).map(Path::to_path_buf))
            .unwrap_or_else(|| repo.join("target/debug"));
        Options {
            dir: dir.to_path_buf(),
            repo,
            bin_dir,
            only: None,
            log: "info".into(),
            in_netns: Vec::new(),
        }
    }
}

/// One daemon the sandbox started.
#[derive(Debug)]
pub struct Daemon {
    /// Which one.
    pub service: Service,
    /// Its process (a group leader).
    pub child: Child,
    /// The notify socket the sandbox owns.
    pub notify: UnixDatagram,
    /// Its stderr.
    pub log: PathBuf,
    /// Every notify message it sent, in order.
    pub messages: Vec<String>,
}

/// A running sandbox. Dropping it tears everything down.
#[derive(Debug)]
pub struct Sandbox {
    pub dir: PathBuf,
    pub repo: PathBuf,
    pub netns: String,
    /// Where the daemon binaries are (`@BIN_DIR@` in templates).
    pub bin_dir: PathBuf,
    /// What DIR/env exports.
    pub env: BTreeMap<String, String>,
    pub daemons: Vec<Daemon>,
    /// Units run inside the namespace (see [`Options::in_netns`]).
    pub in_netns: Vec<String>,
    helpers: Vec<(String, Child)>,
    detached: bool,
}

fn free_port() -> Result<u16> {
    // A port free for both TCP and UDP on 127.0.0.1.
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return Ok(port);
        }
    }
    bail!("no free local port found")
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Sandbox {
    /// For a test binary: every daemon of [`START_ORDER`] started under
    /// `dir`, and an error unless each of them is up.
    pub fn up_every_daemon(dir: &Path) -> Result<Sandbox> {
        let mut opts = Options::for_tests(dir);
        opts.only = Some(START_ORDER.iter().map(|s| s.unit.to_string()).collect());
        let sb = Sandbox::up(&opts)?;
        if sb.daemons.len() != START_ORDER.len() {
            bail!(
                "{} of the {} daemons started",
                sb.daemons.len(),
                START_ORDER.len()
            );
        }
        Ok(sb)
    }

    /// Starts everything; on any failure, tears down what it started.
    pub fn up(opts: &Options) -> Result<Sandbox> {
        let dir = &opts.dir;
        if dir.join("env").exists() {
            bail!(
                "{}: a sandbox is already there (run `scripts/sandbox down {}` first)",
                dir.display(),
                dir.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let dir = fs::canonicalize(dir)?;
        // Others (an outsider UID in the tests) must reach the bus socket.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        for sub in [
            "etc", "state", "notify", "log", "pids", "tokens", "tpm", "localca",
        ] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::create_dir_all(dir.join("secrets"))?;
        fs::set_permissions(dir.join("secrets"), fs::Permissions::from_mode(0o700))?;
        let repo = fs::canonicalize(&opts.repo)?;
        let mut sb = Sandbox {
            dir: dir.clone(),
            repo,
            netns: format!("hearth-{}", random_hex(4)?),
            bin_dir: fs::canonicalize(&opts.bin_dir).unwrap_or_else(|_| opts.bin_dir.clone()),
            env: BTreeMap::new(),
            daemons: Vec::new(),
            in_netns: [names::NETWORK.unit, names::DHCP.unit]
                .iter()
                .map(|u| u.to_string())
                .chain(opts.in_netns.iter().cloned())
                .collect(),
            helpers: Vec::new(),
            detached: false,
        };
        sb.start_all(opts)?;
        Ok(sb)
    }

    fn start_all(&mut self, opts: &Options) -> Result<()> {
        self.start_bus()?;
        // The TPM first: the token's PIN is sealed to it.
        self.start_tpm()?;
        self.make_token()?;
        self.make_netns()?;
        let dns_port = free_port()?;
        let attest_port = free_port()?;
        self.env
            .insert("HEARTH_DNS".into(), format!("127.0.0.1:{dns_port}"));
        self.env
            .insert("HEARTH_DNS_PORT".into(), dns_port.to_string());
        self.env
            .insert("HEARTH_ATTEST".into(), format!("127.0.0.1:{attest_port}"));
        self.env
            .insert("HEARTH_ATTEST_PORT".into(), attest_port.to_string());
        self.env
            .insert("HEARTH_SANDBOX".into(), self.dir.display().to_string());
        self.env.insert(
            "HEARTH_ROOT_CA".into(),
            self.dir
                .join("state/hearth-pkid/root.pem")
                .display()
                .to_string(),
        );
        self.write_env()?;
        for service in START_ORDER {
            let wanted = match &opts.only {
                Some(list) => list
                    .iter()
                    .any(|u| u == service.unit || u == daemon_dir(service)),
                None => true,
            };
            let bin = opts.bin_dir.join(service.unit);
            let template = self
                .repo
                .join(format!("daemons/{}/sandbox.toml", daemon_dir(service)));
            if !wanted {
                continue;
            }
            if !bin.exists() || !template.exists() {
                if opts.only.is_some() {
                    bail!(
                        "{}: no binary at {} or no template at {}",
                        service.unit,
                        bin.display(),
                        template.display()
                    );
                }
                continue;
            }
            self.start_daemon(service, &bin, &template, &opts.log)?;
        }
        self.write_env()?;
        Ok(())
    }

    /// The placeholders daemon templates may use.
    fn placeholders(&self) -> Vec<(&'static str, String)> {
        let e = |k: &str| self.env.get(k).cloned().unwrap_or_default();
        vec![
            ("@DIR@", self.dir.display().to_string()),
            ("@REPO@", self.repo.display().to_string()),
            ("@BIN_DIR@", self.bin_dir.display().to_string()),
            ("@HSM_MODULE@", SOFTHSM_MODULE.to_string()),
            ("@HSM_TOKEN@", TOKEN_LABEL.to_string()),
            ("@TCTI@", e("HEARTH_TCTI")),
            ("@DNS_PORT@", e("HEARTH_DNS_PORT")),
            ("@ATTEST_PORT@", e("HEARTH_ATTEST_PORT")),
            ("@NETNS@", self.netns.clone()),
            ("@UPLINK@", UPLINK.to_string()),
            (
                "@DNS_GATEWAYS@",
                if self.in_netns.iter().any(|u| u == names::DNS.unit) {
                    "gateway_port = 53\ngateway_poll_secs = 1".to_string()
                } else {
                    "# (outside the namespace: no gateway listeners)".to_string()
                },
            ),
        ]
    }

    fn start_daemon(
        &mut self,
        service: Service,
        bin: &Path,
        template: &Path,
        log: &str,
    ) -> Result<()> {
        let mut text = fs::read_to_string(template)?;
        for (k, v) in self.placeholders() {
            text = text.replace(k, &v);
        }
        let config = self.dir.join(format!("etc/{}.toml", service.unit));
        write_file(&config, &text, 0o644)?;
        let state = self.dir.join(format!("state/{}", service.unit));
        let sock_path = self.dir.join(format!("notify/{}.sock", service.unit));
        let log_path = self.dir.join(format!("log/{}.log", service.unit));
        // hearth-netd makes the bridges in the namespace; hearth-dhcpd (and
        // hearth-dnsd when asked) serve on them.
        let mut cmd = if self.in_netns.iter().any(|u| u == service.unit) {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.netns]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .current_dir(&self.repo)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("RUST_LOG", log);
        if service.unit == names::PKI.unit {
            // As systemd does for LoadCredentialEncrypted=: the credential
            // decrypted by the TPM into a private directory on tmpfs, named
            // by $CREDENTIALS_DIRECTORY.
            let creds = self.credentials_dir(service)?;
            creds_decrypt(
                &self.env["HEARTH_TCTI"],
                PIN_CREDENTIAL,
                Path::new(&self.env["HEARTH_HSM_PIN_CRED"]),
                &creds.join(PIN_CREDENTIAL),
            )?;
            cmd.env("CREDENTIALS_DIRECTORY", &creds);
        }
        for k in ["DBUS_SYSTEM_BUS_ADDRESS", "SOFTHSM2_CONF", "HOME"] {
            if let Some(v) = self.env.get(k).cloned().or_else(|| std::env::var(k).ok()) {
                cmd.env(k, v);
            }
        }
        let started = Instant::now();
        let mut daemon = Daemon::spawn(service, cmd, &sock_path, log_path)?;
        fs::write(
            self.dir.join(format!("pids/{}.pid", service.unit)),
            daemon.child.id().to_string(),
        )?;
        let waited = daemon.wait_for("READY=1", READY_TIMEOUT);
        if waited.is_ok() {
            // From the spawn to READY=1: what `inference/bench/start.sh`
            // reports for hearth-intentd.
            let line = format!(
                "{} {:.0}\n",
                service.unit,
                started.elapsed().as_secs_f64() * 1e3
            );
            let mut times = fs::read_to_string(self.dir.join("ready-ms")).unwrap_or_default();
            times.push_str(&line);
            write_file(&self.dir.join("ready-ms"), &times, 0o644)?;
        }
        self.daemons.push(daemon);
        waited
    }

    /// The running daemon of that unit or short name.
    pub fn daemon(&mut self, name: &str) -> Option<&mut Daemon> {
        self.daemons
            .iter_mut()
            .find(|d| d.service.unit == name || daemon_dir(d.service) == name)
    }

    /// Stops a running daemon (SIGTERM) and starts it again from its
    /// template with the same state directory, awaiting READY=1. The
    /// previous log is kept as `<unit>.log.1`.
    pub fn restart(&mut self, name: &str) -> Result<()> {
        let idx = self
            .daemons
            .iter()
            .position(|d| d.service.unit == name || daemon_dir(d.service) == name)
            .with_context(|| format!("{name}: not running in this sandbox"))?;
        let mut old = self.daemons.remove(idx);
        old.terminate(Duration::from_secs(10))?;
        let service = old.service;
        let _ = fs::rename(&old.log, old.log.with_extension("log.1"));
        drop(old);
        let bin = self.bin_dir.join(service.unit);
        let template = self
            .repo
            .join(format!("daemons/{}/sandbox.toml", daemon_dir(service)));
        self.start_daemon(service, &bin, &template, "info")
    }

    fn write_env(&self) -> Result<()> {
        let mut text =
            String::from("# Written by hearth-sandbox: source it to talk to this sandbox.\n");
        for (k, v) in &self.env {
            text.push_str(&format!("export {k}='{v}'\n"));
        }
        let tmp = self.dir.join(".env.tmp");
        write_file(&tmp, &text, 0o644)?;
        fs::rename(tmp, self.dir.join("env"))?;
        Ok(())
    }

    /// Leaves everything running (for `scripts/sandbox up`): `down` stops it.
    pub fn detach(mut self) {
        for (name, child) in &self.helpers {
            let _ = fs::write(
                self.dir.join(format!("pids/{name}.pid")),
                child.id().to_string(),
            );
        }
        self.detached = true;
    }

    /// Stops the daemons (SIGTERM, reverse order), the helpers, deletes the
    /// namespace and removes the directory.
    pub fn teardown(&mut self) {
        for d in self.daemons.iter_mut().rev() {
            let _ = d.terminate(Duration::from_secs(10));
        }
        for (_, child) in self.helpers.iter_mut().rev() {
            stop_child(child, Duration::from_secs(5));
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .stderr(Stdio::null())
            .status();
        remove_credentials(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Stops a sandbox that `up` left running in DIR.
    pub fn down(dir: &Path) -> Result<()> {
        if !dir.join("env").exists() && !dir.join("pids").exists() {
            bail!("{}: no sandbox there", dir.display());
        }
        // Daemons first, reverse start order, then the components.
        let mut order: Vec<String> = START_ORDER
            .iter()
            .rev()
            .map(|s| s.unit.to_string())
            .collect();
        order.extend(["swtpm".to_string(), "dbus-daemon".to_string()]);
        for name in order {
            let pidf = dir.join(format!("pids/{name}.pid"));
            let Ok(text) = fs::read_to_string(&pidf) else {
                continue;
            };
            let Ok(pid) = text.trim().parse::<i32>() else {
                continue;
            };
            stop_pid(pid, Duration::from_secs(10));
        }
        if let Ok(ns) = fs::read_to_string(dir.join("netns")) {
            let _ = Command::new("ip")
                .args(["netns", "delete", ns.trim()])
                .status();
        }
        remove_credentials(dir);
        fs::remove_dir_all(dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
        Ok(())
    }
}

/// The repository this crate was built from.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.detached {
            self.teardown();
        }
    }
}

/// The crate directory of a daemon under `daemons/`: its unit name without
/// the `hearth-` prefix (`hearth-pkid` → `daemons/pkid`).
pub fn daemon_dir(service: Service) -> &'static str {
    service.unit.trim_start_matches("hearth-")
}

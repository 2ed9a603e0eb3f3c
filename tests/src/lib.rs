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

/// The token label the sandbox makes.
pub const TOKEN_LABEL: &str = "hearth";
/// The SoftHSM2 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The uplink inside the namespace (one end of a veth pair).
pub const UPLINK: &str = "hup0";
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

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_tcp(port: u16, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            bail!("{what} exited before listening: {st}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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

    fn start_bus(&mut self) -> Result<()> {
        let bus = PrivateBus::start_with_policy(&self.dir, &self.repo.join(POLICY_DIR))?;
        self.env
            .insert("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone());
        if let Some(child) = bus.into_child() {
            self.helpers.push(("dbus-daemon".into(), child));
        }
        Ok(())
    }

    fn make_token(&mut self) -> Result<()> {
        use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
        use cryptoki::session::UserType;
        use cryptoki::types::AuthPin;
        let conf = self.dir.join("softhsm2.conf");
        write_file(
            &conf,
            &format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                self.dir.join("tokens").display()
            ),
            0o644,
        )?;
        // One PKCS#11 initialization per process at a time: SoftHSM2 reads
        // SOFTHSM2_CONF at C_Initialize, and two sandboxes may start at once
        // in one test binary.
        static TOKEN_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = TOKEN_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The PINs exist in plain text only in this process and in pipes:
        // on disk they are credentials sealed to the sandbox's TPM, as on the
        // appliance (image/README.md, first boot).
        let so_pin = random_hex(16)?;
        let user_pin = random_hex(16)?;
        let tcti = self
            .env
            .get("HEARTH_TCTI")
            .cloned()
            .context("the TPM starts before the token")?;
        let pin_cred = self.dir.join("secrets/hsm-pin.cred");
        creds_encrypt(&tcti, PIN_CREDENTIAL, &user_pin, &pin_cred)?;
        creds_encrypt(
            &tcti,
            "hsm-so-pin",
            &so_pin,
            &self.dir.join("secrets/hsm-so-pin.cred"),
        )?;
        // SoftHSM2 reads its configuration path from the environment at
        // C_Initialize; the variable names a file, not a secret.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let ctx = Pkcs11::new(SOFTHSM_MODULE).context("cannot load the SoftHSM2 module")?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
        let slot = ctx
            .get_slots_with_token()?
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
            .context("SoftHSM2 offers no free slot")?;
        let so = AuthPin::from(so_pin);
        ctx.init_token(slot, &so, TOKEN_LABEL)?;
        {
            let session = ctx.open_rw_session(slot)?;
            session.login(UserType::So, Some(&so))?;
            session.init_pin(&AuthPin::from(user_pin))?;
            session.logout()?;
        }
        ctx.finalize()?;
        self.env
            .insert("SOFTHSM2_CONF".into(), conf.display().to_string());
        self.env
            .insert("HEARTH_HSM_MODULE".into(), SOFTHSM_MODULE.into());
        self.env
            .insert("HEARTH_HSM_TOKEN".into(), TOKEN_LABEL.into());
        self.env
            .insert("HEARTH_HSM_PIN_CRED".into(), pin_cred.display().to_string());
        Ok(())
    }

    fn start_tpm(&mut self) -> Result<()> {
        let d = &self.dir;
        let ca = d.join("localca");
        write_file(
            &d.join("swtpm-localca.conf"),
            &format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
            0o644,
        )?;
        write_file(
            &d.join("swtpm-localca.options"),
            "--platform-manufacturer Hearth\n--platform-version 2.1\n--platform-model Sandbox\n",
            0o644,
        )?;
        write_file(
            &d.join("swtpm_setup.conf"),
            &format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                d.join("swtpm-localca.conf").display(),
                d.join("swtpm-localca.options").display()
            ),
            0o644,
        )?;
        run(Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(d.join("tpm"))
            .args([
                "--create-ek-cert",
                "--create-platform-cert",
                "--lock-nvram",
                "--overwrite",
            ])
            .arg("--config")
            .arg(d.join("swtpm_setup.conf"))
            .arg("--logfile")
            .arg(d.join("log/swtpm_setup.log")))
        .with_context(|| tail(&d.join("log/swtpm_setup.log"), 20))?;
        let port = free_port()?;
        let log = fs::File::create(d.join("log/swtpm.log"))?;
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", d.join("tpm").display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start swtpm")?;
        let ready = wait_tcp(port, &mut child, "swtpm");
        self.helpers.push(("swtpm".into(), child));
        ready?;
        self.env.insert(
            "HEARTH_TCTI".into(),
            format!("swtpm:host=127.0.0.1,port={port}"),
        );
        for (k, f) in [
            ("HEARTH_EK_CA", "issuercert.pem"),
            ("HEARTH_EK_ROOT_CA", "swtpm-localca-rootca-cert.pem"),
        ] {
            if ca.join(f).exists() {
                self.env.insert(k.into(), ca.join(f).display().to_string());
            }
        }
        Ok(())
    }

    fn make_netns(&mut self) -> Result<()> {
        run(Command::new("ip").args(["netns", "add", &self.netns]))?;
        fs::write(self.dir.join("netns"), &self.netns)?;
        self.env.insert("HEARTH_NETNS".into(), self.netns.clone());
        run(Command::new("ip").args(["-n", &self.netns, "link", "set", "lo", "up"]))?;
        // A veth pair stands for the uplink (the dummy driver is not in
        // every kernel); its peer stays unconfigured in the namespace.
        run(Command::new("ip").args([
            "-n",
            &self.netns,
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            "hup0p",
        ]))?;
        run(Command::new("ip").args(["-n", &self.netns, "link", "set", UPLINK, "up"]))?;
        Ok(())
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
        let _ = fs::remove_file(&sock_path);
        let notify = UnixDatagram::bind(&sock_path)
            .with_context(|| format!("{}: cannot bind the notify socket", sock_path.display()))?;
        notify.set_read_timeout(Some(Duration::from_millis(100)))?;
        let log_path = self.dir.join(format!("log/{}.log", service.unit));
        let logf = fs::File::create(&log_path)?;
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
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .process_group(0);
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
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        fs::write(
            self.dir.join(format!("pids/{}.pid", service.unit)),
            child.id().to_string(),
        )?;
        let mut daemon = Daemon {
            service,
            child,
            notify,
            log: log_path,
            messages: Vec::new(),
        };
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

    /// A fresh private directory on tmpfs (mode 0700) for a daemon's
    /// decrypted credentials; recorded in DIR/credentials so that teardown
    /// and `down` remove it.
    fn credentials_dir(&self, service: Service) -> Result<PathBuf> {
        let base = Path::new(CREDENTIALS_BASE);
        let dir = base.join(format!(
            "hearth-sandbox-{}-{}",
            random_hex(8)?,
            service.unit
        ));
        fs::create_dir(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let list = self.dir.join("credentials");
        let mut text = fs::read_to_string(&list).unwrap_or_default();
        text.push_str(&format!("{}\n", dir.display()));
        write_file(&list, &text, 0o600)?;
        Ok(dir)
    }
}

/// The name of the credential holding the token's user PIN (as hearth-pkid
/// looks for it in `$CREDENTIALS_DIRECTORY`).
pub const PIN_CREDENTIAL: &str = "hsm-pin";

/// Where decrypted credentials go: tmpfs, as systemd's /run/credentials.
const CREDENTIALS_BASE: &str = "/dev/shm";

/// `systemd-creds encrypt --with-key=tpm2` of `secret` (given on stdin, never
/// in argv or a file) to `out`, sealed to the TPM behind `tcti`. systemd 252
/// takes a tpm2-tss TCTI as `--tpm2-device=DRIVER:CONF` (here
/// `swtpm:host=…,port=…`). PCR binding is systemd's default (PCR 7): 252
/// cannot decrypt a credential sealed with `--tpm2-pcrs=` empty.
pub fn creds_encrypt(tcti: &str, name: &str, secret: &str, out: &Path) -> Result<()> {
    use std::io::Write as _;
    let mut child = Command::new("systemd-creds")
        .arg("encrypt")
        .arg(format!("--name={name}"))
        .arg("--with-key=tpm2")
        .arg(format!("--tpm2-device={tcti}"))
        .arg("-")
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run systemd-creds")?;
    child
        .stdin
        .take()
        .context("systemd-creds stdin")?
        .write_all(secret.as_bytes())?;
    let done = child.wait_with_output()?;
    if !done.status.success() {
        bail!(
            "systemd-creds encrypt --with-key=tpm2 --tpm2-device={tcti} failed ({}): {}",
            done.status,
            String::from_utf8_lossy(&done.stderr)
        );
    }
    Ok(())
}

/// `systemd-creds decrypt` of the credential `name` in `cred` with the TPM
/// behind `tcti`, written to `out` with mode 0400 (what systemd puts in a
/// unit's credentials directory).
pub fn creds_decrypt(tcti: &str, name: &str, cred: &Path, out: &Path) -> Result<()> {
    let done = Command::new("systemd-creds")
        .arg("decrypt")
        .arg(format!("--name={name}"))
        .arg(format!("--tpm2-device={tcti}"))
        .arg(cred)
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run systemd-creds")?;
    if !done.status.success() {
        bail!(
            "systemd-creds decrypt {} failed ({}): {}",
            cred.display(),
            done.status,
            String::from_utf8_lossy(&done.stderr)
        );
    }
    fs::set_permissions(out, fs::Permissions::from_mode(0o400))?;
    Ok(())
}

/// Removes the credentials directories a sandbox in `dir` made.
fn remove_credentials(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("credentials")) else {
        return;
    };
    for line in text.lines() {
        let p = Path::new(line.trim());
        if p.starts_with(CREDENTIALS_BASE) && p.file_name().is_some() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Where the project's D-Bus policy files live, relative to the repository.
pub const POLICY_DIR: &str = "systemd/dbus-1/system.d";

/// The repository this crate was built from.
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A private dbus-daemon with a system-bus-like configuration that loads
/// the project's own policy files (plus: root may own `org.hearth.*`, since
/// tests run every daemon as root). Its address is ready to use when
/// [`PrivateBus::start`] returns; dropping it stops the bus. Every test that
/// needs a bus uses this one, so the policy under test is the shipped one.
#[derive(Debug)]
pub struct PrivateBus {
    child: Option<Child>,
    /// `unix:path=DIR/bus.sock`.
    pub address: String,
}

impl PrivateBus {
    /// Starts a bus in `dir` (socket `bus.sock`, config `dbus.conf`, log
    /// `dbus-daemon.log`) with the repository's policy.
    pub fn start(dir: &Path) -> Result<PrivateBus> {
        Self::start_with_policy(dir, &repo_root().join(POLICY_DIR))
    }

    /// [`PrivateBus::start`] with the policy files of `policy_dir`.
    pub fn start_with_policy(dir: &Path, policy_dir: &Path) -> Result<PrivateBus> {
        let sock = dir.join("bus.sock");
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <!-- Tests run every daemon as root instead of its own user. -->
  <policy user="root">
    <allow own_prefix="org.hearth"/>
  </policy>
  <includedir>{policy}</includedir>
</busconfig>
"#,
            sock = sock.display(),
            policy = policy_dir.display()
        );
        let conf_path = dir.join("dbus.conf");
        write_file(&conf_path, &conf, 0o644)?;
        let log_path = dir.join("dbus-daemon.log");
        let log = fs::File::create(&log_path)?;
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf_path.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start dbus-daemon (is the dbus package installed?)")?;
        // The address line is printed once the socket listens: readiness.
        let mut out = child.stdout.take().context("dbus-daemon stdout")?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte)? == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let bus = PrivateBus {
            child: Some(child),
            address: format!("unix:path={}", sock.display()),
        };
        if line.is_empty() {
            bail!("dbus-daemon exited: {}", tail(&log_path, 20));
        }
        // Others (an outsider UID in the tests) must reach the socket.
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o777))?;
        Ok(bus)
    }

    /// Hands the process over (the sandbox keeps it with its other parts).
    fn into_child(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child(child, Duration::from_secs(2));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.detached {
            self.teardown();
        }
    }
}

impl Daemon {
    /// Reads notify messages until one line equals `want`, failing if the
    /// process exits or the time runs out.
    pub fn wait_for(&mut self, want: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.messages.iter().any(|m| m.lines().any(|l| l == want)) {
                return Ok(());
            }
            match self.notify.recv(&mut buf) {
                Ok(n) => self
                    .messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "{} exited ({st}) before sending {want}; its log ends:\n{}",
                    self.service.unit,
                    tail(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} sent no {want} within {} s; its log ends:\n{}",
                    self.service.unit,
                    timeout.as_secs(),
                    tail(&self.log, 30)
                );
            }
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `grace`), reading
    /// the notify messages sent meanwhile. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            if let Some(st) = self.child.try_wait()? {
                while let Ok(n) = self.notify.recv(&mut buf) {
                    self.messages
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait()?;
                bail!(
                    "{} ignored SIGTERM for {} s and was killed ({st})",
                    self.service.unit,
                    grace.as_secs()
                );
            }
        }
    }

    /// True when a notify message had this exact line.
    pub fn sent(&self, line: &str) -> bool {
        self.messages.iter().any(|m| m.lines().any(|l| l == line))
    }
}

fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops a process that is not our child (left by a detached `up`).
fn stop_pid(pid: i32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if kill(p, None).is_err() || is_zombie(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(p, Signal::SIGKILL);
}

/// A process that exited but that nobody reaped (its parent was us, gone).
fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The crate directory of a daemon under `daemons/`: its unit name without
/// the `hearth-` prefix (`hearth-pkid` → `daemons/pkid`).
pub fn daemon_dir(service: Service) -> &'static str {
    service.unit.trim_start_matches("hearth-")
}

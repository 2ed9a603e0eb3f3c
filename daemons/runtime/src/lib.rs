//! The skeleton every Hearth daemon shares.
//!
//! A daemon binary is a few lines: it names its [`Service`], its configuration
//! type, and a closure that loads state and returns the `#[zbus::interface]`
//! value to serve. [`main`] does the rest, in this order:
//!
//! 1. parse `--config PATH` and `--state-dir DIR`;
//! 2. load the TOML configuration (unknown keys refused, errors naming file
//!    and line) and set up tracing to stderr;
//! 3. connect to the system bus (honouring `DBUS_SYSTEM_BUS_ADDRESS`);
//! 4. run the closure (state is loaded here), serve its interface and
//!    `org.hearth.Daemon1` at the service's path;
//! 5. request the well-known name; only then send `READY=1`;
//! 6. ping the watchdog at half of `WatchdogSec` when systemd asks for it;
//! 7. on SIGTERM or SIGINT send `STOPPING=1`, release the name and exit 0.
//!
//! Authorization: interface methods call [`Access::require`] with the
//! message header; the caller's UID and groups come from the bus daemon,
//! never from the message body.
#![forbid(unsafe_code)]

mod access;
mod notify;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hearth_common::contract::daemon::{CallerRole, Identity};
use hearth_common::names::{Service, DAEMON_INTERFACE};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

pub use access::{Access, AccessConfig, Caller, Role};
pub use notify::Notifier;

/// A daemon's configuration: its own struct, with an `[access]` table.
pub trait DaemonConfig: DeserializeOwned + Send + 'static {
    /// Which groups may read and ask, and which may change anything.
    fn access(&self) -> &AccessConfig;
}

/// What the daemon's setup closure receives.
#[derive(Clone)]
pub struct Context {
    /// The daemon's bus identity.
    pub service: Service,
    /// The configuration file that was loaded.
    pub config_path: PathBuf,
    /// Where the daemon keeps its state (created if missing, mode 0700).
    pub state_dir: PathBuf,
    /// Authorization of bus callers.
    pub access: Access,
    /// The daemon's bus connection (for calls to other daemons and signals).
    pub connection: zbus::Connection,
    /// Sends `STATUS=` lines and keeps the `Daemon1` status.
    pub notifier: Notifier,
}

/// Command-line options every daemon takes.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--config PATH`.
    pub config: PathBuf,
    /// `--state-dir DIR`.
    pub state_dir: PathBuf,
    /// `--check-config`: load the configuration, report, exit.
    pub check_config: bool,
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse(service: Service, args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            config: PathBuf::from(format!("/etc/hearth/{}.toml", service.unit)),
            state_dir: PathBuf::from(format!("/var/lib/hearth/{}", service.unit)),
            check_config: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--config" => o.config = it.next().ok_or("--config needs a path")?.into(),
                "--state-dir" => {
                    o.state_dir = it.next().ok_or("--state-dir needs a directory")?.into()
                }
                "--check-config" => o.check_config = true,
                other => {
                    if let Some(v) = other.strip_prefix("--config=") {
                        o.config = v.into();
                    } else if let Some(v) = other.strip_prefix("--state-dir=") {
                        o.state_dir = v.into();
                    } else {
                        return Err(format!(
                            "unknown argument {other:?}\nusage: {} [--config PATH] [--state-dir DIR] [--check-config]",
                            service.unit
                        ));
                    }
                }
            }
        }
        Ok(o)
    }
}

/// Sets up tracing to stderr; `HEARTH_LOG` (or `RUST_LOG`) sets the filter.
pub fn init_tracing() {
    let filter = std::env::var("HEARTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    let _ = if under_journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Runs a daemon with the process's arguments. See the crate docs.
pub fn main<C, F, Fut, I>(service: Service, setup: F) -> ExitCode
where
    C: DaemonConfig,
    F: FnOnce(Context, C) -> Fut,
    Fut: Future<Output = anyhow::Result<I>>,
    I: zbus::object_server::Interface,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    main_with_args::<C, F, Fut, I>(service, &args, setup)
}

/// Runs a daemon with the given arguments (the program name excluded).
pub fn main_with_args<C, F, Fut, I>(service: Service, args: &[String], setup: F) -> ExitCode
where
    C: DaemonConfig,
    F: FnOnce(Context, C) -> Fut,
    Fut: Future<Output = anyhow::Result<I>>,
    I: zbus::object_server::Interface,
{
    init_tracing();
    let opts = match Options::parse(service, args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", service.unit);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", service.unit);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::<C, F, Fut, I>(service, opts, setup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}: {e:#}", service.unit);
            Notifier::raw(&format!("STATUS=failed: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

async fn run<C, F, Fut, I>(service: Service, opts: Options, setup: F) -> anyhow::Result<()>
where
    C: DaemonConfig,
    F: FnOnce(Context, C) -> Fut,
    Fut: Future<Output = anyhow::Result<I>>,
    I: zbus::object_server::Interface,
{
    let started = Instant::now();
    let config: C = hearth_common::config::load(&opts.config)?;
    if opts.check_config {
        println!("{}: configuration OK", opts.config.display());
        return Ok(());
    }
    let access = Access::from_config(config.access())?;
    create_state_dir(&opts.state_dir)?;
    let notifier = Notifier::new(service);
    notifier.status("connecting to the system bus");

    let connection = zbus::connection::Builder::system()
        .context("no system bus address")?
        .build()
        .await
        .context("cannot connect to the system bus (is DBUS_SYSTEM_BUS_ADDRESS right?)")?;

    notifier.status("loading state");
    let ctx_access = access.clone();
    let ctx = Context {
        service,
        config_path: opts.config.clone(),
        state_dir: opts.state_dir.clone(),
        access,
        connection: connection.clone(),
        notifier: notifier.clone(),
    };
    let iface = setup(ctx, config).await?;

    let server = connection.object_server();
    server
        .at(service.path, iface)
        .await
        .context("cannot serve the daemon's interface")?;
    server
        .at(
            service.path,
            DaemonIface {
                service,
                started,
                notifier: notifier.clone(),
                access: ctx_access,
            },
        )
        .await
        .context("cannot serve org.hearth.Daemon1")?;
    connection
        .request_name(service.bus_name)
        .await
        .with_context(|| format!("cannot own the bus name {}", service.bus_name))?;

    tracing::info!(
        name = service.bus_name,
        startup_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    // Keep a status line the daemon set while loading ("serving … on …").
    let status = notifier.current().await;
    let line = if status == "loading state" || status.is_empty() {
        "ready".to_string()
    } else {
        status
    };
    notifier.ready(&line);
    let watchdog = notifier.spawn_watchdog();

    wait_for_termination().await?;
    notifier.stopping();
    tracing::info!("stopping");
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = connection.release_name(service.bus_name).await;
    drop(connection);
    Ok(())
}

fn create_state_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("{}: cannot create the state directory", dir.display()))
}

async fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}

/// `org.hearth.Daemon1`: what every daemon answers for `hearthctl status`.
struct DaemonIface {
    service: Service,
    started: Instant,
    notifier: Notifier,
    access: Access,
}

#[zbus::interface(name = "org.hearth.Daemon1")]
impl DaemonIface {
    /// The daemon's unit name.
    #[zbus(property)]
    fn name(&self) -> String {
        self.service.unit.to_string()
    }

    /// The daemon's version.
    #[zbus(property)]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// Seconds since start.
    #[zbus(property)]
    fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The last status line.
    #[zbus(property)]
    async fn status(&self) -> String {
        self.notifier.current().await
    }

    /// Answers at once: proves the daemon's loop is alive.
    fn ping(&self) -> String {
        "pong".into()
    }

    /// The caller as this daemon sees it: a `contract::daemon::Identity`.
    /// Operators and admins only: anyone else gets NotAuthorized.
    async fn who_am_i(
        &self,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<String, hearth_common::HearthError> {
        let c = self.access.require(conn, &hdr, Role::Operator).await?;
        hearth_common::contract::encode(&Identity {
            uid: c.uid,
            gids: c.gids.iter().copied().collect(),
            role: if c.is_admin {
                CallerRole::Admin
            } else {
                CallerRole::Operator
            },
            service: c.is_service,
        })
    }
}

const _: &str = DAEMON_INTERFACE;

/// Shared mutable status line.
pub(crate) type StatusCell = Arc<Mutex<String>>;

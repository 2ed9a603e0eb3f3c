//! The processes the sandbox starts: starting a daemon on a notify socket
//! (also alone, for a daemon crate's own tests: [`Daemon::start`]),
//! waiting on them (the one polling helper, [`wait_until`]), reading their
//! notify messages, stopping them.

use super::*;

/// How long [`wait_until`] sleeps between two tries.
const POLL: Duration = Duration::from_millis(20);

/// Calls `f` until it returns `Ok(Some(value))` and returns that value;
/// an `Err` from `f` ends the wait with that error at once. Fails with
/// "`what` not within …" when `timeout` passes first. `f` is always called
/// at least once, and once more after the deadline passed, so a condition
/// that became true while sleeping is not reported as a timeout.
///
/// The one polling loop of the testbed: use it where no readiness signal
/// (READY=1, a printed address, a socket that accepts) can be awaited
/// instead.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let past = Instant::now() > deadline;
        if let Some(v) = f()? {
            return Ok(v);
        }
        if past {
            bail!("{what} not within {:.1} s", timeout.as_secs_f64());
        }
        std::thread::sleep(POLL);
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until `child` listens on TCP `port` of 127.0.0.1.
pub(crate) fn wait_tcp(port: u16, child: &mut Child, what: &str) -> Result<()> {
    wait_until(
        &format!("{what} listening on port {port}"),
        Duration::from_secs(20),
        || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Some(()));
            }
            if let Some(st) = child.try_wait()? {
                bail!("{what} exited before listening: {st}");
            }
            Ok(None)
        },
    )
}

/// A daemon started on its own by [`Daemon::start`], outside a
/// [`Sandbox`]: stopped (SIGTERM, SIGKILL after 10 s) when dropped, even
/// when a test fails.
#[derive(Debug)]
pub struct Started(pub Daemon);

impl Drop for Started {
    fn drop(&mut self) {
        stop_child(&mut self.0.child, Duration::from_secs(10));
    }
}

impl Daemon {
    /// Spawns `cmd` (a daemon's binary and arguments) as `service`, in a
    /// process group of its own, with `NOTIFY_SOCKET` at `sock` (bound
    /// here) and its output into `log`; does not wait for it.
    pub(crate) fn spawn(
        service: Service,
        mut cmd: Command,
        sock: &Path,
        log: PathBuf,
    ) -> Result<Daemon> {
        let _ = fs::remove_file(sock);
        let notify = UnixDatagram::bind(sock)
            .with_context(|| format!("{}: cannot bind the notify socket", sock.display()))?;
        notify.set_read_timeout(Some(Duration::from_millis(100)))?;
        let logf = fs::File::create(&log)?;
        cmd.env("NOTIFY_SOCKET", sock)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", service.unit))?;
        Ok(Daemon {
            service,
            child,
            notify,
            log,
            messages: Vec::new(),
        })
    }

    /// Starts `cmd` (a daemon's binary and arguments) as `service`, its
    /// notify socket and log (`<unit>.log`) in `dir`, and waits for its
    /// READY=1 as systemd does ([`READY_TIMEOUT`]): a daemon crate's own
    /// tests start their daemon this way, without a [`Sandbox`].
    pub fn start(service: Service, cmd: Command, dir: &Path) -> Result<Started> {
        let sock = dir.join(format!("{}.notify", service.unit));
        let log = dir.join(format!("{}.log", service.unit));
        let mut started = Started(Daemon::spawn(service, cmd, &sock, log)?);
        started.0.wait_for("READY=1", READY_TIMEOUT)?;
        Ok(started)
    }

    /// Reads one notify message into `messages` if one comes within the
    /// socket's read timeout (100 ms).
    fn read_notify(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => {
                self.messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Reads notify messages until one line equals `want`, failing if the
    /// process exits or the time runs out.
    pub fn wait_for(&mut self, want: &str, timeout: Duration) -> Result<()> {
        let unit = self.service.unit;
        wait_until(&format!("{unit} sending {want}"), timeout, || {
            if self.sent(want) {
                return Ok(Some(()));
            }
            self.read_notify()?;
            if self.sent(want) {
                return Ok(Some(()));
            }
            if let Some(st) = self.child.try_wait()? {
                bail!("{unit} exited ({st}) before sending {want}");
            }
            Ok(None)
        })
        .map_err(|e| anyhow::anyhow!("{e}; its log ends:\n{}", tail(&self.log, 30)))
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `grace`), reading
    /// the notify messages sent meanwhile. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.child.try_wait()? {
            return Ok(st);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let unit = self.service.unit;
        let exited = wait_until(&format!("{unit} exiting"), grace, || {
            let _ = self.read_notify();
            Ok(self.child.try_wait()?)
        });
        match exited {
            Ok(st) => {
                let mut buf = [0u8; 4096];
                while let Ok(n) = self.notify.recv(&mut buf) {
                    self.messages
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
                Ok(st)
            }
            Err(_) => {
                let _ = self.child.kill();
                let st = self.child.wait()?;
                bail!(
                    "{unit} ignored SIGTERM for {} s and was killed ({st})",
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

/// SIGTERM to our child, SIGKILL when it has not exited after `grace`.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let exited = wait_until("exit", grace, || {
        Ok(matches!(child.try_wait(), Ok(Some(_))).then_some(()))
    });
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Stops a process that is not our child (left by a detached `up`).
pub(crate) fn stop_pid(pid: i32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    let p = nix::unistd::Pid::from_raw(pid);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let gone = wait_until("exit", grace, || {
        Ok((kill(p, None).is_err() || is_zombie(pid)).then_some(()))
    });
    if gone.is_err() {
        let _ = kill(p, Signal::SIGKILL);
    }
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

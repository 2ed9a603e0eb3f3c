//! The private dbus-daemon: a system-bus-like configuration that loads the
//! project's own policy files.

use super::*;

/// Where the project's D-Bus policy files live, relative to the repository.
pub const POLICY_DIR: &str = "systemd/dbus-1/system.d";

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

impl Sandbox {
    pub(crate) fn start_bus(&mut self) -> Result<()> {
        let bus = PrivateBus::start_with_policy(&self.dir, &self.repo.join(POLICY_DIR))?;
        self.env
            .insert("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone());
        if let Some(child) = bus.into_child() {
            self.helpers.push(("dbus-daemon".into(), child));
        }
        Ok(())
    }
}

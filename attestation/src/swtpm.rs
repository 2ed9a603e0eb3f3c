//! Test and benchmark support (feature `swtpm`): a private swtpm-localca
//! certificate authority and software TPMs manufactured by `swtpm_setup`
//! with EK certificates, served by `swtpm socket` over TCP on free ports.
//! Nothing here touches the global swtpm configuration or CA; everything
//! lives in temporary directories removed on drop, and every swtpm process
//! is killed on drop.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SETUP_LOCK: Mutex<()> = Mutex::new(());

/// A private swtpm-localca CA (created by the first manufacture).
#[derive(Debug)]
pub struct LocalCa {
    dir: tempfile::TempDir,
}

impl LocalCa {
    /// Writes the configuration of a new, empty local CA.
    pub fn new() -> io::Result<LocalCa> {
        let dir = tempfile::Builder::new()
            .prefix("hearth-swtpm-ca.")
            .tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("ca"))?;
        std::fs::write(
            d.join("localca.conf"),
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = d.join("ca").display()
            ),
        )?;
        std::fs::write(
            d.join("localca.options"),
            "--platform-manufacturer Hearth\n--platform-version 2.1\n--platform-model test\n",
        )?;
        std::fs::write(
            d.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                d.join("localca.conf").display(),
                d.join("localca.options").display()
            ),
        )?;
        Ok(LocalCa { dir })
    }

    /// The CA certificates (root and issuer), PEM: the "vendor CA bundle"
    /// EK certificates chain to. Valid after the first manufacture.
    pub fn bundle_pem(&self) -> io::Result<Vec<u8>> {
        let ca = self.dir.path().join("ca");
        let mut v = std::fs::read(ca.join("swtpm-localca-rootca-cert.pem"))?;
        v.extend(std::fs::read(ca.join("issuercert.pem"))?);
        Ok(v)
    }

    /// Manufactures a TPM state in `state_dir` (EK with certificate in NV).
    pub fn manufacture(&self, state_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let _guard = SETUP_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let out = Command::new("swtpm_setup")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(state_dir)
            .args([
                "--create-ek-cert",
                "--create-platform-cert",
                "--lock-nvram",
                "--overwrite",
            ])
            .arg("--config")
            .arg(self.dir.path().join("swtpm_setup.conf"))
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "swtpm_setup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

/// Copies a manufactured TPM state (a clone of the same TPM: same EK).
pub fn copy_state(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && !entry.file_name().to_string_lossy().starts_with('.') {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// A free port whose successor is free too: the swtpm TCTI of tpm2-tss
/// always finds the control channel at the server port + 1.
fn free_port_pair() -> io::Result<u16> {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0")?;
        let port = a.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::other("no two consecutive free ports"))
}

/// A running swtpm.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    port: u16,
    state_dir: PathBuf,
}

impl Swtpm {
    /// Starts swtpm on the state in `state_dir` and waits until it accepts
    /// connections.
    pub fn start(state_dir: &Path) -> io::Result<Swtpm> {
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port_pair()?;
            let ctrl = port + 1;
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", state_dir.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait()? {
                    last_err = Some(io::Error::other(format!("swtpm exited: {status}")));
                    break;
                }
                if TcpStream::connect(("127.0.0.1", ctrl)).is_ok()
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return Ok(Swtpm {
                        child,
                        port,
                        state_dir: state_dir.to_path_buf(),
                    });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other("swtpm did not start listening in 10 s"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start swtpm")))
    }

    /// The TCTI string for this swtpm.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

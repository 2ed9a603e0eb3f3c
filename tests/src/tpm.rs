//! swtpm, manufactured by `swtpm_setup` with an EK certificate from its
//! local CA, and the systemd credentials sealed to it.

use super::*;

impl Sandbox {
    pub(crate) fn start_tpm(&mut self) -> Result<()> {
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

    /// A fresh private directory on tmpfs (mode 0700) for a daemon's
    /// decrypted credentials; recorded in DIR/credentials so that teardown
    /// and `down` remove it.
    pub(crate) fn credentials_dir(&self, service: Service) -> Result<PathBuf> {
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
pub(crate) fn remove_credentials(dir: &Path) {
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

//! The SoftHSM2 token the sandbox makes, the way the appliance's first boot
//! does: `hearth-pkid init-token` with both PINs on its stdin (never in argv
//! or the environment); on disk the PINs are credentials sealed to the
//! sandbox's TPM.

use super::*;

/// The token label the sandbox makes.
pub const TOKEN_LABEL: &str = "hearth";
/// The SoftHSM2 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

impl Sandbox {
    pub(crate) fn make_token(&mut self) -> Result<()> {
        use std::io::Write as _;
        let conf = self.dir.join("softhsm2.conf");
        write_file(
            &conf,
            &format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                self.dir.join("tokens").display()
            ),
            0o644,
        )?;
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
        let pkid = self.bin_dir.join("hearth-pkid");
        let mut child = Command::new(&pkid)
            .args(["init-token", SOFTHSM_MODULE, TOKEN_LABEL])
            // SoftHSM2 reads its configuration path from the environment;
            // the variable names a file, not a secret.
            .env("SOFTHSM2_CONF", &conf)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (build the binaries first: cargo build --workspace --bins)",
                    pkid.display()
                )
            })?;
        child
            .stdin
            .take()
            .context("hearth-pkid init-token stdin")?
            .write_all(format!("{so_pin}\n{user_pin}\n").as_bytes())?;
        let done = child.wait_with_output()?;
        if !done.status.success() {
            bail!(
                "hearth-pkid init-token failed ({}): {}",
                done.status,
                String::from_utf8_lossy(&done.stderr)
            );
        }
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
}

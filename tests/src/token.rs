//! The SoftHSM2 token the sandbox makes (through PKCS#11 itself; its PINs
//! in mode-0600 files, never in argv or the environment).

use super::*;

/// The token label the sandbox makes.
pub const TOKEN_LABEL: &str = "hearth";
/// The SoftHSM2 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

impl Sandbox {
    pub(crate) fn make_token(&mut self) -> Result<()> {
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
}

//! Test support (feature `testing`): throw-away SoftHSM2 tokens, initialized
//! through the real module (`C_InitToken`, `C_InitPIN`) in a token directory
//! private to the test process, and deleted with `softhsm2-util`.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, so every token of
//! one test process lives in one directory; each [`TestToken`] deletes its
//! token when dropped (also when a test panics), and the last one removes the
//! directory.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::AuthPin;

/// Where Debian's softhsm2 package installs the module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of every test token.
pub const TEST_PIN: &str = "246810";

static LIVE: Mutex<usize> = Mutex::new(0);
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn token_dir() -> PathBuf {
    std::env::temp_dir().join(format!("hearth-softhsm-{}", std::process::id()))
}

/// A freshly initialized SoftHSM2 token, deleted on drop.
#[derive(Debug)]
pub struct TestToken {
    /// The token's label.
    pub label: String,
    /// Path of the PKCS#11 module.
    pub module: PathBuf,
    /// A mode-0600 file holding the user PIN (what the code under test reads).
    pub pin_file: PathBuf,
    /// A mode-0600 file holding a wrong PIN.
    pub wrong_pin_file: PathBuf,
    _pins: tempfile::TempDir,
}

impl TestToken {
    /// Creates a token labelled `<prefix>-<pid>-<n>` (at most 32 characters).
    pub fn new(prefix: &str) -> std::io::Result<TestToken> {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let dir = token_dir();
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )?;
        // Set once, before anything in this process initializes the module.
        if std::env::var_os("SOFTHSM2_CONF").as_deref() != Some(conf.as_os_str()) {
            std::env::set_var("SOFTHSM2_CONF", &conf);
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut label = format!("{prefix}-{}-{n}", std::process::id());
        label.truncate(32);
        init_token(&label)
            .map_err(|e| std::io::Error::other(format!("init token {label}: {e}")))?;
        *live += 1;
        let pins = tempfile::tempdir()?;
        let pin_file = write_secret(pins.path(), "pin", TEST_PIN)?;
        let wrong_pin_file = write_secret(pins.path(), "wrong-pin", "999999")?;
        Ok(TestToken {
            label,
            module: PathBuf::from(SOFTHSM_MODULE),
            pin_file,
            wrong_pin_file,
            _pins: pins,
        })
    }

    /// The right PIN, read the way the daemon reads it.
    pub fn pin(&self) -> AuthPin {
        crate::pin::read_file(&self.pin_file).unwrap_or_else(|e| panic!("test pin: {e}"))
    }

    /// Opens the token with the right PIN.
    pub fn open(&self) -> Result<crate::Token, crate::HsmError> {
        crate::Token::open(&self.module, &self.label, &self.pin())
    }

    /// The `SOFTHSM2_CONF` path, for running `pkcs11-tool` against the token.
    pub fn conf(&self) -> PathBuf {
        token_dir().join("softhsm2.conf")
    }
}

/// Initializes the module's free slot as a new token through PKCS#11 itself
/// ([`crate::init_token`]): SoftHSM2 only discovers tokens made by other
/// processes at `C_Initialize`, so tokens made by `softhsm2-util` after this
/// process started would stay invisible to it.
fn init_token(label: &str) -> Result<(), crate::HsmError> {
    crate::init_token(
        Path::new(SOFTHSM_MODULE),
        label,
        &AuthPin::from(SO_PIN),
        &AuthPin::from(TEST_PIN),
    )
}

const SO_PIN: &str = "13579135";

fn write_secret(dir: &Path, name: &str, value: &str) -> std::io::Result<PathBuf> {
    let p = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)?;
    std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes())?;
    Ok(p)
}

impl Drop for TestToken {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", token_dir().join("softhsm2.conf"))
            .args(["--delete-token", "--token", &self.label])
            .output();
        *live = live.saturating_sub(1);
        if *live == 0 {
            let _ = std::fs::remove_dir_all(token_dir());
        }
    }
}

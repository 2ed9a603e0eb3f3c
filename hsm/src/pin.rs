//! Where the token's user PIN comes from: a systemd credential
//! (`$CREDENTIALS_DIRECTORY/hsm-pin`, set up with `LoadCredential=` or
//! `LoadCredentialEncrypted=`) or, failing that, a file named in the
//! configuration. Never argv, never an environment variable holding the PIN
//! itself. The bytes read are zeroized; the PIN is never logged.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::AuthPin;

/// Name of the systemd credential holding the PIN.
pub const CREDENTIAL_NAME: &str = "hsm-pin";
/// Longest PIN accepted (PKCS#11 tokens use far fewer).
pub const MAX_PIN_LEN: usize = 256;

/// Why no PIN could be read.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Neither a credential nor a configured file.
    #[error("no HSM PIN: neither $CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} exists nor is a pin_file configured")]
    Missing,
    /// The file could not be read.
    #[error("cannot read HSM PIN file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error("HSM PIN file {path} is accessible by group or others (mode {mode:o}); make it 0600 or 0400")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Empty, too long, or not UTF-8.
    #[error("HSM PIN file {path} does not hold a PIN: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
}

/// Finds the PIN file: the systemd credential when `credentials_dir` (the
/// value of `$CREDENTIALS_DIRECTORY`) holds one, else `configured`.
pub fn locate(
    credentials_dir: Option<&Path>,
    configured: Option<&Path>,
) -> Result<PathBuf, PinError> {
    if let Some(dir) = credentials_dir {
        let p = dir.join(CREDENTIAL_NAME);
        if p.exists() {
            return Ok(p);
        }
    }
    configured.map(Path::to_path_buf).ok_or(PinError::Missing)
}

/// Reads the PIN the daemon should use: [`locate`] with the process's
/// `$CREDENTIALS_DIRECTORY`, then [`read_file`].
pub fn load(configured: Option<&Path>) -> Result<AuthPin, PinError> {
    let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    read_file(&locate(creds.as_deref(), configured)?)
}

/// Reads a PIN from `path`: one line, trailing newline dropped. The file must
/// not be accessible by group or others.
pub fn read_file(path: &Path) -> Result<AuthPin, PinError> {
    let err = |source| PinError::Read {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |why| PinError::Invalid {
        path: path.to_path_buf(),
        why,
    };
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mode = f.metadata().map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(PinError::Permissions {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_PIN_LEN + 2));
    f.by_ref()
        .take(MAX_PIN_LEN as u64 + 3)
        .read_to_end(&mut buf)
        .map_err(err)?;
    let mut end = buf.len();
    while end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let pin = std::str::from_utf8(&buf[..end]).map_err(|_| invalid("not UTF-8"))?;
    if pin.is_empty() {
        return Err(invalid("empty"));
    }
    if pin.len() > MAX_PIN_LEN || pin.contains('\n') {
        return Err(invalid("more than one line or too long"));
    }
    Ok(AuthPin::from(pin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    fn write(dir: &Path, name: &str, data: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&p)
            .unwrap();
        std::io::Write::write_all(&mut f, data).unwrap();
        p
    }

    #[test]
    fn credential_wins_over_configured_file() {
        let d = tempfile::tempdir().unwrap();
        let conf = write(d.path(), "conf-pin", b"1111\n", 0o600);
        let creds = d.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        assert_eq!(locate(Some(&creds), Some(&conf)).unwrap(), conf);
        write(&creds, CREDENTIAL_NAME, b"2222\n", 0o400);
        assert_eq!(
            locate(Some(&creds), Some(&conf)).unwrap(),
            creds.join(CREDENTIAL_NAME)
        );
        assert!(matches!(locate(None, None), Err(PinError::Missing)));
    }

    #[test]
    fn reads_one_line_and_rejects_bad_files() {
        use secrecy::ExposeSecret;
        let d = tempfile::tempdir().unwrap();
        let ok = write(d.path(), "ok", b"123456\r\n", 0o600);
        assert_eq!(read_file(&ok).unwrap().expose_secret(), "123456");
        let open = write(d.path(), "open", b"123456", 0o644);
        assert!(matches!(
            read_file(&open),
            Err(PinError::Permissions { .. })
        ));
        let empty = write(d.path(), "empty", b"\n", 0o600);
        assert!(matches!(read_file(&empty), Err(PinError::Invalid { .. })));
        let two = write(d.path(), "two", b"1\n2\n", 0o600);
        assert!(matches!(read_file(&two), Err(PinError::Invalid { .. })));
        let long = write(d.path(), "long", &[b'1'; 400], 0o600);
        assert!(matches!(read_file(&long), Err(PinError::Invalid { .. })));
        let msg = read_file(&d.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("missing"), "{msg}");
    }
}

//! The HSM PIN on disk is only a credential sealed to the TPM: the sandbox
//! seals it with `systemd-creds encrypt --with-key=tpm2` (Debian 12's
//! systemd 252, talking to swtpm through the tpm2-tss TCTI given as
//! `--tpm2-device=swtpm:host=…,port=…`), decrypts it as systemd does for
//! `LoadCredentialEncrypted=` into a private tmpfs directory named by
//! `$CREDENTIALS_DIRECTORY`, and hearth-pkid logs in to the SoftHSM2 token
//! with it (READY=1 comes only after the login). No file of the sandbox
//! holds the PIN in plain text, and another TPM cannot open the credential.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hearth_testbed::{creds_decrypt, wait_until, Options, Sandbox, PIN_CREDENTIAL};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// A second, unrelated swtpm on a free port pair; killed on drop (its
/// state directory with it).
struct OtherTpm(Child, u16, #[allow(dead_code)] tempfile::TempDir);

impl Drop for OtherTpm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn other_tpm() -> OtherTpm {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("swtpm_setup")
        .args(["--tpm2", "--overwrite", "--tpmstate"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "swtpm_setup");
    let port = loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--tpmstate"])
        .arg(format!("dir={}", dir.path().display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("swtpm listening", Duration::from_secs(10), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(drop))
    })
    .unwrap();
    OtherTpm(child, port, dir)
}

#[test]
fn pkid_opens_the_token_with_the_pin_sealed_to_the_tpm_and_no_plain_pin_is_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::for_tests(&tmp.path().join("sb"));
    opts.only = Some(vec!["hearth-pkid".into()]);
    let mut sb = Sandbox::up(&opts).unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    let pkid = sb.daemon("pkid").expect("pkid runs");
    assert!(pkid.sent("READY=1"), "pkid logged in and is ready");

    // The PIN, recovered the way systemd would, with the sandbox's TPM.
    let cred = PathBuf::from(&sb.env["HEARTH_HSM_PIN_CRED"]);
    assert!(cred.ends_with("secrets/hsm-pin.cred"), "{}", cred.display());
    let scratch = tempfile::tempdir_in("/dev/shm").unwrap();
    let plain = scratch.path().join("pin");
    creds_decrypt(&sb.env["HEARTH_TCTI"], PIN_CREDENTIAL, &cred, &plain).unwrap();
    let pin = std::fs::read(&plain).unwrap();
    assert_eq!(pin.len(), 32, "the sandbox's 16-byte hex PIN");

    // Nothing in the sandbox holds it in plain text: no PIN file, no config
    // naming one, not the credential itself.
    let mut all = Vec::new();
    files(&sb.dir, &mut all);
    assert!(!all.is_empty());
    for f in &all {
        let data = std::fs::read(f).unwrap_or_default();
        assert!(
            !data.windows(pin.len()).any(|w| w == pin.as_slice()),
            "{} holds the PIN in plain text",
            f.display()
        );
    }
    let config = std::fs::read_to_string(sb.dir.join("etc/hearth-pkid.toml")).unwrap();
    assert!(
        !config
            .lines()
            .any(|l| l.trim_start().starts_with("pin_file")),
        "{config}"
    );

    // The credential is sealed to this TPM: another one cannot open it.
    let other = other_tpm();
    let err = creds_decrypt(
        &format!("swtpm:host=127.0.0.1,port={}", other.1),
        PIN_CREDENTIAL,
        &cred,
        &scratch.path().join("other"),
    );
    assert!(err.is_err(), "another TPM decrypted the PIN");
    // Nor does it open under another credential name.
    assert!(creds_decrypt(
        &sb.env["HEARTH_TCTI"],
        "other-name",
        &cred,
        &scratch.path().join("renamed")
    )
    .is_err());

    // pkid's decrypted copy lives on tmpfs only, and goes with the sandbox.
    let listed = std::fs::read_to_string(sb.dir.join("credentials")).unwrap();
    let creds_dirs: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    assert_eq!(creds_dirs.len(), 1, "{listed}");
    assert!(creds_dirs[0].starts_with("/dev/shm"), "{listed}");
    assert_eq!(
        std::fs::read(creds_dirs[0].join(PIN_CREDENTIAL)).unwrap(),
        pin
    );
    sb.teardown();
    assert!(!creds_dirs[0].exists(), "removed at teardown");
}

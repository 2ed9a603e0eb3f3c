//! The systemd units are hardened to measured thresholds and accepted by
//! `systemd-analyze verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The highest exposure each unit may have (systemd-analyze security,
/// 0 = fully locked down, 10 = unprotected). hearth-pkid holds the CA's
/// token session and hearth-intentd runs the inference on untrusted text:
/// they get the tightest sandboxes.
const THRESHOLDS: [(&str, f64); 6] = [
    ("hearth-intentd.service", 0.5),
    ("hearth-pkid.service", 1.0),
    ("hearth-netd.service", 1.5),
    ("hearth-attestd.service", 1.5),
    ("hearth-dnsd.service", 1.5),
    ("hearth-dhcpd.service", 1.5),
];

fn exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure line for {}: {text}", unit.display()));
    let after = line.rsplit_once(": ").expect("level after colon").1;
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the level in {line:?}"))
}

#[test]
fn every_unit_is_at_or_below_its_exposure_threshold() {
    let dir = repo().join("systemd");
    let mut seen = 0;
    for (unit, max) in THRESHOLDS {
        let level = exposure(&dir.join(unit));
        assert!(
            level <= max,
            "{unit}: exposure {level} is above its threshold {max}"
        );
        seen += 1;
    }
    let on_disk = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "service")
        })
        .count();
    assert_eq!(seen, on_disk, "every unit in systemd/ has a threshold here");
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    // verify checks that ExecStart= binaries exist: point them at stand-in
    // executables in a temporary copy, leaving everything else as shipped.
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("libexec");
    std::fs::create_dir(&bin).unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "service") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let stand_in = bin.join(&name);
        std::fs::write(&stand_in, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("/usr/libexec/hearth/"),
            "{name}: ExecStart is under /usr/libexec/hearth"
        );
        let copy = tmp.path().join(path.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace("/usr/libexec/hearth/", &format!("{}/", bin.display())),
        )
        .unwrap();
        units.push(copy);
    }
    assert_eq!(units.len(), 6, "six daemons, six units");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "verify failed: {said}");
    assert!(said.trim().is_empty(), "verify complained: {said}");
}

/// The HSM PIN reaches hearth-pkid only as a credential sealed to the TPM
/// (`LoadCredentialEncrypted=`, made by `systemd-creds encrypt
/// --with-key=tpm2`): whoever copies the disk gets the token and a
/// ciphertext they cannot open without this TPM. No plain PIN file is
/// loaded by the unit or named in the shipped configuration.
#[test]
fn pkid_reads_the_hsm_pin_only_from_a_tpm_sealed_credential() {
    let unit = std::fs::read_to_string(repo().join("systemd/hearth-pkid.service")).unwrap();
    let directives: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let encrypted: Vec<&&str> = directives
        .iter()
        .filter(|l| l.starts_with("LoadCredentialEncrypted=hsm-pin:"))
        .collect();
    assert_eq!(
        encrypted.len(),
        1,
        "one LoadCredentialEncrypted=hsm-pin:…: {directives:?}"
    );
    assert!(
        encrypted[0].ends_with(".cred"),
        "the credential is the systemd-creds ciphertext: {}",
        encrypted[0]
    );
    for l in &directives {
        assert!(
            !(l.starts_with("LoadCredential=")
                || l.starts_with("SetCredential=")
                || l.starts_with("ImportCredential=")
                || l.starts_with("SetCredentialEncrypted=")),
            "no plain or inline credential: {l}"
        );
        assert!(
            !(l.starts_with("Environment") && l.to_lowercase().contains("pin")),
            "no PIN in the environment: {l}"
        );
    }
    let exec = directives
        .iter()
        .find(|l| l.starts_with("ExecStart="))
        .unwrap();
    assert!(
        !exec.to_lowercase().contains("pin"),
        "no PIN in argv: {exec}"
    );

    // The shipped configuration names no plain PIN file either (pin_file is
    // for hosts without systemd credentials, never the appliance).
    let config =
        std::fs::read_to_string(repo().join("daemons/pkid/hearth-pkid.example.toml")).unwrap();
    let set: Vec<&str> = config
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.starts_with("pin_file"))
        .collect();
    assert!(set.is_empty(), "the example config sets {set:?}");
}

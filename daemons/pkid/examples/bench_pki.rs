//! Benchmark (not a test): ceremony duration and certificates issued per
//! second through SoftHSM2, beside the same work done with the `openssl`
//! command line and key files, in the same run.
//!
//! `cargo run --release -p hearth-pkid --example bench_pki -- [N]`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hearth_hsm::testing::TestToken;
use hearth_pkid::{Engine, PkiConfig, Profile};

fn openssl(args: &[&str], dir: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn rate(n: usize, d: Duration) -> String {
    format!(
        "{n} in {:.3} s = {:.1}/s",
        d.as_secs_f64(),
        n as f64 / d.as_secs_f64()
    )
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200);
    let token = TestToken::new("bench")?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let cfg: PkiConfig = hearth_common::config::parse(
        Path::new("bench.toml"),
        &format!(
            "[hsm]\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n[ca]\nzones = [\"home.arpa\"]\nsubnets = [\"192.168.1.0/24\"]\n[issue]\nexport_dir = \"{}\"\n",
            token.module.display(),
            token.label,
            token.pin_file.display(),
            d.join("export").display()
        ),
    )?;

    // --- hearth-pkid through SoftHSM2 ---
    let t0 = Instant::now();
    let mut engine = Engine::open(&cfg, &d.join("state"))?;
    let opened = t0.elapsed();
    let t0 = Instant::now();
    engine.init()?;
    let ceremony = t0.elapsed();

    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-subj",
            "/CN=bench.home.arpa",
            "-addext",
            "subjectAltName=DNS:bench.home.arpa",
            "-out",
            "leaf.csr",
        ],
        d,
    )?;
    let csr = std::fs::read_to_string(d.join("leaf.csr"))?;
    let t0 = Instant::now();
    for _ in 0..n {
        engine.issue_from_csr(&csr, 90, Profile::Server)?;
    }
    let hsm_csr = t0.elapsed();
    let t0 = Instant::now();
    for i in 0..n {
        engine.issue_for_name(&format!("dev{i}.home.arpa"), 90, Profile::Server)?;
    }
    let hsm_name = t0.elapsed();
    let token_handle = engine.token().clone();
    let key = engine.issuing_key()?;
    let t0 = Instant::now();
    for _ in 0..n {
        token_handle.sign(&key, b"0123456789abcdef0123456789abcdef")?;
    }
    let raw_sign = t0.elapsed();

    // --- the same with the openssl CLI and key files ---
    let t0 = Instant::now();
    openssl(
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "root.key",
        ],
        d,
    )?;
    openssl(&["req", "-x509", "-new", "-key", "root.key", "-subj", "/O=Hearth/CN=Hearth Root CA",
        "-days", "3650", "-sha384",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:1",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "nameConstraints=critical,permitted;DNS:home.arpa,permitted;IP:192.168.1.0/255.255.255.0",
        "-out", "root.pem"], d)?;
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "issuing.key",
        ],
        d,
    )?;
    openssl(
        &[
            "req",
            "-new",
            "-key",
            "issuing.key",
            "-subj",
            "/O=Hearth/CN=Hearth Issuing CA",
            "-out",
            "issuing.csr",
        ],
        d,
    )?;
    std::fs::write(d.join("ca.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n")?;
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "issuing.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-days",
            "1825",
            "-sha384",
            "-extfile",
            "ca.ext",
            "-set_serial",
            "0x1234",
            "-out",
            "issuing.pem",
        ],
        d,
    )?;
    let ossl_ceremony = t0.elapsed();
    std::fs::write(d.join("leaf.ext"), "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:bench.home.arpa\n")?;
    let t0 = Instant::now();
    for i in 0..n {
        let serial = format!(
            "0x{:032x}",
            0x4000_0000_0000_0000_0000_0000_0000_0000u128 + i as u128
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "issuing.pem",
                "-CAkey",
                "issuing.key",
                "-days",
                "90",
                "-sha256",
                "-extfile",
                "leaf.ext",
                "-set_serial",
                &serial,
                "-out",
                "leaf.pem",
            ],
            d,
        )?;
    }
    let ossl_csr = t0.elapsed();

    println!("N = {n}");
    println!(
        "open engine (C_Initialize, login, load state): {:.1} ms",
        opened.as_secs_f64() * 1e3
    );
    println!(
        "ceremony, hearth-pkid + SoftHSM2 (2 keygens, 2 certs, CRL): {:.1} ms",
        ceremony.as_secs_f64() * 1e3
    );
    println!(
        "ceremony, openssl CLI + key files (2 keygens, 2 certs): {:.1} ms",
        ossl_ceremony.as_secs_f64() * 1e3
    );
    println!(
        "issue from CSR, hearth-pkid + SoftHSM2: {}",
        rate(n, hsm_csr)
    );
    println!(
        "issue for name (host P-256 key + export files), hearth-pkid + SoftHSM2: {}",
        rate(n, hsm_name)
    );
    println!(
        "issue from CSR, openssl x509 -req + key file: {}",
        rate(n, ossl_csr)
    );
    println!(
        "raw C_Sign (P-256, CKM_ECDSA) through the token: {}",
        rate(n, raw_sign)
    );
    Ok(())
}

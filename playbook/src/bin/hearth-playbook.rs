//! `hearth-playbook`: build-time tool for signed playbooks.
//!
//! * `gen-build-keys DIR`: once, a build/test vendor root, a playbook-signer
//!   certificate (codeSigning EKU) and an empty CRL, keys mode 0600.
//! * `sign --key K --chain C --out DIR FILE...`: each TOML playbook (checked
//!   first) into `DIR/<id>.dsse.json`.
//! * `sign-language --key K --chain C --out DIR FILE`: the interpreter's
//!   language file (`catalog/language/en.toml`, UTF-8 TOML) into
//!   `DIR/hearth-language.dsse.json`, payload type
//!   `application/vnd.hearth.language+toml`, with the same key and chain.
//! * `sign-pkid --out DIR FILE...`: the same with the appliance's playbook
//!   signer key, which never leaves the HSM: the PAE of each file goes to
//!   hearth-pkid's `SignPlaybook` on the system bus (the caller must be an
//!   admin there) and the returned signature is checked against the returned
//!   signer certificate before the envelope is written.
//! * `verify --root R [--crl C] FILE...`: verify envelopes (the one named
//!   `hearth-language.dsse.json` as the language file), print the result.
//!
//! Secrets are read from files only, never from argv or the environment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use hearth_playbook::dsse::{self, KeyFileSigner, LANGUAGE_PAYLOAD_TYPE, PAYLOAD_TYPE};
use hearth_playbook::keygen::{self, Authority, SignerOptions};
use hearth_playbook::{catalog, Playbook, RollbackState, TrustConfig, TrustStore};

#[derive(Parser)]
#[command(name = "hearth-playbook", about = "Sign and verify Hearth playbooks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The key file signing (sign, sign-language) uses, and where the
/// envelopes go.
#[derive(Args)]
struct KeyArgs {
    /// PKCS#8 PEM P-256 signing key file.
    #[arg(long)]
    key: PathBuf,
    /// PEM certificate chain, the signer's first.
    #[arg(long)]
    chain: PathBuf,
    /// Output directory: <id>.dsse.json for playbooks,
    /// hearth-language.dsse.json for the language file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the build/test signing keys in DIR unless they exist.
    GenBuildKeys {
        /// Output directory (git-ignored), e.g. .build-keys
        dir: PathBuf,
    },
    /// Sign TOML playbooks into DSSE envelopes.
    Sign {
        #[command(flatten)]
        with: KeyArgs,
        /// Playbook TOML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Sign the interpreter's language file into <out>/hearth-language.dsse.json.
    SignLanguage {
        #[command(flatten)]
        with: KeyArgs,
        /// The language file (TOML), e.g. catalog/language/en.toml.
        file: PathBuf,
    },
    /// Sign TOML playbooks with the appliance's signer key in the HSM,
    /// through hearth-pkid (org.hearth.Pki1.SignPlaybook).
    SignPkid {
        /// Output directory for <id>.dsse.json.
        #[arg(long)]
        out: PathBuf,
        /// Playbook TOML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify envelopes against trust anchors.
    Verify {
        /// PEM trust anchor(s).
        #[arg(long, required = true)]
        root: Vec<PathBuf>,
        /// CRL file(s).
        #[arg(long)]
        crl: Vec<PathBuf>,
        /// Envelope files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn write_secret(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    hearth_common::fsutil::write_atomic(path, data, 0o600)
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn gen_build_keys(dir: &Path) -> anyhow::Result<()> {
    let root_pem = dir.join("vendor-root.pem");
    if root_pem.exists() {
        eprintln!("{}: keys exist, kept", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let root = Authority::new_root("Hearth build vendor root (NOT FOR PRODUCTION)", 10)?;
    let signer = root.issue_signer(&SignerOptions::valid_for(
        "Hearth build playbook signer",
        825,
    ))?;
    let crl = root.crl(1, &[])?;
    write_secret(&dir.join("vendor-root.key"), root.key_pem().as_bytes())?;
    write_secret(&dir.join("signer.key"), signer.key_pem.as_bytes())?;
    hearth_common::fsutil::write_atomic(
        &dir.join("signer.pem"),
        keygen::cert_pem(&signer.cert_der).as_bytes(),
        0o644,
    )?;
    hearth_common::fsutil::write_atomic(
        &dir.join("vendor-root.crl.pem"),
        keygen::crl_pem(&crl).as_bytes(),
        0o644,
    )?;
    // Written last: its presence means the set is complete.
    hearth_common::fsutil::write_atomic(
        &root_pem,
        keygen::cert_pem(&root.cert_der).as_bytes(),
        0o644,
    )?;
    eprintln!("{}: build signing keys created", dir.display());
    Ok(())
}

fn key_signer(key: &Path, chain: &Path, out: &Path) -> anyhow::Result<KeyFileSigner> {
    let key_bytes = std::fs::read(key).with_context(|| format!("{}", key.display()))?;
    let chain_bytes = std::fs::read(chain).with_context(|| format!("{}", chain.display()))?;
    let signer = KeyFileSigner::new(&key_bytes, &chain_bytes)?;
    std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
    Ok(signer)
}

fn sign(with: &KeyArgs, files: &[PathBuf]) -> anyhow::Result<()> {
    let out = &with.out;
    let signer = key_signer(&with.key, &with.chain, out)?;
    for f in files {
        let bytes = std::fs::read(f).with_context(|| format!("{}", f.display()))?;
        let pb = Playbook::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let env = dsse::sign(&bytes, PAYLOAD_TYPE, &signer)?;
        write_envelope(out, &pb, &env)?;
    }
    Ok(())
}

fn sign_language(with: &KeyArgs, file: &Path) -> anyhow::Result<()> {
    let out = &with.out;
    let signer = key_signer(&with.key, &with.chain, out)?;
    let bytes = std::fs::read(file).with_context(|| format!("{}", file.display()))?;
    catalog::check_language_text(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let env = dsse::sign(&bytes, LANGUAGE_PAYLOAD_TYPE, &signer)?;
    let dest = write_json(&out.join(catalog::LANGUAGE_FILE), &env)?;
    println!("{} -> {}", file.display(), dest.display());
    Ok(())
}

fn write_json(dest: &Path, env: &dsse::Envelope) -> anyhow::Result<PathBuf> {
    let mut json = serde_json::to_vec_pretty(env)?;
    json.push(b'\n');
    hearth_common::fsutil::write_atomic(dest, &json, 0o644)?;
    Ok(dest.to_path_buf())
}

fn write_envelope(out: &Path, pb: &Playbook, env: &dsse::Envelope) -> anyhow::Result<()> {
    let dest = write_json(&out.join(format!("{}.dsse.json", pb.spec.id)), env)?;
    println!("{} v{} -> {}", pb.spec.id, pb.spec.version, dest.display());
    Ok(())
}

fn sign_pkid(out: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    use base64::Engine as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let conn = zbus::Connection::system()
            .await
            .context("cannot connect to the system bus")?;
        let pki = hearth_common::proxies::pki::PkiProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .context("cannot make the hearth-pkid proxy")?;
        std::fs::create_dir_all(out).with_context(|| format!("{}", out.display()))?;
        for f in files {
            let bytes = std::fs::read(f).with_context(|| format!("{}", f.display()))?;
            let pb =
                Playbook::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
            let pae = dsse::pae(PAYLOAD_TYPE, &bytes);
            // A playbook is UTF-8 (Playbook::parse checked), so is its PAE.
            let text = String::from_utf8(pae.clone()).context("PAE is not UTF-8")?;
            let sig = hearth_common::contract::pki::sign_playbook(&pki, &text)
                .await
                .with_context(|| format!("{}: hearth-pkid SignPlaybook", f.display()))?;
            if sig.algorithm != "ecdsa-p256-sha256" {
                anyhow::bail!("SignPlaybook: unexpected algorithm {:?}", sig.algorithm);
            }
            let signature = base64::engine::general_purpose::STANDARD.decode(&sig.signature)?;
            let signer = dsse::Presigned::new(pae, signature, sig.chain_pem.as_bytes())?;
            let env = dsse::sign(&bytes, PAYLOAD_TYPE, &signer)?;
            write_envelope(out, &pb, &env)?;
        }
        Ok(())
    })
}

fn verify(roots: &[PathBuf], crls: &[PathBuf], files: &[PathBuf]) -> anyhow::Result<bool> {
    let trust = TrustStore::load(&TrustConfig {
        vendor_roots: roots.to_vec(),
        crls: crls.to_vec(),
        ..Default::default()
    })?;
    let state = RollbackState::in_memory();
    let mut ok = true;
    let now = rustls_pki_types::UnixTime::now();
    for f in files {
        if f.file_name().is_some_and(|n| n == catalog::LANGUAGE_FILE) {
            match catalog::verify_language_file(&trust, f, now) {
                Ok(l) => println!("{}: ok language file sha256:{}", f.display(), l.digest),
                Err(r) => {
                    println!("{r}");
                    ok = false;
                }
            }
            continue;
        }
        match catalog::verify_file(&trust, &state, f, now) {
            Ok(i) => println!(
                "{}: ok {} v{} sha256:{}",
                f.display(),
                i.playbook.spec.id,
                i.playbook.spec.version,
                i.playbook.digest
            ),
            Err(r) => {
                println!("{r}");
                ok = false;
            }
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::GenBuildKeys { dir } => gen_build_keys(&dir).map(|_| true),
        Cmd::Sign { with, files } => sign(&with, &files).map(|_| true),
        Cmd::SignLanguage { with, file } => sign_language(&with, &file).map(|_| true),
        Cmd::SignPkid { out, files } => sign_pkid(&out, &files).map(|_| true),
        Cmd::Verify { root, crl, files } => verify(&root, &crl, &files),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("hearth-playbook: {e:#}");
            ExitCode::from(2)
        }
    }
}

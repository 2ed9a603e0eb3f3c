//! The installed catalog: a directory of `<id>.dsse.json` envelopes, each
//! verified (trust + anti-rollback) before it is used, and beside them the
//! interpreter's signed language file ([`LANGUAGE_FILE`]), verified with the
//! same trust store under its own payload type and returned on its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls_pki_types::UnixTime;

use crate::dsse::{sha256_hex, LANGUAGE_PAYLOAD_TYPE};
pub use hearth_common::contract::intent::Summary;

use crate::format::Playbook;
use crate::trust::{Refusal, RefusalKind, RollbackState, TrustStore};

/// The file name of the signed language file in a catalog directory. A
/// playbook id never holds `-`, so no playbook's `<id>.dsse.json` can take
/// this name.
pub const LANGUAGE_FILE: &str = "hearth-language.dsse.json";

/// The signed language file (number words, duration units, …: the
/// interpreter's generic resources), verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language {
    /// The envelope file.
    pub file: PathBuf,
    /// The payload: the language file's TOML text, as signed.
    pub text: String,
    /// SHA-256 of the payload, hex.
    pub digest: String,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

/// Checks that `bytes` can be a language file's payload (UTF-8 TOML); its
/// meaning is the interpreter's to check.
pub fn check_language_text(bytes: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("not TOML: {e}"))?;
    Ok(text)
}

/// Verifies the bytes of a signed language file that came from `file`:
/// signature, chain and payload type [`LANGUAGE_PAYLOAD_TYPE`], then that the
/// payload is UTF-8 TOML. Changes nothing.
pub fn verify_language_bytes(
    trust: &TrustStore,
    file: &Path,
    bytes: &[u8],
    now: UnixTime,
) -> Result<Language, Refusal> {
    let v = trust.verify_envelope(file, bytes, LANGUAGE_PAYLOAD_TYPE, now)?;
    let text = check_language_text(&v.payload).map_err(|why| Refusal {
        file: file.into(),
        kind: RefusalKind::BadLanguage,
        reason: format!("the signed language file is {why}"),
    })?;
    Ok(Language {
        file: file.into(),
        text: text.to_string(),
        digest: sha256_hex(&v.payload),
        signer: v.signer,
    })
}

/// Reads and verifies a signed language file ([`verify_language_bytes`]).
pub fn verify_language_file(
    trust: &TrustStore,
    file: &Path,
    now: UnixTime,
) -> Result<Language, Refusal> {
    verify_language_bytes(trust, file, &read(file)?, now)
}

fn read(file: &Path) -> Result<Vec<u8>, Refusal> {
    std::fs::read(file).map_err(|e| Refusal {
        file: file.into(),
        kind: RefusalKind::Malformed,
        reason: format!("cannot read: {e}"),
    })
}

/// A playbook that passed verification.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The playbook.
    pub playbook: Playbook,
    /// The envelope file.
    pub file: PathBuf,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

impl Installed {
    /// The summary the bus contract lists (`Catalog`, `InstallPlaybook`,
    /// `VerifyPlaybook`).
    pub fn summary(&self) -> Summary {
        let s = &self.playbook.spec;
        Summary {
            id: s.id.clone(),
            version: s.version,
            risk: s.risk,
            description: s.description.clone(),
            digest: self.playbook.digest.clone(),
            signer: self.signer.clone(),
        }
    }
}

/// Verifies one envelope file: signature, chain and anti-rollback. Changes
/// nothing.
pub fn verify_file(
    trust: &TrustStore,
    rollback: &RollbackState,
    file: &Path,
    now: UnixTime,
) -> Result<Installed, Refusal> {
    verify_bytes(trust, rollback, file, &read(file)?, now)
}

/// Verifies envelope bytes that came from `file` (used in messages and for
/// the name check). Changes nothing.
pub fn verify_bytes(
    trust: &TrustStore,
    rollback: &RollbackState,
    file: &Path,
    bytes: &[u8],
    now: UnixTime,
) -> Result<Installed, Refusal> {
    let v = trust.verify(file, bytes, now)?;
    rollback.check(file, &v.playbook)?;
    Ok(Installed {
        playbook: v.playbook,
        file: file.into(),
        signer: v.signer,
    })
}

/// The result of loading a catalog directory.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Accepted playbooks by id.
    pub playbooks: BTreeMap<String, Installed>,
    /// Refused files, each logged.
    pub refused: Vec<Refusal>,
    /// The signed language file ([`LANGUAGE_FILE`]), when there and accepted
    /// (refused, it is in `refused`).
    pub language: Option<Language>,
}

/// Loads every `*.dsse.json` (and refuses every bare `*.toml`) in `dir`,
/// records accepted versions in the anti-rollback state, logs refusals.
/// [`LANGUAGE_FILE`] is verified as the language file, not as a playbook.
pub fn load_dir(
    trust: &TrustStore,
    rollback: &mut RollbackState,
    dir: &Path,
    now: UnixTime,
) -> std::io::Result<Loaded> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Loaded::default();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if name == LANGUAGE_FILE {
            match verify_language_file(trust, &f, now) {
                Ok(l) => {
                    tracing::info!(digest = %l.digest, "signed language file accepted");
                    out.language = Some(l);
                }
                Err(r) => {
                    tracing::warn!(file = %f.display(), kind = r.kind.as_str(), "{r}");
                    out.refused.push(r);
                }
            }
            continue;
        }
        let result = if name.ends_with(".dsse.json") {
            verify_file(trust, rollback, &f, now)
        } else if name.ends_with(".toml") {
            Err(Refusal {
                file: f.clone(),
                kind: RefusalKind::Unsigned,
                reason: "a bare playbook, not a signed envelope".into(),
            })
        } else {
            continue;
        };
        match result {
            Ok(inst) => {
                if let Err(e) = rollback.record(&inst.playbook) {
                    let r = Refusal {
                        file: f.clone(),
                        kind: RefusalKind::RolledBack,
                        reason: format!("cannot record the accepted version: {e}"),
                    };
                    tracing::warn!(file = %f.display(), "{r}");
                    out.refused.push(r);
                    continue;
                }
                tracing::info!(
                    id = %inst.playbook.spec.id,
                    version = inst.playbook.spec.version,
                    digest = %inst.playbook.digest,
                    "playbook accepted"
                );
                out.playbooks.insert(inst.playbook.spec.id.clone(), inst);
            }
            Err(r) => {
                tracing::warn!(file = %f.display(), kind = r.kind.as_str(), "{r}");
                out.refused.push(r);
            }
        }
    }
    Ok(out)
}

/// Verifies `src` and copies it into `dir` as `<id>.dsse.json` (atomically),
/// recording its version. A refused file changes nothing.
pub fn install(
    trust: &TrustStore,
    rollback: &mut RollbackState,
    src: &Path,
    dir: &Path,
    now: UnixTime,
) -> Result<Installed, Refusal> {
    install_bytes(trust, rollback, src, &read(src)?, dir, now)
}

/// Like [`install`] for envelope bytes received from `src` (a client's file
/// name, for messages).
pub fn install_bytes(
    trust: &TrustStore,
    rollback: &mut RollbackState,
    src: &Path,
    bytes: &[u8],
    dir: &Path,
    now: UnixTime,
) -> Result<Installed, Refusal> {
    let mut inst = verify_bytes(trust, rollback, src, bytes, now)?;
    let dest = dir.join(format!("{}.dsse.json", inst.playbook.spec.id));
    let fail = |e: std::io::Error| Refusal {
        file: src.into(),
        kind: RefusalKind::Malformed,
        reason: format!("cannot install into {}: {e}", dest.display()),
    };
    // Copy first: if recording then fails, the next load records the newer
    // file anyway; recording first could leave the old file refused.
    hearth_common::fsutil::write_atomic(&dest, bytes, 0o644).map_err(fail)?;
    rollback.record(&inst.playbook).map_err(fail)?;
    tracing::info!(id = %inst.playbook.spec.id, version = inst.playbook.spec.version, "playbook installed");
    inst.file = dest;
    Ok(inst)
}

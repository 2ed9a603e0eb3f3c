//! The installed catalog: a directory of `<id>.dsse.json` envelopes, each
//! verified (trust + anti-rollback) before it is used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls_pki_types::UnixTime;
use serde::Serialize;

use crate::format::Playbook;
use crate::trust::{Refusal, RefusalKind, RollbackState, TrustStore};

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

/// A summary for listings.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Id.
    pub id: String,
    /// Version.
    pub version: u64,
    /// Risk.
    pub risk: &'static str,
    /// Description.
    pub description: String,
    /// Digest of the playbook (sha256 of the TOML), hex.
    pub digest: String,
    /// SHA-256 of the signer certificate, hex.
    pub signer: String,
}

impl Installed {
    /// A summary for listings.
    pub fn summary(&self) -> Summary {
        let s = &self.playbook.spec;
        Summary {
            id: s.id.clone(),
            version: s.version,
            risk: s.risk.as_str(),
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
    let bytes = std::fs::read(file).map_err(|e| Refusal {
        file: file.into(),
        kind: RefusalKind::Malformed,
        reason: format!("cannot read: {e}"),
    })?;
    verify_bytes(trust, rollback, file, &bytes, now)
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
}

/// Loads every `*.dsse.json` (and refuses every bare `*.toml`) in `dir`,
/// records accepted versions in the anti-rollback state, logs refusals.
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
    let bytes = std::fs::read(src).map_err(|e| Refusal {
        file: src.into(),
        kind: RefusalKind::Malformed,
        reason: format!("cannot read: {e}"),
    })?;
    install_bytes(trust, rollback, src, &bytes, dir, now)
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

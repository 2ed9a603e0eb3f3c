//! The catalog the gate serves: signed playbooks verified against the
//! trust store and the anti-rollback state, measured into the TPM before
//! use, shown, and installed by admins.

use std::path::{Path, PathBuf};

use hearth_playbook::catalog::{self, Summary};
use hearth_playbook::{Refusal, TrustStore};
use rustls_pki_types::UnixTime;
use serde_json::{json, Value};

use super::{lock, Gate, GateError};
use crate::exec::{Executor, Measurer};
use crate::interpret::Interpreter;
use crate::policy::{Caller, PolicyError};

impl<E: Executor, I: Interpreter + ?Sized, M: Measurer> Gate<E, I, M> {
    /// Re-reads the trust anchors and CRLs (an appliance CA or CRL that
    /// appeared since, a new CRL), then the catalog directory. When the
    /// trust files cannot be read or parsed the catalog is emptied (fail
    /// closed: a signer revoked by the CRL that cannot be read must not keep
    /// running) and the error names the file; a later reload that succeeds
    /// restores it.
    pub fn reload(&self) -> Result<usize, GateError> {
        let loaded = self.load_catalog()?;
        Ok(self.apply_catalog(loaded, None))
    }

    /// As [`Gate::reload`] (the daemon's ReloadCatalog and InstallPlaybook),
    /// and every playbook file not measured yet is measured into the TPM
    /// (kind `playbook-catalog`, its file name, the SHA-256 of the envelope,
    /// as at start) before it joins the catalog. A file that cannot be
    /// measured, or that changed since it was verified, is left out (not
    /// usable) and the error names it; the others are served. The signed
    /// language file is measured the same way (under its file name,
    /// [`catalog::LANGUAGE_FILE`]); left out, plain-language requests are
    /// refused until a reload measures it.
    pub async fn reload_measured(&self) -> Result<usize, GateError> {
        let mut loaded = self.load_catalog()?;
        let mut left_out = Vec::new();
        let ids: Vec<String> = loaded.playbooks.keys().cloned().collect();
        for id in ids {
            let Some(inst) = loaded.playbooks.get(&id) else {
                continue;
            };
            let (name, result) = self.measure_file(&inst.file, &inst.playbook.digest).await;
            if let Err(why) = result {
                tracing::error!(file = %name, "playbook not measured, left out of the catalog: {why}");
                loaded.playbooks.remove(&id);
                left_out.push(format!("{name} ({why})"));
            }
        }
        let mut language_problem = None;
        if let Some(l) = &loaded.language {
            let (name, result) = self.measure_file(&l.file, &l.digest).await;
            if let Err(why) = result {
                left_out.push(format!("{name} ({why})"));
                language_problem = Some(format!(
                    "the signed language file {name} is not measured into the TPM ({why})"
                ));
            }
        }
        let n = self.apply_catalog(loaded, language_problem);
        if left_out.is_empty() {
            Ok(n)
        } else {
            Err(GateError::Unavailable(format!(
                "not measured into the TPM, so left out of the catalog until a reload measures them: {}",
                left_out.join("; ")
            )))
        }
    }

    /// Measures the catalog file `file` (kind `playbook-catalog`, its file
    /// name, the SHA-256 of the envelope) unless this gate measured these
    /// bytes already; `payload_digest` is the SHA-256 of the payload that
    /// was verified, so that bytes changed since are not measured in its
    /// place. The file name and the result.
    async fn measure_file(
        &self,
        file: &Path,
        payload_digest: &str,
    ) -> (String, Result<(), String>) {
        use sha2::{Digest, Sha256};
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Measure the bytes whose payload is the one verified.
        let digest = match std::fs::read(file) {
            Ok(bytes) => {
                let same = serde_json::from_slice::<hearth_playbook::dsse::Envelope>(&bytes)
                    .ok()
                    .and_then(|e| e.payload_bytes().ok())
                    .is_some_and(|p| hex::encode(Sha256::digest(&p)) == payload_digest);
                if same {
                    Ok(hex::encode(Sha256::digest(&bytes)))
                } else {
                    Err("it changed since it was verified".to_string())
                }
            }
            Err(e) => Err(format!("it cannot be read: {e}")),
        };
        let result = match digest {
            Ok(d) if lock(&self.measured_playbooks).contains(&(name.clone(), d.clone())) => Ok(()),
            Ok(d) => match self.measurer.measure("playbook-catalog", &name, &d).await {
                Ok(()) => {
                    lock(&self.measured_playbooks).insert((name.clone(), d));
                    Ok(())
                }
                Err(e) => Err(format!("hearth-attestd: {e}")),
            },
            Err(e) => Err(e),
        };
        (name, result)
    }

    /// Reloads the trust store and verifies the catalog directory (see
    /// [`Gate::reload`]); installs nothing.
    fn load_catalog(&self) -> Result<catalog::Loaded, GateError> {
        let fresh = match TrustStore::load(&self.settings.trust) {
            Ok(t) => t,
            Err(e) => {
                self.catalog
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
                tracing::error!(error = %e, "trust anchors or CRLs unusable: every playbook is refused");
                return Err(GateError::Unavailable(format!(
                    "trust anchors: {e}; every playbook is refused until it is fixed"
                )));
            }
        };
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let mut rb = lock(&self.rollback);
        catalog::load_dir(&trust, &mut rb, &self.settings.catalog_dir, UnixTime::now()).map_err(
            |e| GateError::Unavailable(format!("{}: {e}", self.settings.catalog_dir.display())),
        )
    }

    /// Serves `loaded` as the catalog; the number of playbooks. The text
    /// path is open only with the signed language file there, accepted by
    /// the interpreter, and no `language_problem` (it could not be
    /// measured); otherwise the reason is kept and logged, and
    /// plain-language requests are refused with it.
    fn apply_catalog(&self, loaded: catalog::Loaded, language_problem: Option<String>) -> usize {
        let specs: Vec<_> = loaded
            .playbooks
            .values()
            .map(|i| i.playbook.spec.clone())
            .collect();
        self.interpreter.set_catalog(&specs);
        let file = catalog::LANGUAGE_FILE;
        let language = match (&loaded.language, language_problem) {
            (_, Some(why)) => Err(why),
            (None, None) => Err(
                match loaded
                    .refused
                    .iter()
                    .find(|r| r.file.file_name().is_some_and(|n| n == file))
                {
                    Some(r) => format!(
                        "the signed language file {file} was refused ({}: {})",
                        r.kind.as_str(),
                        r.reason
                    ),
                    None => format!(
                        "the catalog holds no signed language file ({file}; scripts/sign-catalog signs catalog/language/en.toml into it)"
                    ),
                },
            ),
            (Some(l), None) => match self.interpreter.check_language(&l.text) {
                Ok(()) => Ok(l.digest.clone()),
                Err(why) => Err(format!(
                    "the signed language file {file} (sha256 {}) is not the one the interpreter was trained on: {why}",
                    l.digest
                )),
            },
        };
        match &language {
            Ok(digest) => tracing::info!(%digest, "signed language file in use by the text path"),
            Err(why) => tracing::error!(
                "plain-language requests are refused, structured intents still run: {why}"
            ),
        }
        *self.language.write().unwrap_or_else(|p| p.into_inner()) = language;
        let n = loaded.playbooks.len();
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = loaded.playbooks;
        *self.refused.write().unwrap_or_else(|p| p.into_inner()) = loaded.refused;
        n
    }

    /// The accepted playbooks.
    pub fn catalog(&self) -> Vec<Summary> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|i| i.summary())
            .collect()
    }

    /// One accepted playbook's full spec and steps, as JSON.
    pub fn show(&self, id: &str) -> Option<Value> {
        let cat = self.catalog.read().unwrap_or_else(|p| p.into_inner());
        let i = cat.get(id)?;
        Some(json!({
            "summary": i.summary(),
            "spec": i.playbook.spec,
            "steps": i.playbook.steps.iter().map(|s| json!({
                "call": s.call.method.key,
                "args": s.call.method.args.iter().zip(&s.call.args).map(|(a, t)| (a.name.to_string(), Value::String(t.source()))).collect::<serde_json::Map<_, _>>(),
                "undo": s.undo.as_ref().map(|u| json!({
                    "call": u.method.key,
                    "args": u.method.args.iter().zip(&u.args).map(|(a, t)| (a.name.to_string(), Value::String(t.source()))).collect::<serde_json::Map<_, _>>(),
                })),
                "irreversible": s.irreversible,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Why plain-language requests are refused now (the signed language
    /// file is missing, refused, not measured or not what the interpreter
    /// was trained on); `None` while the text path is open.
    pub fn language_refusal(&self) -> Option<String> {
        self.language
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .err()
            .cloned()
    }

    /// `Catalog`'s answer: the verified playbooks and the files refused
    /// at the last load.
    pub fn catalog_document(&self) -> hearth_common::contract::intent::Catalog {
        hearth_common::contract::intent::Catalog {
            playbooks: self.catalog(),
            refused: self.refused().iter().map(Into::into).collect(),
        }
    }

    /// The files refused at the last load.
    pub fn refused(&self) -> Vec<Refusal> {
        self.refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Verifies an envelope against the trust store and the anti-rollback
    /// state without installing it.
    pub fn verify_envelope(&self, name: &str, bytes: &[u8]) -> Result<Summary, GateError> {
        let label = Path::new(name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("envelope"));
        let rb = lock(&self.rollback);
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let r = catalog::verify_bytes(&trust, &rb, &label, bytes, UnixTime::now());
        drop(trust);
        drop(rb);
        match r {
            Ok(i) => Ok(i.summary()),
            Err(r) => {
                tracing::warn!(kind = r.kind.as_str(), "{r}");
                Err(r.into())
            }
        }
    }

    /// Installs an envelope (admins only), then reloads, measuring it (and
    /// any other file not measured yet) before it can be used
    /// ([`Gate::reload_measured`]).
    pub async fn install(
        &self,
        name: &str,
        bytes: &[u8],
        caller: Caller,
    ) -> Result<Summary, GateError> {
        if !caller.is_admin {
            return Err(PolicyError::NotAdmin.into());
        }
        let label = Path::new(name)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("envelope"));
        let inst = {
            let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
            let mut rb = lock(&self.rollback);
            catalog::install_bytes(
                &trust,
                &mut rb,
                &label,
                bytes,
                &self.settings.catalog_dir,
                UnixTime::now(),
            )
        };
        let inst = match inst {
            Ok(i) => i,
            Err(r) => {
                tracing::warn!(kind = r.kind.as_str(), "{r}");
                self.record(json!({
                    "kind": "install-refused", "caller_uid": caller.uid,
                    "file": name, "refusal": r,
                }))?;
                return Err(r.into());
            }
        };
        self.record(json!({
            "kind": "installed", "caller_uid": caller.uid,
            "playbook": {"id": inst.playbook.spec.id, "version": inst.playbook.spec.version, "digest": inst.playbook.digest},
            "signer": inst.signer,
        }))?;
        self.reload_measured().await?;
        Ok(inst.summary())
    }
}

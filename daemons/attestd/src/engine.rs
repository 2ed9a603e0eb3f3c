//! The attestation engine: the append-only event log, the TPM register it
//! mirrors, quotes and credential activation. Blocking (TPM and fsync):
//! async callers go through `spawn_blocking`.
//!
//! Invariants:
//! * An event is appended to the log and fsynced *before* the register is
//!   extended; so after a crash the log may hold one event more than the
//!   register, never less.
//! * The replay of the log is compared with the register at start; a
//!   mismatch is reported by [`Engine::status`] (and makes every verifier's
//!   check fail), never repaired or hidden.
//! * Quotes and register certifications are taken under the same lock as
//!   appends, so both describe the same log.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hashing::sha256_file;
use hearth_attestation::api::{
    EnrollRequest, EnrollResponse, Identity, QuoteResponse, Signed, BOOT_PCRS,
};
use hearth_attestation::eventlog::{self, Content, Event, Kind};
use hearth_attestation::tcglog;
use hearth_attestation::tpm::{Tpm, TpmConfig, TpmError, TpmIdentity};

use crate::config::Config;
use crate::tls::CertInfo;

/// Engine failures.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The TPM failed.
    #[error("TPM: {0}")]
    Tpm(#[from] TpmError),
    /// State i/o failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bad input; names the field and value.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// Field.
        field: &'static str,
        /// Value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The caller may not submit measurements.
    #[error("uid {0} may not submit measurements")]
    NotAuthorized(u32),
    /// Setup problem.
    #[error("{0}")]
    Setup(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Log and register agreement (the contract's type).
pub use hearth_common::contract::attestation::Status;

struct Inner {
    log: Vec<Event>,
    file: File,
    consistent: bool,
    detail: Option<String>,
}

/// Reads the firmware's TCG event log (the kernel's
/// `binary_bios_measurements`: its size is not known before reading it),
/// at most [`tcglog::MAX_LOG_BYTES`]. An unreadable or oversized log is
/// not sent, with a warning: the verifier then reports "no firmware event
/// log". The bytes are sent as they are; judging them is the verifier's
/// job (decision 053).
fn read_firmware_event_log(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| {
        f.take(tcglog::MAX_LOG_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    match read {
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "firmware event log unreadable: quotes go without it");
            None
        }
        Ok(n) if n > tcglog::MAX_LOG_BYTES => {
            tracing::warn!(path = %path.display(), limit = tcglog::MAX_LOG_BYTES, "firmware event log over the limit: quotes go without it");
            None
        }
        Ok(_) => Some(bytes),
    }
}

/// The engine.
pub struct Engine {
    tpm: Tpm,
    nv_auth: Vec<u8>,
    identity: TpmIdentity,
    root_ca_pem: String,
    measurement_uids: Vec<u32>,
    firmware_event_log: Option<PathBuf>,
    log_path: PathBuf,
    inner: Mutex<Inner>,
    tls: std::sync::RwLock<Option<CertInfo>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tcti", &self.tpm.config().tcti)
            .finish_non_exhaustive()
    }
}

mod hashing {
    //! File hashing.
    use std::io::Read;
    use std::path::Path;

    /// SHA-256 of a file's bytes, hex.
    pub fn sha256_file(path: &Path) -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let mut h = openssl::sha::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finish()))
    }
}

fn load_or_make_auth(path: &Path) -> Result<Vec<u8>, EngineError> {
    match std::fs::read(path) {
        Ok(v) if v.len() == 32 => Ok(v),
        Ok(_) => Err(EngineError::Setup(format!(
            "{}: not a 32-byte authorization value",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut v = vec![0u8; 32];
            openssl::rand::rand_bytes(&mut v)
                .map_err(|e| EngineError::Setup(format!("random: {e}")))?;
            hearth_common::fsutil::write_atomic(path, &v, 0o600).map_err(io(path))?;
            Ok(v)
        }
        Err(e) => Err(EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Reads the log; a line that does not parse is reported, not skipped.
fn read_log(path: &Path) -> Result<(Vec<Event>, Option<String>), EngineError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(io(path)(e)),
    };
    let mut events = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(&line) {
            Ok(e) => events.push(e),
            Err(e) => {
                return Ok((
                    events,
                    Some(format!(
                        "{}:{}: unreadable record: {e}",
                        path.display(),
                        i + 1
                    )),
                ))
            }
        }
    }
    Ok((events, None))
}

fn validate_measurement(kind: &str, name: &str, sha256: &str) -> Result<Content, EngineError> {
    let k = Kind::parse(kind).ok_or(EngineError::Invalid {
        field: "kind",
        value: kind.to_string(),
        reason: "not one of binary, model, playbook-catalog, policy, action",
    })?;
    if name.is_empty() || name.len() > 4096 || name.chars().any(char::is_control) {
        return Err(EngineError::Invalid {
            field: "name",
            value: name.chars().take(100).collect(),
            reason: "must be 1 to 4096 characters without control characters",
        });
    }
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(EngineError::Invalid {
            field: "sha256",
            value: sha256.chars().take(100).collect(),
            reason: "must be 64 hexadecimal digits",
        });
    }
    Ok(Content {
        kind: k,
        name: name.to_string(),
        sha256: sha256.to_ascii_lowercase(),
    })
}

impl Engine {
    /// Opens the engine: provisions the TPM (EK, AK, register), loads the
    /// log, compares it with the register, then measures the configured
    /// binaries. Blocking.
    pub fn open(cfg: &Config, state_dir: &Path) -> Result<Engine, EngineError> {
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let measurement_uids = cfg
            .measurement_uids()
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        let tpm = Tpm::new(TpmConfig {
            tcti: cfg.tcti.clone(),
            ek_handle: cfg.ek_handle,
            ak_handle: cfg.ak_handle,
            nv_index: cfg.nv_index,
        });
        let nv_auth = load_or_make_auth(&state_dir.join("nv-auth"))?;
        let identity = tpm.provision(&nv_auth)?;
        if !identity.deletion_protected {
            tracing::warn!(
                "the measurement register {:#010x} can be deleted and defined again (it is not \
                 platform-created with an unsatisfiable delete policy): its history is not \
                 protected against root; hearth-verify reports it (decision 052)",
                cfg.nv_index
            );
        }
        let root_ca_pem = std::fs::read_to_string(&cfg.root_ca).map_err(io(&cfg.root_ca))?;
        let log_path = state_dir.join("events.jsonl");
        let (log, unreadable) = read_log(&log_path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let register = tpm.read_register(&nv_auth)?;
        let (consistent, detail) = match (unreadable, eventlog::replay(&log, cfg.nv_index)) {
            (Some(why), _) => (false, Some(why)),
            (None, Err(e)) => (false, Some(format!("the log does not replay: {e}"))),
            (None, Ok(replayed)) if replayed == register => (true, None),
            (None, Ok(replayed)) => {
                let hint = if !log.is_empty()
                    && eventlog::replay(&log[..log.len() - 1], cfg.nv_index)
                        .ok()
                        .flatten()
                        == register
                {
                    " (the last event was logged but never extended: unclean stop)"
                } else {
                    ""
                };
                (
                    false,
                    Some(format!(
                        "{} events replay to {} but the register holds {}{hint}",
                        log.len(),
                        replayed
                            .map(hex::encode)
                            .unwrap_or_else(|| "nothing".into()),
                        register
                            .map(hex::encode)
                            .unwrap_or_else(|| "nothing (unwritten)".into()),
                    )),
                )
            }
        };
        if let Some(d) = &detail {
            tracing::error!("measurement log and TPM register disagree: {d}");
        }
        let engine = Engine {
            tpm,
            nv_auth,
            identity,
            root_ca_pem,
            measurement_uids,
            firmware_event_log: cfg.firmware_event_log.clone(),
            log_path,
            inner: Mutex::new(Inner {
                log,
                file,
                consistent,
                detail,
            }),
            tls: std::sync::RwLock::new(None),
        };
        for bin in &cfg.measure_binaries {
            // A binary not installed (a daemon left out of this build) is
            // not measured, with a warning: a verifier whose golden policy
            // requires it reports it as expected but never measured. Any
            // other read failure stops start-up.
            let digest = match sha256_file(bin) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(
                        binary = %bin.display(),
                        "measure_binaries: no such file; not measured"
                    );
                    continue;
                }
                Err(e) => return Err(io(bin)(e)),
            };
            // "/proc/self/exe" measures the running daemon under its real path.
            let name = if bin == Path::new("/proc/self/exe") {
                std::fs::read_link(bin).unwrap_or_else(|_| bin.clone())
            } else {
                bin.clone()
            };
            engine.append(Content {
                kind: Kind::Binary,
                name: name.display().to_string(),
                sha256: digest,
            })?;
        }
        Ok(engine)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-append; the state on disk and in
        // the TPM is what counts and is re-checked at the next start.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, content: Content) -> Result<Event, EngineError> {
        let mut inner = self.lock();
        let event =
            eventlog::make_event(inner.log.len() as u64, self.tpm.config().nv_index, content);
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| EngineError::Setup(format!("serializing an event: {e}")))?;
        line.push(b'\n');
        inner.file.write_all(&line).map_err(io(&self.log_path))?;
        inner.file.sync_data().map_err(io(&self.log_path))?;
        inner.log.push(event.clone());
        let digest: [u8; 32] = event.content.digest();
        if let Err(e) = self.tpm.extend(&self.nv_auth, &digest) {
            inner.consistent = false;
            inner.detail = Some(format!(
                "event {} was logged but extending the register failed: {e}",
                event.recnum
            ));
            tracing::error!("{}", inner.detail.as_deref().unwrap_or_default());
            return Err(e.into());
        }
        Ok(event)
    }

    /// Records a measurement submitted by the bus caller `uid` (only the
    /// configured uids may). Validates every field first; an invalid
    /// submission changes nothing.
    pub fn measure(
        &self,
        uid: u32,
        kind: &str,
        name: &str,
        sha256: &str,
    ) -> Result<Event, EngineError> {
        if !self.measurement_uids.contains(&uid) {
            return Err(EngineError::NotAuthorized(uid));
        }
        let content = validate_measurement(kind, name, sha256)?;
        self.append(content)
    }

    /// The identity document.
    pub fn identity(&self) -> Identity {
        let _guard = self.lock();
        Identity {
            ek_public: hex::encode(&self.identity.ek_public),
            ek_cert_pem: self.identity.ek_cert_der.as_ref().and_then(|der| {
                openssl::x509::X509::from_der(der)
                    .and_then(|c| c.to_pem())
                    .ok()
                    .and_then(|p| String::from_utf8(p).ok())
            }),
            ak_public: hex::encode(&self.identity.ak_public),
            nv_public: self
                .tpm
                .register_public()
                .map(hex::encode)
                .unwrap_or_else(|_| hex::encode(&self.identity.nv_public)),
            root_ca_pem: self.root_ca_pem.clone(),
        }
    }

    /// Credential activation for a verifier's enrollment.
    pub fn activate(&self, req: &EnrollRequest) -> Result<EnrollResponse, EngineError> {
        let blob = hex::decode(&req.credential_blob).map_err(|_| EngineError::Invalid {
            field: "credential_blob",
            value: req.credential_blob.chars().take(40).collect(),
            reason: "not hex",
        })?;
        let secret = hex::decode(&req.secret).map_err(|_| EngineError::Invalid {
            field: "secret",
            value: req.secret.chars().take(40).collect(),
            reason: "not hex",
        })?;
        let _guard = self.lock();
        let credential = self.tpm.activate_credential(&blob, &secret)?;
        Ok(EnrollResponse {
            credential: hex::encode(credential),
        })
    }

    /// A quote of the boot PCRs and a certification of the register, both
    /// over `nonce`, with the log they describe.
    pub fn quote(&self, nonce_hex: &str) -> Result<QuoteResponse, EngineError> {
        let nonce = hex::decode(nonce_hex)
            .ok()
            .filter(|n| (8..=32).contains(&n.len()))
            .ok_or(EngineError::Invalid {
                field: "nonce",
                value: nonce_hex.chars().take(80).collect(),
                reason: "must be 8 to 32 bytes of hex",
            })?;
        let inner = self.lock();
        let q = self.tpm.quote(&nonce, &BOOT_PCRS)?;
        let (attest, signature) = self.tpm.certify_register(&self.nv_auth, &nonce)?;
        let nv_public = self.tpm.register_public()?;
        let event_log = inner.log.clone();
        drop(inner);
        let firmware_event_log = self
            .firmware_event_log
            .as_deref()
            .and_then(read_firmware_event_log)
            .map(hex::encode);
        Ok(QuoteResponse {
            quote: Signed {
                attest: hex::encode(q.attest),
                signature: hex::encode(q.signature),
            },
            pcrs: q.pcrs.iter().map(|(k, v)| (*k, hex::encode(v))).collect(),
            nv_certify: Signed {
                attest: hex::encode(attest),
                signature: hex::encode(signature),
            },
            nv_public: hex::encode(nv_public),
            event_log,
            firmware_event_log,
        })
    }

    /// Log and register agreement, now.
    pub fn status(&self) -> Result<Status, EngineError> {
        let inner = self.lock();
        let register = self.tpm.read_register(&self.nv_auth)?;
        let nv_index = self.tpm.config().nv_index;
        let (consistent, detail) = if !inner.consistent {
            (false, inner.detail.clone())
        } else {
            match eventlog::replay(&inner.log, nv_index) {
                Ok(v) if v == register => (true, None),
                Ok(_) => (
                    false,
                    Some("the log no longer replays to the register".into()),
                ),
                Err(e) => (false, Some(e.to_string())),
            }
        };
        Ok(Status {
            consistent,
            detail,
            events: inner.log.len() as u64,
            register: register.map(hex::encode),
            register_name: eventlog::register_name(nv_index),
            deletion_protected: self.identity.deletion_protected,
            tls: self
                .tls
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        })
    }

    /// Records the endpoint certificate served now, for [`Engine::status`].
    pub fn set_tls(&self, info: CertInfo) {
        *self
            .tls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(info);
    }

    /// The event log.
    pub fn log(&self) -> Vec<Event> {
        self.lock().log.clone()
    }

    /// The current boot PCR values (SHA-256), hex, read through a quote-free
    /// PCR read.
    pub fn pcrs(&self) -> Result<BTreeMap<u8, String>, EngineError> {
        let _inner = self.lock();
        let mut nonce = [0u8; 20];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| EngineError::Setup(e.to_string()))?;
        let q = self.tpm.quote(&nonce, &BOOT_PCRS)?;
        Ok(q.pcrs.iter().map(|(k, v)| (*k, hex::encode(v))).collect())
    }
}

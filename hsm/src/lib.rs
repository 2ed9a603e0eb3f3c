//! PKCS#11 access for Hearth: the appliance's CA keys live in a token
//! (a YubiHSM 2 or smartcard HSM in production, SoftHSM2 in development).
//!
//! What this crate does:
//! * opens a PKCS#11 module by path (one process-wide context per module,
//!   initialized once with `OS_LOCKING_OK`), finds a token by its label and
//!   logs in as the user with a PIN read from a file ([`pin`]);
//! * generates EC P-256 / P-384 key pairs whose private half is created with
//!   `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` true and `CKA_EXTRACTABLE`
//!   false;
//! * finds keys by label or id, and signs with ECDSA *inside* the token. The
//!   message is hashed on the host (SHA-256 for P-256, SHA-384 for P-384)
//!   because SoftHSM2 2.6 only offers raw `CKM_ECDSA`; the raw `r‖s` result
//!   is returned DER-encoded (`ECDSA-Sig-Value`) as X.509 expects.
//!
//! Invariants and things this crate must never do:
//! * never create a private key that is extractable or not sensitive, and
//!   never read a private key's value;
//! * never take a PIN from argv or the environment, never log it; PIN bytes
//!   read from disk are zeroized when dropped;
//! * never replace an existing key: generating under a label that exists is
//!   an error.
//!
//! A [`Token`] holds one PKCS#11 session behind a mutex (a `Session` is
//! `Send` but not `Sync`). Every call blocks; async callers run them with
//! `spawn_blocking`.
#![forbid(unsafe_code)]

pub mod der;
pub mod pin;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use sha2::Digest;

pub use cryptoki::types::AuthPin;

/// Errors of the HSM layer. Messages name the module, token or key involved
/// and never contain a PIN.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialized.
    #[error("cannot load PKCS#11 module {path}: {source}")]
    Module {
        /// Path of the module.
        path: PathBuf,
        /// Underlying error.
        source: CkError,
    },
    /// No slot holds a token with that label.
    #[error("no token labelled {label:?} in PKCS#11 module {module}")]
    TokenNotFound {
        /// The label asked for.
        label: String,
        /// Path of the module.
        module: PathBuf,
    },
    /// The user PIN was refused by the token.
    #[error("the token {label:?} refused the PIN (wrong PIN)")]
    WrongPin {
        /// Token label.
        label: String,
    },
    /// The user PIN is locked (too many wrong tries).
    #[error("the user PIN of token {label:?} is locked")]
    PinLocked {
        /// Token label.
        label: String,
    },
    /// The PIN could not be obtained.
    #[error(transparent)]
    Pin(#[from] pin::PinError),
    /// A key with this label already exists; keys are never replaced.
    #[error("a key labelled {label:?} already exists in token {token:?}")]
    KeyExists {
        /// Key label.
        label: String,
        /// Token label.
        token: String,
    },
    /// No key with this label or id.
    #[error("no private key {what} in token {token:?}")]
    KeyNotFound {
        /// Description of what was searched (label or id).
        what: String,
        /// Token label.
        token: String,
    },
    /// A token with this label exists already; it is never initialized again.
    #[error("a token labelled {label:?} exists already in PKCS#11 module {module}; it is not initialized again")]
    TokenExists {
        /// The label asked for.
        label: String,
        /// Path of the module.
        module: PathBuf,
    },
    /// No slot of the module holds an uninitialized token.
    #[error("no free slot (uninitialized token) in PKCS#11 module {module}")]
    NoFreeSlot {
        /// Path of the module.
        module: PathBuf,
    },
    /// The token returned a public key or signature this crate cannot use.
    #[error("unexpected data from the token: {0}")]
    BadData(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {op} failed: {source}")]
    Pkcs11 {
        /// What was being done.
        op: &'static str,
        /// Underlying error.
        source: CkError,
    },
}

fn ck(op: &'static str) -> impl FnOnce(CkError) -> HsmError {
    move |source| HsmError::Pkcs11 { op, source }
}

/// The EC curves keys can be generated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1), signatures with SHA-256.
    P256,
    /// NIST P-384 (secp384r1), signatures with SHA-384.
    P384,
}

impl Curve {
    /// DER of the curve's OBJECT IDENTIFIER (the `CKA_EC_PARAMS` value).
    pub fn params_der(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }

    /// Length of an uncompressed point (`04 ‖ X ‖ Y`).
    pub fn point_len(self) -> usize {
        match self {
            Curve::P256 => 65,
            Curve::P384 => 97,
        }
    }

    /// Length of one scalar (r or s) in a raw signature.
    pub fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// Hashes a message with the hash paired with this curve.
    pub fn digest(self, msg: &[u8]) -> Vec<u8> {
        match self {
            Curve::P256 => sha2::Sha256::digest(msg).to_vec(),
            Curve::P384 => sha2::Sha384::digest(msg).to_vec(),
        }
    }

    fn from_params(der: &[u8]) -> Option<Curve> {
        [Curve::P256, Curve::P384]
            .into_iter()
            .find(|c| c.params_der() == der)
    }

    /// The name used in configuration and output (`p256`, `p384`).
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "p256",
            Curve::P384 => "p384",
        }
    }
}

impl std::str::FromStr for Curve {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "p256" | "p-256" | "secp256r1" | "prime256v1" => Ok(Curve::P256),
            "p384" | "p-384" | "secp384r1" => Ok(Curve::P384),
            _ => Err(format!("unsupported curve {s:?} (supported: p256, p384)")),
        }
    }
}

/// A key pair in the token: its private half's handle and its public point.
#[derive(Debug, Clone)]
pub struct KeyRef {
    /// `CKA_LABEL` of both halves.
    pub label: String,
    /// `CKA_ID` of both halves.
    pub id: Vec<u8>,
    /// The curve.
    pub curve: Curve,
    /// The uncompressed public point `04 ‖ X ‖ Y` (unwrapped from its OCTET STRING).
    pub public_point: Vec<u8>,
    private: ObjectHandle,
}

/// Whether a private key's value can be read from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueAccess {
    /// The token refuses to reveal it (`CKR_ATTRIBUTE_SENSITIVE`).
    Sensitive,
    /// The attribute is not available.
    Unavailable,
    /// The value could be read (must never happen for keys made here).
    Readable,
}

/// A logged-in session on one token.
pub struct Token {
    label: String,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).finish()
    }
}

/// One initialized context per module path, for the whole process: a second
/// `C_Initialize` in the same process fails, and `C_Finalize` would pull the
/// rug from under every other user.
pub(crate) fn context(module: &Path) -> Result<Pkcs11, HsmError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = map.get(module) {
        return Ok(ctx.clone());
    }
    let err = |source| HsmError::Module {
        path: module.to_path_buf(),
        source,
    };
    let ctx = Pkcs11::new(module).map_err(err)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(e)),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

impl Token {
    /// Opens the module at `module`, finds the token labelled `label` and logs
    /// in as the user with `pin`.
    pub fn open(module: &Path, label: &str, pin: &AuthPin) -> Result<Token, HsmError> {
        let ctx = context(module)?;
        let slot = find_slot(&ctx, module, label)?;
        let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if info.user_pin_locked() {
            return Err(HsmError::PinLocked {
                label: label.to_owned(),
            });
        }
        let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(HsmError::WrongPin {
                    label: label.to_owned(),
                })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(HsmError::PinLocked {
                    label: label.to_owned(),
                })
            }
            Err(e) => return Err(ck("C_Login")(e)),
        }
        tracing::debug!(token = label, "logged in to PKCS#11 token");
        Ok(Token {
            label: label.to_owned(),
            session: Mutex::new(session),
        })
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Generates a new EC key pair labelled `label`. The private key is a
    /// token object, private, sensitive and not extractable. Fails with
    /// [`HsmError::KeyExists`] when the label is taken.
    pub fn generate_ec_key(&self, label: &str, curve: Curve) -> Result<KeyRef, HsmError> {
        let session = self.session();
        if !find_handles(&session, ObjectClass::PRIVATE_KEY, label_attr(label))?.is_empty()
            || !find_handles(&session, ObjectClass::PUBLIC_KEY, label_attr(label))?.is_empty()
        {
            return Err(HsmError::KeyExists {
                label: label.to_owned(),
                token: self.label.clone(),
            });
        }
        let id = session
            .generate_random_vec(16)
            .map_err(ck("C_GenerateRandom"))?;
        let public = [
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(curve.params_der().to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private = [
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let (pub_h, priv_h) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(ck("C_GenerateKeyPair"))?;
        let public_point = read_point(&session, pub_h, curve)?;
        tracing::info!(token = %self.label, key = label, curve = curve.name(), "generated key pair in token");
        Ok(KeyRef {
            label: label.to_owned(),
            id,
            curve,
            public_point,
            private: priv_h,
        })
    }

    /// Finds the key pair labelled `label`.
    pub fn find_key(&self, label: &str) -> Result<Option<KeyRef>, HsmError> {
        self.find_by(label_attr(label))
    }

    /// Finds the key pair with `CKA_ID` `id`.
    pub fn find_key_by_id(&self, id: &[u8]) -> Result<Option<KeyRef>, HsmError> {
        self.find_by(Attribute::Id(id.to_vec()))
    }

    fn find_by(&self, attr: Attribute) -> Result<Option<KeyRef>, HsmError> {
        let session = self.session();
        let privs = find_handles(&session, ObjectClass::PRIVATE_KEY, attr.clone())?;
        let Some(&private) = privs.first() else {
            return Ok(None);
        };
        if privs.len() > 1 {
            return Err(HsmError::BadData(format!(
                "{} private keys match {attr:?} in token {:?}",
                privs.len(),
                self.label
            )));
        }
        let attrs = session
            .get_attributes(
                private,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::EcParams,
                ],
            )
            .map_err(ck("C_GetAttributeValue"))?;
        let (mut label, mut id, mut params) = (Vec::new(), Vec::new(), Vec::new());
        for a in attrs {
            match a {
                Attribute::Label(v) => label = v,
                Attribute::Id(v) => id = v,
                Attribute::EcParams(v) => params = v,
                _ => {}
            }
        }
        let curve = Curve::from_params(&params)
            .ok_or_else(|| HsmError::BadData(format!("key {attr:?} is not on P-256 or P-384")))?;
        let pubs = find_handles(&session, ObjectClass::PUBLIC_KEY, Attribute::Id(id.clone()))?;
        let pub_h = *pubs.first().ok_or_else(|| {
            HsmError::BadData(format!("private key {attr:?} has no public key beside it"))
        })?;
        let public_point = read_point(&session, pub_h, curve)?;
        Ok(Some(KeyRef {
            label: String::from_utf8_lossy(&label).into_owned(),
            id,
            curve,
            public_point,
            private,
        }))
    }

    /// Signs `msg` with `key` inside the token: the message is hashed on the
    /// host with the curve's hash, the digest is signed with `CKM_ECDSA`, and
    /// the DER `ECDSA-Sig-Value` is returned.
    pub fn sign(&self, key: &KeyRef, msg: &[u8]) -> Result<Vec<u8>, HsmError> {
        let digest = key.curve.digest(msg);
        let raw = self
            .session()
            .sign(&Mechanism::Ecdsa, key.private, &digest)
            .map_err(ck("C_Sign"))?;
        if raw.len() != 2 * key.curve.scalar_len() {
            return Err(HsmError::BadData(format!(
                "ECDSA signature of {} bytes, expected {}",
                raw.len(),
                2 * key.curve.scalar_len()
            )));
        }
        Ok(der::ecdsa_sig_from_raw(&raw))
    }

    /// Asks the token for the private key's `CKA_VALUE`, to prove that it
    /// refuses. The value itself, should a broken token hand it out, is
    /// dropped immediately and never returned.
    pub fn private_value_access(&self, key: &KeyRef) -> Result<ValueAccess, HsmError> {
        let session = self.session();
        let info = session
            .get_attribute_info(key.private, &[AttributeType::Value])
            .map_err(ck("C_GetAttributeValue"))?;
        Ok(match info.first() {
            Some(AttributeInfo::Sensitive) => ValueAccess::Sensitive,
            Some(AttributeInfo::Available(_)) => ValueAccess::Readable,
            _ => ValueAccess::Unavailable,
        })
    }

    /// Reads the boolean protection attributes of the private key:
    /// (`CKA_SENSITIVE`, `CKA_EXTRACTABLE`, `CKA_PRIVATE`, `CKA_TOKEN`).
    pub fn private_key_flags(&self, key: &KeyRef) -> Result<(bool, bool, bool, bool), HsmError> {
        let session = self.session();
        let attrs = session
            .get_attributes(
                key.private,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Private,
                    AttributeType::Token,
                ],
            )
            .map_err(ck("C_GetAttributeValue"))?;
        let (mut s, mut e, mut p, mut t) = (false, true, false, false);
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => s = v,
                Attribute::Extractable(v) => e = v,
                Attribute::Private(v) => p = v,
                Attribute::Token(v) => t = v,
                _ => {}
            }
        }
        Ok((s, e, p, t))
    }
}

fn label_attr(label: &str) -> Attribute {
    Attribute::Label(label.as_bytes().to_vec())
}

/// Initializes the module's first uninitialized token as `label` through
/// PKCS#11 itself (`C_InitToken` with `so_pin`, then `C_InitPIN` as the SO
/// with `user_pin`), so that no PIN ever goes on a command line the way
/// `softhsm2-util --init-token --pin` would put it. Errors when a token with
/// that label exists already (nothing is changed) or no free slot is left.
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &AuthPin,
    user_pin: &AuthPin,
) -> Result<(), HsmError> {
    use cryptoki::session::UserType;
    let ctx = context(module)?;
    if find_slot(&ctx, module, label).is_ok() {
        return Err(HsmError::TokenExists {
            label: label.to_owned(),
            module: module.to_path_buf(),
        });
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(ck("C_GetSlotList"))?
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
        .ok_or_else(|| HsmError::NoFreeSlot {
            module: module.to_path_buf(),
        })?;
    ctx.init_token(free, so_pin, label)
        .map_err(ck("C_InitToken"))?;
    let session = ctx.open_rw_session(free).map_err(ck("C_OpenSession"))?;
    session
        .login(UserType::So, Some(so_pin))
        .map_err(ck("C_Login (SO)"))?;
    session.init_pin(user_pin).map_err(ck("C_InitPIN"))?;
    session.logout().map_err(ck("C_Logout"))?;
    Ok(())
}

fn find_slot(ctx: &Pkcs11, module: &Path, label: &str) -> Result<Slot, HsmError> {
    for slot in ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))? {
        // A slot whose token cannot be described (removed, or its storage
        // gone) is not the one asked for; it must not hide the others.
        let info = match ctx.get_token_info(slot) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(slot = slot.id(), error = %e, "skipping slot");
                continue;
            }
        };
        if info.token_initialized() && info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(HsmError::TokenNotFound {
        label: label.to_owned(),
        module: module.to_path_buf(),
    })
}

fn find_handles(
    session: &Session,
    class: ObjectClass,
    attr: Attribute,
) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC),
            attr,
        ])
        .map_err(ck("C_FindObjects"))
}

fn read_point(session: &Session, public: ObjectHandle, curve: Curve) -> Result<Vec<u8>, HsmError> {
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(ck("C_GetAttributeValue"))?;
    let point = attrs
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| HsmError::BadData("public key without CKA_EC_POINT".into()))?;
    der::unwrap_ec_point(&point, curve.point_len())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            HsmError::BadData(format!(
                "CKA_EC_POINT of {} bytes is not an uncompressed {} point",
                point.len(),
                curve.name()
            ))
        })
}

//! rcgen's view of a key in the token: [`HsmKey`] implements
//! [`rcgen::SigningKey`] by asking the token to sign (ECDSA, digest computed
//! on the host, DER signature back).

use std::sync::Arc;

use hearth_hsm::{Curve, KeyRef, Token};
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};

/// A CA key that never leaves the token.
#[derive(Clone)]
pub struct HsmKey {
    token: Arc<Token>,
    key: KeyRef,
}

impl std::fmt::Debug for HsmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKey")
            .field("token", &self.token.label())
            .field("key", &self.key.label)
            .finish()
    }
}

impl HsmKey {
    /// Wraps `key` of `token`.
    pub fn new(token: Arc<Token>, key: KeyRef) -> HsmKey {
        HsmKey { token, key }
    }

    /// The key as the token describes it.
    pub fn key(&self) -> &KeyRef {
        &self.key
    }
}

/// The rcgen algorithm (key OIDs and signature OID) for a token curve.
pub fn algorithm(curve: Curve) -> &'static SignatureAlgorithm {
    match curve {
        Curve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Curve::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    }
}

impl PublicKeyData for HsmKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key.public_point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        algorithm(self.key.curve)
    }
}

impl SigningKey for HsmKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.token.sign(&self.key, msg).map_err(|e| {
            tracing::error!(key = %self.key.label, error = %e, "token signature failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

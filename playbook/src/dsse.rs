//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>) for playbooks
//! and for the language file beside them ([`LANGUAGE_PAYLOAD_TYPE`]).
//!
//! ```json
//! {"payloadType": "application/vnd.hearth.playbook+toml",
//!  "payload": "<base64 of the TOML file>",
//!  "signatures": [{"keyid": "<sha256 of the signer certificate, hex>",
//!                  "sig": "<base64 of an ASN.1 DER ECDSA P-256 SHA-256 signature over PAE>",
//!                  "certChain": ["<base64 DER signer certificate>", "<base64 DER intermediate>", ...]}]}
//! ```
//!
//! The signature covers `PAE(payloadType, payload)`, so neither the type nor
//! the bytes can be changed without breaking it. `certChain` starts with the
//! signer's certificate; the trust anchor itself need not be included.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The payload type of a Hearth playbook.
pub const PAYLOAD_TYPE: &str = "application/vnd.hearth.playbook+toml";

/// The payload type of the interpreter's language file
/// (`catalog/language/en.toml`), signed with the playbooks.
pub const LANGUAGE_PAYLOAD_TYPE: &str = "application/vnd.hearth.language+toml";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the payload bytes.
    pub payload: String,
    /// What the payload is.
    pub payload_type: String,
    /// One or more signatures over PAE(payloadType, payload).
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

/// One signature with the signer's certificate chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Signature {
    /// SHA-256 of the signer's certificate (DER), hex.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the DER ECDSA signature.
    pub sig: String,
    /// Base64 DER certificates, the signer's first.
    #[serde(default)]
    pub cert_chain: Vec<String>,
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// A signing failure (key or certificate unusable).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key is not a PKCS#8 ECDSA P-256 key.
    #[error("signing key: {0}")]
    Key(String),
    /// A certificate could not be read.
    #[error("certificate chain: {0}")]
    Chain(String),
    /// The signer failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Something that signs PAE bytes with ECDSA P-256 SHA-256 (DER) and holds
/// the certificate chain of its key: a key file for vendor builds; a key in
/// the HSM through hearth-pkid for the appliance's own signers.
pub trait Signer {
    /// The DER ECDSA signature of `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError>;
    /// DER certificates, the signer's first.
    fn chain(&self) -> &[Vec<u8>];
}

/// A signer whose key is a PKCS#8 PEM file.
pub struct KeyFileSigner {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    chain: Vec<Vec<u8>>,
}

impl KeyFileSigner {
    /// Loads a PKCS#8 PEM (or DER) P-256 key and a PEM file of certificates
    /// (the signer's first).
    pub fn new(key_pem: &[u8], chain_pem: &[u8]) -> Result<Self, SignError> {
        let der = if key_pem.starts_with(b"-----") {
            rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem)
                .map_err(|e| SignError::Key(format!("{e:?}")))?
                .secret_pkcs8_der()
                .to_vec()
        } else {
            key_pem.to_vec()
        };
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
            .map_err(|e| SignError::Key(e.to_string()))?;
        let chain = read_certs(chain_pem).map_err(SignError::Chain)?;
        if chain.is_empty() {
            return Err(SignError::Chain("no certificate found".into()));
        }
        Ok(KeyFileSigner { key, rng, chain })
    }
}

impl Signer for KeyFileSigner {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        self.key
            .sign(&self.rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| SignError::Sign(e.to_string()))
    }
    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

/// A signature made elsewhere (by the key in the HSM, through hearth-pkid's
/// `SignPlaybook`) over exactly the PAE that [`sign`] will ask for. It is
/// checked against the leaf certificate's key before it is used.
pub struct Presigned {
    msg: Vec<u8>,
    sig: Vec<u8>,
    chain: Vec<Vec<u8>>,
}

impl Presigned {
    /// `msg` is the PAE that was signed, `sig` the DER signature and
    /// `chain_pem` the signer's chain (its certificate first).
    pub fn new(msg: Vec<u8>, sig: Vec<u8>, chain_pem: &[u8]) -> Result<Self, SignError> {
        let chain = read_certs(chain_pem).map_err(SignError::Chain)?;
        let leaf = chain
            .first()
            .ok_or_else(|| SignError::Chain("no certificate found".into()))?;
        let der = CertificateDer::from(leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| SignError::Chain(format!("signer certificate: {e}")))?;
        ee.verify_signature(webpki::ring::ECDSA_P256_SHA256, &msg, &sig)
            .map_err(|e| {
                SignError::Sign(format!(
                    "the returned signature does not verify with the signer certificate ({e})"
                ))
            })?;
        Ok(Presigned { msg, sig, chain })
    }
}

impl Signer for Presigned {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        if msg != self.msg.as_slice() {
            return Err(SignError::Sign(
                "asked to sign other bytes than were signed".into(),
            ));
        }
        Ok(self.sig.clone())
    }
    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

/// Reads certificates from PEM (one or more blocks) or a single DER.
pub fn read_certs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        CertificateDer::pem_slice_iter(bytes)
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("{e:?}")))
            .collect()
    } else if bytes.is_empty() {
        Ok(Vec::new())
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Signs `payload` into an envelope.
pub fn sign(
    payload: &[u8],
    payload_type: &str,
    signer: &dyn Signer,
) -> Result<Envelope, SignError> {
    let sig = signer.sign(&pae(payload_type, payload))?;
    let chain = signer.chain();
    Ok(Envelope {
        payload: B64.encode(payload),
        payload_type: payload_type.into(),
        signatures: vec![Signature {
            keyid: chain.first().map(|c| sha256_hex(c)).unwrap_or_default(),
            sig: B64.encode(sig),
            cert_chain: chain.iter().map(|c| B64.encode(c)).collect(),
        }],
    })
}

impl Envelope {
    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        B64.decode(&self.payload)
    }
}

/// Decodes base64 (standard alphabet, padded).
pub(crate) fn b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The example from the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signature_made_elsewhere_is_used_only_if_it_verifies() {
        use crate::keygen::{cert_pem, Authority, SignerOptions};
        let root = Authority::new_root("r", 1).unwrap();
        let s = root
            .issue_signer(&SignerOptions::valid_for("s", 1))
            .unwrap();
        let chain = cert_pem(&s.cert_der);
        let key = KeyFileSigner::new(s.key_pem.as_bytes(), chain.as_bytes()).unwrap();
        let msg = pae(PAYLOAD_TYPE, b"id = 1");
        let sig = key.sign(&msg).unwrap();
        let p = Presigned::new(msg.clone(), sig.clone(), chain.as_bytes()).unwrap();
        let env = sign(b"id = 1", PAYLOAD_TYPE, &p).unwrap();
        assert_eq!(env.payload_bytes().unwrap(), b"id = 1");
        // Other bytes than were signed: refused.
        assert!(sign(b"id = 2", PAYLOAD_TYPE, &p).is_err());
        // A signature over something else: refused at once.
        let other = key.sign(b"other").unwrap();
        assert!(Presigned::new(msg, other, chain.as_bytes()).is_err());
    }
}

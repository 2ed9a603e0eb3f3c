//! Verifier-side cryptography in software (OpenSSL, no TPM): ECDSA checks of
//! AK signatures, TPM2_MakeCredential against an RSA EK, EK certificate
//! checks.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public as PkPublic};
use openssl::rsa::{Padding, Rsa};
use openssl::sha::sha256;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::symm::{encrypt, Cipher};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509StoreContext, X509};

use crate::wire::{self, object_attr as oa, EcdsaSignature, PublicKey};

/// A cryptographic check that failed, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key is not what this check accepts.
    #[error("{0}")]
    BadKey(String),
    /// OpenSSL failed.
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    /// The EK certificate does not check out.
    #[error("EK certificate: {0}")]
    EkCert(String),
}

/// The ECDSA P-256 verifying key of an AK's TPMT_PUBLIC, after checking that
/// it is a restricted, TPM-bound signing key named with SHA-256.
pub fn ak_key(ak: &wire::Public) -> Result<EcKey<PkPublic>, CryptoError> {
    let need =
        oa::FIXED_TPM | oa::FIXED_PARENT | oa::SENSITIVE_DATA_ORIGIN | oa::RESTRICTED | oa::SIGN;
    if ak.attributes & need != need || ak.attributes & oa::DECRYPT != 0 {
        return Err(CryptoError::BadKey(format!(
            "AK attributes {:#x} are not those of a restricted, TPM-bound signing key",
            ak.attributes
        )));
    }
    if ak.name_alg != wire::ALG_SHA256 {
        return Err(CryptoError::BadKey(format!(
            "AK name algorithm {:#x} is not SHA-256",
            ak.name_alg
        )));
    }
    match &ak.key {
        PublicKey::Ecc { curve, x, y, .. } if *curve == wire::ECC_NIST_P256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            let x = BigNum::from_slice(x)?;
            let y = BigNum::from_slice(y)?;
            let key = EcKey::from_public_key_affine_coordinates(&group, &x, &y)?;
            key.check_key()?;
            Ok(key)
        }
        _ => Err(CryptoError::BadKey(
            "AK is not an ECC NIST P-256 key".into(),
        )),
    }
}

/// The AK public key as an uncompressed SEC1 point (for printing and pinning).
pub fn ec_point_bytes(key: &EcKey<PkPublic>) -> Result<Vec<u8>, CryptoError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = BigNumContext::new()?;
    Ok(key.public_key().to_bytes(
        &group,
        openssl::ec::PointConversionForm::UNCOMPRESSED,
        &mut ctx,
    )?)
}

/// Checks an ECDSA/SHA-256 TPM signature over `message`.
pub fn verify_ecdsa(key: &EcKey<PkPublic>, message: &[u8], sig: &EcdsaSignature) -> bool {
    if sig.hash != wire::ALG_SHA256 {
        return false;
    }
    let digest = sha256(message);
    let (Ok(r), Ok(s)) = (BigNum::from_slice(&sig.r), BigNum::from_slice(&sig.s)) else {
        return false;
    };
    match EcdsaSig::from_private_components(r, s) {
        Ok(sig) => sig.verify(&digest, key).unwrap_or(false),
        Err(_) => false,
    }
}

/// The RSA key of an EK's TPMT_PUBLIC, after checking it is a restricted
/// decryption key with AES-128 as its symmetric algorithm (the TCG default
/// template shape MakeCredential relies on).
pub fn ek_rsa(ek: &wire::Public) -> Result<Rsa<PkPublic>, CryptoError> {
    let need = oa::FIXED_TPM | oa::FIXED_PARENT | oa::RESTRICTED | oa::DECRYPT;
    if ek.attributes & need != need || ek.name_alg != wire::ALG_SHA256 {
        return Err(CryptoError::BadKey(format!(
            "EK attributes {:#x} / name algorithm {:#x} are not those of a TCG EK",
            ek.attributes, ek.name_alg
        )));
    }
    match &ek.key {
        PublicKey::Rsa {
            modulus,
            exponent,
            symmetric,
            ..
        } => {
            if *symmetric != (0x0006, 128, 0x0043) {
                return Err(CryptoError::BadKey(format!(
                    "EK symmetric algorithm {symmetric:?} is not AES-128-CFB"
                )));
            }
            let e = if *exponent == 0 { 65537 } else { *exponent };
            Ok(Rsa::from_public_components(
                BigNum::from_slice(modulus)?,
                BigNum::from_u32(e)?,
            )?)
        }
        PublicKey::Ecc { .. } => Err(CryptoError::BadKey(
            "ECC endorsement keys are not supported for credential activation (use the RSA EK)"
                .into(),
        )),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
    for p in parts {
        signer.update(p)?;
    }
    Ok(signer.sign_to_vec()?)
}

/// KDFa (TPM 2.0 Part 1, 11.4.10.2) with HMAC-SHA-256.
pub fn kdfa(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Vec<u8>, CryptoError> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        out.extend(hmac_sha256(
            key,
            &[
                &counter.to_be_bytes(),
                label.as_bytes(),
                &[0],
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )?);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// TPM2_MakeCredential in software: protects `credential` so that only the
/// TPM holding the EK, with the object named `ak_name` loaded, can recover it.
/// Returns (TPM2B_ID_OBJECT contents, TPM2B_ENCRYPTED_SECRET contents).
pub fn make_credential(
    ek: &wire::Public,
    ak_name: &[u8],
    credential: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let rsa = ek_rsa(ek)?;
    let mut seed = [0u8; 32];
    openssl::rand::rand_bytes(&mut seed)?;
    let pkey = PKey::from_rsa(rsa)?;
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&pkey)?;
    ctx.encrypt_init()?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
    ctx.set_rsa_oaep_md(openssl::md::Md::sha256())?;
    ctx.set_rsa_mgf1_md(openssl::md::Md::sha256())?;
    ctx.set_rsa_oaep_label(b"IDENTITY\0")?;
    let mut secret = Vec::new();
    ctx.encrypt_to_vec(&seed, &mut secret)?;

    let sym_key = kdfa(&seed, "STORAGE", ak_name, &[], 128)?;
    let mut plain = (credential.len() as u16).to_be_bytes().to_vec();
    plain.extend_from_slice(credential);
    let enc_identity = encrypt(Cipher::aes_128_cfb128(), &sym_key, Some(&[0u8; 16]), &plain)?;
    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256)?;
    let outer_hmac = hmac_sha256(&hmac_key, &[&enc_identity, ak_name])?;
    let mut blob = (outer_hmac.len() as u16).to_be_bytes().to_vec();
    blob.extend_from_slice(&outer_hmac);
    blob.extend_from_slice(&enc_identity);
    Ok((blob, secret))
}

/// Parses one certificate, PEM or DER.
pub fn parse_cert(data: &[u8]) -> Result<X509, CryptoError> {
    if data.starts_with(b"-----") {
        Ok(X509::from_pem(data)?)
    } else {
        Ok(X509::from_der(data)?)
    }
}

/// SHA-256 fingerprint of a certificate's DER, lowercase hex with colons.
pub fn fingerprint(cert: &X509) -> Result<String, CryptoError> {
    let d = cert.digest(MessageDigest::sha256())?;
    Ok(d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Normalizes a fingerprint given by a person (any case, with or without colons).
pub fn normalize_fingerprint(s: &str) -> String {
    let hexdigits: String = s
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    hexdigits
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Checks that the EK certificate certifies this EK's public key, and, when
/// a vendor CA bundle (PEM) is given, that it chains to one of its CAs.
pub fn check_ek_cert(
    cert: &X509,
    ek: &wire::Public,
    vendor_bundle_pem: Option<&[u8]>,
) -> Result<(), CryptoError> {
    let ek_rsa = ek_rsa(ek)?;
    let cert_key = cert.public_key()?;
    let cert_rsa = cert_key
        .rsa()
        .map_err(|_| CryptoError::EkCert("the certificate's key is not RSA".into()))?;
    if cert_rsa.n() != ek_rsa.n() || cert_rsa.e() != ek_rsa.e() {
        return Err(CryptoError::EkCert(
            "the certificate is for another key than the TPM's EK".into(),
        ));
    }
    let Some(bundle) = vendor_bundle_pem else {
        return Ok(());
    };
    let cas = X509::stack_from_pem(bundle)?;
    if cas.is_empty() {
        return Err(CryptoError::EkCert(
            "the vendor CA bundle holds no certificate".into(),
        ));
    }
    let mut store = X509StoreBuilder::new()?;
    for ca in cas {
        store.add_cert(ca)?;
    }
    store.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
    let store = store.build();
    let chain = Stack::new()?;
    let mut ctx = X509StoreContext::new()?;
    let (ok, why) = ctx.init(&store, cert, &chain, |c| {
        let ok = c.verify_cert()?;
        Ok((ok, c.error().error_string().to_string()))
    })?;
    if ok {
        Ok(())
    } else {
        Err(CryptoError::EkCert(format!(
            "does not chain to the vendor CA bundle: {why}"
        )))
    }
}

/// Builds an EC point check helper used by tests: the point's bytes parse back.
pub fn point_from_bytes(bytes: &[u8]) -> Result<EcKey<PkPublic>, CryptoError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut ctx = BigNumContext::new()?;
    let point = EcPoint::from_bytes(&group, bytes, &mut ctx)?;
    Ok(EcKey::from_public_key(&group, &point)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdfa_output_has_requested_length_and_depends_on_label() {
        let a = kdfa(b"seed", "STORAGE", b"name", &[], 128).unwrap();
        let b = kdfa(b"seed", "INTEGRITY", &[], &[], 256).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(b.len(), 32);
        assert_ne!(a[..], b[..16]);
        let long = kdfa(b"seed", "X", &[], &[], 512).unwrap();
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn fingerprints_normalize() {
        assert_eq!(normalize_fingerprint("ab:cd ef"), "AB:CD:EF");
        assert_eq!(normalize_fingerprint("ABCDEF"), "AB:CD:EF");
    }
}

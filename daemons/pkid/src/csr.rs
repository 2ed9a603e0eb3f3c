//! Certificate signing requests: size limit, PEM/DER parsing, signature
//! check, key-type policy and the names asked for. The caller then checks the
//! names against the CA's constraints; nothing here signs anything.

use std::net::IpAddr;

use hearth_common::types::DnsName;
use rcgen::{PublicKeyData, SignatureAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::PkiError;

/// A name a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SanName {
    /// A DNS name.
    Dns(DnsName),
    /// An IP address.
    Ip(IpAddr),
}

impl SanName {
    /// Parses a name given by a caller: an IP address, or else a DNS name.
    pub fn parse(field: &str, s: &str) -> Result<SanName, PkiError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(SanName::Ip(ip));
        }
        if s.contains('_') {
            return Err(PkiError::Invalid(format!(
                "invalid {field} {s:?}: '_' is not allowed in certificate names"
            )));
        }
        let dns = DnsName::parse_field(field, s)?;
        // "192.0.2.1." is no address, but as a DNS name (trailing dot
        // dropped) it would print as one, and read back as an IP address
        // when the certificate is later named for ShowCertificate or
        // RevokeCertificate.
        if dns.as_str().parse::<IpAddr>().is_ok() {
            return Err(PkiError::Invalid(format!(
                "invalid {field} {s:?}: a DNS name cannot read as an IP address"
            )));
        }
        Ok(SanName::Dns(dns))
    }

    /// The rcgen SAN.
    pub fn to_san(&self) -> Result<rcgen::SanType, PkiError> {
        Ok(match self {
            SanName::Dns(d) => rcgen::SanType::DnsName(
                d.as_str()
                    .try_into()
                    .map_err(|e| PkiError::Invalid(format!("name {d}: {e}")))?,
            ),
            SanName::Ip(ip) => rcgen::SanType::IpAddress(*ip),
        })
    }
}

impl std::fmt::Display for SanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SanName::Dns(d) => d.fmt(f),
            SanName::Ip(ip) => ip.fmt(f),
        }
    }
}

/// The subject public key of a CSR, in a form rcgen can put in a certificate.
#[derive(Debug, Clone)]
pub struct CsrKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
    /// Human name of the key type (`ec-p256`, `ec-p384`, `rsa-3072`, `ed25519`).
    pub kind: String,
    /// True for RSA keys (which also get keyEncipherment).
    pub is_rsa: bool,
}

impl PublicKeyData for CsrKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// A checked request: its key and the names it asks for (at least one).
#[derive(Debug, Clone)]
pub struct CsrRequest {
    /// The requester's public key.
    pub key: CsrKey,
    /// The names asked for: the SANs, or the subject CN when there are none.
    pub names: Vec<SanName>,
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// Parses and checks a PEM CSR of at most `max_bytes` bytes.
pub fn parse(pem_text: &str, max_bytes: usize) -> Result<CsrRequest, PkiError> {
    let bad = |m: String| PkiError::Invalid(format!("csr: {m}"));
    if pem_text.len() > max_bytes {
        return Err(bad(format!(
            "{} bytes, larger than the limit of {max_bytes} bytes",
            pem_text.len()
        )));
    }
    let block = pem::parse(pem_text).map_err(|e| bad(format!("not a PEM block: {e}")))?;
    if !matches!(
        block.tag(),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
    ) {
        return Err(bad(format!(
            "PEM block is {:?}, expected \"CERTIFICATE REQUEST\"",
            block.tag()
        )));
    }
    let der = block.contents();
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| bad(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    let key_oid = spki.algorithm.algorithm.to_id_string();
    let raw = spki.subject_public_key.data.to_vec();
    let key = match key_oid.as_str() {
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (alg, kind, len): (&'static SignatureAlgorithm, _, _) = match curve.as_str() {
                OID_P256 => (&rcgen::PKCS_ECDSA_P256_SHA256, "ec-p256", 65),
                OID_P384 => (&rcgen::PKCS_ECDSA_P384_SHA384, "ec-p384", 97),
                other => {
                    return Err(bad(format!(
                        "unsupported key type: EC curve {other} (allowed: P-256, P-384, RSA 2048-4096, Ed25519)"
                    )))
                }
            };
            if raw.len() != len || raw[0] != 0x04 {
                return Err(bad(format!(
                    "{kind} public key is not an uncompressed point"
                )));
            }
            CsrKey {
                raw,
                alg,
                kind: kind.into(),
                is_rsa: false,
            }
        }
        OID_RSA => {
            let bits = rsa_bits(&raw).ok_or_else(|| bad("malformed RSA public key".into()))?;
            if !(2048..=4096).contains(&bits) {
                return Err(bad(format!(
                    "unsupported key type: RSA {bits} bits (allowed: 2048 to 4096)"
                )));
            }
            CsrKey {
                raw,
                alg: &rcgen::PKCS_RSA_SHA256,
                kind: format!("rsa-{bits}"),
                is_rsa: true,
            }
        }
        OID_ED25519 => {
            if raw.len() != 32 {
                return Err(bad("malformed Ed25519 public key".into()));
            }
            CsrKey {
                raw,
                alg: &rcgen::PKCS_ED25519,
                kind: "ed25519".into(),
                is_rsa: false,
            }
        }
        other => {
            return Err(bad(format!(
                "unsupported key type {other} (allowed: EC P-256, P-384, RSA 2048-4096, Ed25519)"
            )))
        }
    };
    verify_signature(&csr, &key)?;

    let mut names = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for gn in &san.general_names {
                    names.push(match gn {
                        GeneralName::DNSName(d) => SanName::parse("csr SAN", d)?,
                        GeneralName::IPAddress(b) => {
                            SanName::Ip(ip_from_bytes(b).ok_or_else(|| {
                                bad(format!("SAN IP address of {} bytes", b.len()))
                            })?)
                        }
                        other => {
                            return Err(bad(format!(
                                "SAN {other:?} is not supported (only DNS names and IP addresses)"
                            )))
                        }
                    });
                }
            }
        }
    }
    if names.is_empty() {
        let cn = info
            .subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or_else(|| bad("no subjectAltName and no subject CN: no name to certify".into()))?;
        names.push(SanName::parse("csr subject CN", cn)?);
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if names.len() > 32 {
        return Err(bad(format!("{} names; at most 32", names.len())));
    }
    Ok(CsrRequest { key, names })
}

fn verify_signature(csr: &X509CertificationRequest<'_>, key: &CsrKey) -> Result<(), PkiError> {
    use ring::signature as s;
    let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
    let alg: &dyn s::VerificationAlgorithm = match (sig_oid.as_str(), key.kind.as_str()) {
        ("1.2.840.10045.4.3.2", "ec-p256") => &s::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", "ec-p256") => &s::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", "ec-p384") => &s::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", "ec-p384") => &s::ECDSA_P384_SHA384_ASN1,
        ("1.2.840.113549.1.1.11", _) if key.is_rsa => &s::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", _) if key.is_rsa => &s::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", _) if key.is_rsa => &s::RSA_PKCS1_2048_8192_SHA512,
        (OID_ED25519, "ed25519") => &s::ED25519,
        (other, kind) => {
            return Err(PkiError::Invalid(format!(
                "csr: unsupported signature algorithm {other} for a {kind} key"
            )))
        }
    };
    s::UnparsedPublicKey::new(alg, &key.raw)
        .verify(
            csr.certification_request_info.raw,
            &csr.signature_value.data,
        )
        .map_err(|_| PkiError::Invalid("csr: the request's signature does not verify".into()))
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// Bit length of the modulus of a DER `RSAPublicKey`.
fn rsa_bits(der: &[u8]) -> Option<usize> {
    use x509_parser::public_key::RSAPublicKey;
    let (_, k) = RSAPublicKey::from_der(der).ok()?;
    let m = k.modulus;
    let first = m.iter().position(|&b| b != 0)?;
    let m = &m[first..];
    Some(m.len() * 8 - m[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn csr_for(names: &[&str]) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_dns_name_that_reads_as_an_ip_address_is_refused() {
        // Found by the csr fuzz target: a CSR's DNS SAN "192.168.18.102."
        // became the DNS name "192.168.18.102", which prints as, and reads
        // back as, an IP address.
        for s in ["192.168.18.102.", "::1."] {
            assert!(SanName::parse("name", s).is_err(), "{s}");
        }
        let err = parse(&csr_for(&["nas.home.arpa", "192.168.18.102."]), 16384).unwrap_err();
        assert!(err.to_string().contains("IP address"), "{err}");
        // Addresses as such, and ordinary names with a trailing dot, stay.
        let ok = parse(&csr_for(&["nas.home.arpa.", "192.168.18.102"]), 16384).unwrap();
        assert_eq!(
            ok.names,
            vec![
                SanName::parse("name", "nas.home.arpa").unwrap(),
                SanName::Ip("192.168.18.102".parse().unwrap()),
            ]
        );
    }
}

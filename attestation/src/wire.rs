//! Pure parsers for the few TPM 2.0 wire structures a verifier needs
//! (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC, TPMS_NV_PUBLIC), and TPM names.
//!
//! No TPM and no tss-esapi here: the verifier reads exactly the bytes the
//! TPM signed, big-endian as in TPM 2.0 Part 2.

use openssl::sha::sha256;

/// A malformed or unexpected TPM structure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ended early.
    #[error("{0}: truncated")]
    Truncated(&'static str),
    /// A value is not the one this verifier accepts.
    #[error("{what}: unexpected value {value:#x}")]
    Unexpected {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// Bytes were left over after the structure.
    #[error("{0}: trailing bytes")]
    Trailing(&'static str),
}

/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;
/// TPM_ALG_RSA.
pub const ALG_RSA: u16 = 0x0001;
/// TPM_ALG_ECC.
pub const ALG_ECC: u16 = 0x0023;
/// TPM_ALG_ECDSA.
pub const ALG_ECDSA: u16 = 0x0018;
/// TPM_ALG_NULL.
pub const ALG_NULL: u16 = 0x0010;
/// TPM_ECC_NIST_P256.
pub const ECC_NIST_P256: u16 = 0x0003;
/// TPM_GENERATED_VALUE, the magic of every TPMS_ATTEST.
pub const GENERATED_VALUE: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ST_ATTEST_NV.
pub const ST_ATTEST_NV: u16 = 0x8014;

/// TPMA_OBJECT bits a verifier checks on an attestation key.
pub mod object_attr {
    /// fixedTPM
    pub const FIXED_TPM: u32 = 1 << 1;
    /// fixedParent
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// sensitiveDataOrigin
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// restricted
    pub const RESTRICTED: u32 = 1 << 16;
    /// decrypt
    pub const DECRYPT: u32 = 1 << 17;
    /// sign
    pub const SIGN: u32 = 1 << 18;
}

/// TPMA_NV bits.
pub mod nv_attr {
    /// TPMA_NV_PPWRITE
    pub const PPWRITE: u32 = 1 << 0;
    /// TPMA_NV_OWNERWRITE
    pub const OWNERWRITE: u32 = 1 << 1;
    /// TPMA_NV_AUTHWRITE
    pub const AUTHWRITE: u32 = 1 << 2;
    /// TPMA_NV_POLICYWRITE
    pub const POLICYWRITE: u32 = 1 << 3;
    /// Mask of the TPM_NT field.
    pub const TPM_NT_MASK: u32 = 0xF << 4;
    /// TPM_NT_EXTEND in place.
    pub const TPM_NT_EXTEND: u32 = 4 << 4;
    /// TPMA_NV_POLICY_DELETE
    pub const POLICY_DELETE: u32 = 1 << 10;
    /// TPMA_NV_WRITE_STCLEAR
    pub const WRITE_STCLEAR: u32 = 1 << 14;
    /// TPMA_NV_GLOBALLOCK
    pub const GLOBALLOCK: u32 = 1 << 15;
    /// TPMA_NV_CLEAR_STCLEAR
    pub const CLEAR_STCLEAR: u32 = 1 << 27;
    /// TPMA_NV_WRITTEN
    pub const WRITTEN: u32 = 1 << 29;
    /// TPMA_NV_PLATFORMCREATE
    pub const PLATFORMCREATE: u32 = 1 << 30;
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn tpm2b(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u16()? as usize;
        Ok(self.bytes(n)?.to_vec())
    }
    fn end(&self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.what))
        }
    }
}

fn unexpected(what: &'static str, value: impl Into<u64>) -> WireError {
    WireError::Unexpected {
        what,
        value: value.into(),
    }
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    /// TPM resets (reboots) so far.
    pub reset_count: u32,
    /// TPM restarts (resume from suspend) since the last reset.
    pub restart_count: u32,
    /// Whether the clock value is safe.
    pub safe: bool,
}

/// What a TPMS_ATTEST attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attested {
    /// TPMS_QUOTE_INFO.
    Quote {
        /// (hash algorithm, bitmap of selected PCRs) per bank.
        selection: Vec<(u16, Vec<u8>)>,
        /// Digest of the selected PCR values.
        pcr_digest: Vec<u8>,
    },
    /// TPMS_NV_CERTIFY_INFO.
    Nv {
        /// Name of the certified index.
        index_name: Vec<u8>,
        /// Offset of the certified bytes.
        offset: u16,
        /// The certified bytes.
        contents: Vec<u8>,
    },
}

/// TPMS_ATTEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// Name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// The caller's nonce.
    pub extra_data: Vec<u8>,
    /// The TPM's clock when it signed.
    pub clock_info: ClockInfo,
    /// Firmware version.
    pub firmware_version: u64,
    /// The attested content.
    pub attested: Attested,
}

impl Attest {
    /// Parses a marshalled TPMS_ATTEST (the exact signed bytes).
    pub fn parse(buf: &[u8]) -> Result<Attest, WireError> {
        let mut r = Reader::new(buf, "TPMS_ATTEST");
        let magic = r.u32()?;
        if magic != GENERATED_VALUE {
            return Err(unexpected("TPMS_ATTEST.magic", magic));
        }
        let typ = r.u16()?;
        let qualified_signer = r.tpm2b()?;
        let extra_data = r.tpm2b()?;
        let clock_info = ClockInfo {
            clock: r.u64()?,
            reset_count: r.u32()?,
            restart_count: r.u32()?,
            safe: r.u8()? != 0,
        };
        let firmware_version = r.u64()?;
        let attested = match typ {
            ST_ATTEST_QUOTE => {
                let count = r.u32()?;
                if count > 16 {
                    return Err(unexpected("TPML_PCR_SELECTION.count", count));
                }
                let mut selection = Vec::new();
                for _ in 0..count {
                    let hash = r.u16()?;
                    let size = r.u8()? as usize;
                    selection.push((hash, r.bytes(size)?.to_vec()));
                }
                Attested::Quote {
                    selection,
                    pcr_digest: r.tpm2b()?,
                }
            }
            ST_ATTEST_NV => Attested::Nv {
                index_name: r.tpm2b()?,
                offset: r.u16()?,
                contents: r.tpm2b()?,
            },
            other => return Err(unexpected("TPMS_ATTEST.type", other)),
        };
        r.end()?;
        Ok(Attest {
            qualified_signer,
            extra_data,
            clock_info,
            firmware_version,
            attested,
        })
    }
}

/// An ECDSA TPMT_SIGNATURE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdsaSignature {
    /// Hash algorithm the TPM used.
    pub hash: u16,
    /// r, big-endian.
    pub r: Vec<u8>,
    /// s, big-endian.
    pub s: Vec<u8>,
}

impl EcdsaSignature {
    /// Parses a marshalled TPMT_SIGNATURE; only ECDSA is accepted.
    pub fn parse(buf: &[u8]) -> Result<EcdsaSignature, WireError> {
        let mut r = Reader::new(buf, "TPMT_SIGNATURE");
        let alg = r.u16()?;
        if alg != ALG_ECDSA {
            return Err(unexpected("TPMT_SIGNATURE.sigAlg", alg));
        }
        let hash = r.u16()?;
        let sig_r = r.tpm2b()?;
        let sig_s = r.tpm2b()?;
        r.end()?;
        Ok(EcdsaSignature {
            hash,
            r: sig_r,
            s: sig_s,
        })
    }
}

/// The key inside a TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent (0 means 65537).
    Rsa {
        /// Modulus.
        modulus: Vec<u8>,
        /// Exponent as stored (0 = default 65537).
        exponent: u32,
        /// Key size in bits.
        bits: u16,
        /// Symmetric algorithm of a storage key (TPM_ALG_NULL if none).
        symmetric: (u16, u16, u16),
    },
    /// ECC point.
    Ecc {
        /// TPM_ECC_CURVE.
        curve: u16,
        /// x, big-endian.
        x: Vec<u8>,
        /// y, big-endian.
        y: Vec<u8>,
        /// Signing scheme (algorithm, hash).
        scheme: (u16, u16),
    },
}

/// TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// nameAlg.
    pub name_alg: u16,
    /// TPMA_OBJECT.
    pub attributes: u32,
    /// authPolicy.
    pub auth_policy: Vec<u8>,
    /// The key.
    pub key: PublicKey,
}

fn sym_def(r: &mut Reader<'_>) -> Result<(u16, u16, u16), WireError> {
    let alg = r.u16()?;
    if alg == ALG_NULL {
        return Ok((alg, 0, 0));
    }
    Ok((alg, r.u16()?, r.u16()?))
}

fn scheme(r: &mut Reader<'_>) -> Result<(u16, u16), WireError> {
    let alg = r.u16()?;
    if alg == ALG_NULL {
        return Ok((alg, 0));
    }
    Ok((alg, r.u16()?))
}

impl Public {
    /// Parses a marshalled TPMT_PUBLIC (RSA or ECC).
    pub fn parse(buf: &[u8]) -> Result<Public, WireError> {
        let mut r = Reader::new(buf, "TPMT_PUBLIC");
        let typ = r.u16()?;
        let name_alg = r.u16()?;
        let attributes = r.u32()?;
        let auth_policy = r.tpm2b()?;
        let key = match typ {
            ALG_RSA => {
                let symmetric = sym_def(&mut r)?;
                let _scheme = scheme(&mut r)?;
                let bits = r.u16()?;
                let exponent = r.u32()?;
                PublicKey::Rsa {
                    modulus: r.tpm2b()?,
                    exponent,
                    bits,
                    symmetric,
                }
            }
            ALG_ECC => {
                let _symmetric = sym_def(&mut r)?;
                let scheme = scheme(&mut r)?;
                let curve = r.u16()?;
                let _kdf = scheme_kdf(&mut r)?;
                let x = r.tpm2b()?;
                let y = r.tpm2b()?;
                PublicKey::Ecc {
                    curve,
                    x,
                    y,
                    scheme,
                }
            }
            other => return Err(unexpected("TPMT_PUBLIC.type", other)),
        };
        r.end()?;
        Ok(Public {
            name_alg,
            attributes,
            auth_policy,
            key,
        })
    }
}

fn scheme_kdf(r: &mut Reader<'_>) -> Result<(u16, u16), WireError> {
    scheme(r)
}

/// TPMS_NV_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvPublic {
    /// The index handle.
    pub index: u32,
    /// nameAlg.
    pub name_alg: u16,
    /// TPMA_NV.
    pub attributes: u32,
    /// authPolicy.
    pub auth_policy: Vec<u8>,
    /// dataSize.
    pub data_size: u16,
}

impl NvPublic {
    /// Parses a marshalled TPMS_NV_PUBLIC.
    pub fn parse(buf: &[u8]) -> Result<NvPublic, WireError> {
        let mut r = Reader::new(buf, "TPMS_NV_PUBLIC");
        let nv = NvPublic {
            index: r.u32()?,
            name_alg: r.u16()?,
            attributes: r.u32()?,
            auth_policy: r.tpm2b()?,
            data_size: r.u16()?,
        };
        r.end()?;
        Ok(nv)
    }

    /// Marshals it back (the bytes its name is computed over).
    pub fn marshal(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + self.auth_policy.len());
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(&self.name_alg.to_be_bytes());
        v.extend_from_slice(&self.attributes.to_be_bytes());
        v.extend_from_slice(&(self.auth_policy.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.auth_policy);
        v.extend_from_slice(&self.data_size.to_be_bytes());
        v
    }
}

/// The TPM name of a SHA-256-named entity: nameAlg || SHA-256(public area).
pub fn sha256_name(public_area: &[u8]) -> Vec<u8> {
    let mut n = ALG_SHA256.to_be_bytes().to_vec();
    n.extend_from_slice(&sha256(public_area));
    n
}

const TPM_CC_POLICY_COMMAND_CODE: u32 = 0x0000_016C;
const TPM_CC_NV_UNDEFINE_SPACE_SPECIAL: u32 = 0x0000_011F;
const TPM_CC_NV_CHANGE_AUTH: u32 = 0x0000_013B;

/// The policy digest after TPM2_PolicyCommandCode(`code`) from `prev`.
fn policy_command_code(prev: &[u8; 32], code: u32) -> [u8; 32] {
    let mut v = prev.to_vec();
    v.extend_from_slice(&TPM_CC_POLICY_COMMAND_CODE.to_be_bytes());
    v.extend_from_slice(&code.to_be_bytes());
    sha256(&v)
}

/// PolicyCommandCode(NV_UndefineSpaceSpecial): the authPolicy hearth-attestd
/// gave the register before decision 052. With TPMA_NV_POLICY_DELETE it lets
/// whoever holds platform authorization delete the register (on swtpm, and on
/// any box whose firmware leaves the platform hierarchy enabled, that is root).
pub fn undefine_special_policy() -> [u8; 32] {
    policy_command_code(&[0; 32], TPM_CC_NV_UNDEFINE_SPACE_SPECIAL)
}

/// An authPolicy no policy session can reach: PolicyCommandCode(
/// NV_UndefineSpaceSpecial) then PolicyCommandCode(NV_ChangeAuth). The TPM
/// refuses a second PolicyCommandCode naming another command (TPM_RC_VALUE),
/// so no session's digest ever equals it short of a SHA-256 second preimage.
/// With TPMA_NV_POLICY_DELETE the index can then never be deleted (not by
/// the owner, not by the platform, not by TPM2_Clear or TPM2_ChangePPS), and
/// its authorization value never changed (NV_ChangeAuth needs the same
/// policy). The spec's own unsatisfiable policy, an empty authPolicy, is
/// refused by tpm2-tss's ESAPI for POLICY_DELETE indices; this one is not.
pub fn unsatisfiable_policy() -> [u8; 32] {
    policy_command_code(&undefine_special_policy(), TPM_CC_NV_CHANGE_AUTH)
}

/// Encodes a PCR selection bitmap for the given PCR indices (3 bytes, 24 PCRs).
pub fn pcr_bitmap(pcrs: &[u8]) -> Vec<u8> {
    let mut map = vec![0u8; 3];
    for &p in pcrs {
        map[(p / 8) as usize] |= 1 << (p % 8);
    }
    map
}

/// Decodes a PCR selection bitmap into PCR indices, ascending.
pub fn pcrs_of_bitmap(map: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, byte) in map.iter().enumerate() {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                out.push((i * 8 + bit) as u8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_policies_are_the_policy_command_code_digests() {
        // As tpm2_policycommandcode computes them (checked against swtpm).
        assert_eq!(
            hex::encode(undefine_special_policy()),
            "1d2dc485e177ddd0a40a344913ceeb420caa093c42587d2e1b132b157ccb5db0"
        );
        assert_eq!(
            hex::encode(unsatisfiable_policy()),
            "c822213b8b5aab3d7c87c5f4cc6668a503b6d269a3eec9a91c8e47cd8f5ac790"
        );
    }

    #[test]
    fn nv_public_roundtrips_and_rejects_trailing_bytes() {
        let nv = NvPublic {
            index: 0x0140_0A71,
            name_alg: ALG_SHA256,
            attributes: nv_attr::TPM_NT_EXTEND | nv_attr::AUTHWRITE,
            auth_policy: vec![1; 32],
            data_size: 32,
        };
        let bytes = nv.marshal();
        assert_eq!(NvPublic::parse(&bytes), Ok(nv));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            NvPublic::parse(&longer),
            Err(WireError::Trailing("TPMS_NV_PUBLIC"))
        );
        assert_eq!(
            NvPublic::parse(&bytes[..5]),
            Err(WireError::Truncated("TPMS_NV_PUBLIC"))
        );
    }

    #[test]
    fn pcr_bitmap_roundtrips_boot_pcrs() {
        let pcrs = [0, 1, 2, 3, 4, 5, 6, 7, 11];
        let map = pcr_bitmap(&pcrs);
        assert_eq!(map, vec![0xff, 0x08, 0x00]);
        assert_eq!(pcrs_of_bitmap(&map), pcrs.to_vec());
    }

    #[test]
    fn attest_with_bad_magic_is_rejected() {
        let buf = [0u8; 64];
        assert!(matches!(
            Attest::parse(&buf),
            Err(WireError::Unexpected {
                what: "TPMS_ATTEST.magic",
                ..
            })
        ));
    }
}

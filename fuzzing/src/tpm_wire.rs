//! `tpm_wire`: the TPM 2.0 structures hearth-verify reads from the
//! appliance's answers (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC,
//! TPMS_NV_PUBLIC) and the checks it runs on the keys and the register.
//!
//! Input: a selector byte, then the marshalled bytes. Properties: no
//! panic; an accepted TPMS_NV_PUBLIC marshals back to exactly its bytes
//! (its name is computed over them); an accepted quote selects at most 16
//! banks.

use hearth_attestation::wire::{self, Attest, Attested, EcdsaSignature, NvPublic, Public};
use hearth_attestation::{crypto, verify};

/// The target.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(a) = Attest::parse(rest) {
                if let Attested::Quote { selection, .. } = &a.attested {
                    assert!(selection.len() <= 16);
                    for (_, map) in selection {
                        let pcrs = wire::pcrs_of_bitmap(map);
                        assert!(pcrs.len() <= map.len() * 8);
                    }
                }
            }
        }
        1 => {
            if let Ok(s) = EcdsaSignature::parse(rest) {
                assert!(s.r.len() <= u16::MAX as usize && s.s.len() <= u16::MAX as usize);
            }
        }
        2 => {
            if let Ok(p) = Public::parse(rest) {
                let name = wire::sha256_name(rest);
                assert_eq!(name.len(), 34);
                let _ = crypto::ak_key(&p);
                let _ = crypto::ek_rsa(&p);
            }
        }
        _ => {
            if let Ok(nv) = NvPublic::parse(rest) {
                assert_eq!(nv.marshal(), rest, "TPMS_NV_PUBLIC does not marshal back");
                let _ = verify::check_register_public(&nv);
                let p = verify::register_protection(&nv);
                let _ = (p.describe(), p.residual_risk());
            }
        }
    }
}

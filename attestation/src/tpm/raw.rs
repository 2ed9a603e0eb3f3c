//! The two TPM commands tss-esapi 7 does not wrap, TPM2_NV_Extend and
//! TPM2_NV_Certify, called through its raw ESAPI bindings
//! (`tss_esapi::tss2_esys`) on an ESYS context of their own.
//!
//! tss-esapi's `Context` does not expose its `ESYS_CONTEXT`, so this module
//! opens one itself (TCTI loader + Esys_Initialize) and finalizes it on drop.
//! Callers never hold a tss-esapi `Context` at the same time (swtpm's TCP
//! TCTI serves one connection at a time).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr::null_mut;

use tss_esapi::tss2_esys::{
    Esys_Finalize, Esys_Free, Esys_Initialize, Esys_NV_Certify, Esys_NV_Extend,
    Esys_TR_FromTPMPublic, Esys_TR_SetAuth, Tss2_MU_TPMT_SIGNATURE_Marshal, Tss2_TctiLdr_Finalize,
    Tss2_TctiLdr_Initialize, ESYS_CONTEXT, ESYS_TR, ESYS_TR_NONE, ESYS_TR_PASSWORD, TPM2B_ATTEST,
    TPM2B_AUTH, TPM2B_DATA, TPM2B_MAX_NV_BUFFER, TPMT_SIGNATURE, TPMT_SIG_SCHEME,
    TSS2_TCTI_CONTEXT,
};

use super::TpmError;

const TPM2_ALG_NULL: u16 = 0x0010;

fn check(op: &'static str, rc: u32) -> Result<(), TpmError> {
    if rc == 0 {
        return Ok(());
    }
    let text = describe(rc);
    Err(TpmError::Raw { op, rc, text })
}

/// A short description of a TSS2_RC: its layer and, for TPM codes, the
/// response code's format and number.
fn describe(rc: u32) -> String {
    let layer = match rc >> 16 {
        0 => "TPM",
        6 => "SAPI",
        7 => "ESAPI",
        8 => "SYS",
        9 => "MU",
        10 => "TCTI",
        11 => "resource manager",
        _ => "TSS",
    };
    let code = rc & 0xFFFF;
    if rc >> 16 != 0 {
        return format!("{layer} error {code:#x}");
    }
    if code & 0x80 != 0 {
        format!(
            "TPM format-one error {:#x} (number {})",
            code & 0x3F,
            (code >> 8) & 0xF
        )
    } else {
        format!("TPM error {code:#x}")
    }
}

/// An ESYS context opened directly on a TCTI.
pub(super) struct RawEsys {
    esys: *mut ESYS_CONTEXT,
    tcti: *mut TSS2_TCTI_CONTEXT,
}

impl RawEsys {
    /// Opens the TCTI named by `conf` and an ESYS context on it.
    pub(super) fn open(conf: &str) -> Result<RawEsys, TpmError> {
        let conf = CString::new(conf)
            .map_err(|_| TpmError::Unexpected("TCTI configuration contains a NUL byte".into()))?;
        let mut tcti: *mut TSS2_TCTI_CONTEXT = null_mut();
        // SAFETY: `conf` is a valid NUL-terminated string that outlives the
        // call; `tcti` is a valid out-pointer the loader fills on success.
        check("loading the TCTI", unsafe {
            Tss2_TctiLdr_Initialize(conf.as_ptr(), &mut tcti)
        })?;
        let mut esys: *mut ESYS_CONTEXT = null_mut();
        // SAFETY: `tcti` was initialized above; a null ABI version asks for
        // the library's own; `esys` is a valid out-pointer.
        let rc = unsafe { Esys_Initialize(&mut esys, tcti, null_mut()) };
        if let Err(e) = check("Esys_Initialize", rc) {
            // SAFETY: `tcti` came from Tss2_TctiLdr_Initialize and is not used again.
            unsafe { Tss2_TctiLdr_Finalize(&mut tcti) };
            return Err(e);
        }
        Ok(RawEsys { esys, tcti })
    }

    fn tr_from_public(&mut self, handle: u32) -> Result<ESYS_TR, TpmError> {
        let mut tr: ESYS_TR = ESYS_TR_NONE;
        // SAFETY: `self.esys` is a live context; `tr` is a valid out-pointer.
        check("Esys_TR_FromTPMPublic", unsafe {
            Esys_TR_FromTPMPublic(
                self.esys,
                handle,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                &mut tr,
            )
        })?;
        Ok(tr)
    }

    fn set_auth(&mut self, tr: ESYS_TR, auth: &[u8]) -> Result<(), TpmError> {
        // SAFETY: TPM2B_AUTH is plain old data (a size and a byte array);
        // all-zero is a valid empty value.
        let mut a: TPM2B_AUTH = unsafe { std::mem::zeroed() };
        if auth.len() > a.buffer.len() {
            return Err(TpmError::Unexpected("authorization value too long".into()));
        }
        a.size = auth.len() as u16;
        a.buffer[..auth.len()].copy_from_slice(auth);
        // SAFETY: live context, a handle it returned, and a valid TPM2B_AUTH
        // that ESYS copies.
        check("Esys_TR_SetAuth", unsafe {
            Esys_TR_SetAuth(self.esys, tr, &a)
        })
    }

    /// TPM2_NV_Extend(index, data), authorized by the index's own auth value.
    pub(super) fn nv_extend(
        &mut self,
        index: u32,
        auth: &[u8],
        data: &[u8],
    ) -> Result<(), TpmError> {
        let nv = self.tr_from_public(index)?;
        self.set_auth(nv, auth)?;
        // SAFETY: plain old data, all-zero is an empty buffer.
        let mut buf: TPM2B_MAX_NV_BUFFER = unsafe { std::mem::zeroed() };
        if data.len() > buf.buffer.len() {
            return Err(TpmError::Unexpected("extend data too long".into()));
        }
        buf.size = data.len() as u16;
        buf.buffer[..data.len()].copy_from_slice(data);
        // SAFETY: live context; `nv` is a handle from this context used as both
        // the authorization and the index; the password session uses the auth
        // set above; `buf` outlives the call.
        check("TPM2_NV_Extend", unsafe {
            Esys_NV_Extend(
                self.esys,
                nv,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                &buf,
            )
        })
    }

    /// TPM2_NV_Certify of the whole 32-byte register, signed by the key at
    /// `ak_handle` (empty auth) with its own scheme, over `nonce`.
    /// Returns (TPMS_ATTEST, TPMT_SIGNATURE), marshalled.
    pub(super) fn nv_certify(
        &mut self,
        ak_handle: u32,
        index: u32,
        auth: &[u8],
        nonce: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let ak = self.tr_from_public(ak_handle)?;
        self.set_auth(ak, &[])?;
        let nv = self.tr_from_public(index)?;
        self.set_auth(nv, auth)?;
        // SAFETY: plain old data, all-zero is an empty buffer.
        let mut qualifying: TPM2B_DATA = unsafe { std::mem::zeroed() };
        if nonce.len() > qualifying.buffer.len() {
            return Err(TpmError::Unexpected("nonce too long".into()));
        }
        qualifying.size = nonce.len() as u16;
        qualifying.buffer[..nonce.len()].copy_from_slice(nonce);
        // SAFETY: plain old data; scheme TPM_ALG_NULL means "the key's scheme"
        // and the details union is then ignored.
        let mut scheme: TPMT_SIG_SCHEME = unsafe { std::mem::zeroed() };
        scheme.scheme = TPM2_ALG_NULL;
        let mut info: *mut TPM2B_ATTEST = null_mut();
        let mut sig: *mut TPMT_SIGNATURE = null_mut();
        // SAFETY: live context and handles from it; password sessions for the
        // signing key and for the index (auth values set above); inputs
        // outlive the call; ESYS allocates the outputs, freed below.
        check("TPM2_NV_Certify", unsafe {
            Esys_NV_Certify(
                self.esys,
                ak,
                nv,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                &qualifying,
                &scheme,
                32,
                0,
                &mut info,
                &mut sig,
            )
        })?;
        let result = (|| {
            if info.is_null() || sig.is_null() {
                return Err(TpmError::Unexpected("NV_Certify returned nothing".into()));
            }
            // SAFETY: ESYS returned a valid TPM2B_ATTEST; `size` is bounded by
            // the array, checked by `get`.
            let attest = unsafe {
                let a = &*info;
                a.attestationData
                    .get(..a.size as usize)
                    .ok_or_else(|| TpmError::Unexpected("attest size out of range".into()))?
                    .to_vec()
            };
            let mut out = vec![0u8; std::mem::size_of::<TPMT_SIGNATURE>()];
            let mut offset: u64 = 0;
            // SAFETY: `sig` is a valid TPMT_SIGNATURE from ESYS; `out` is at
            // least as large as the structure, which bounds its marshalled form.
            check("marshalling the signature", unsafe {
                Tss2_MU_TPMT_SIGNATURE_Marshal(sig, out.as_mut_ptr(), out.len() as u64, &mut offset)
            })?;
            out.truncate(offset as usize);
            Ok((attest, out))
        })();
        // SAFETY: both were allocated by ESYS for this call (or are null,
        // which Esys_Free accepts) and are not used after this.
        unsafe {
            Esys_Free(info.cast());
            Esys_Free(sig.cast());
        }
        result
    }
}

impl Drop for RawEsys {
    fn drop(&mut self) {
        // SAFETY: both contexts were initialized in `open` and are finalized
        // exactly once, ESYS first since it uses the TCTI.
        unsafe {
            Esys_Finalize(&mut self.esys);
            Tss2_TctiLdr_Finalize(&mut self.tcti);
        }
    }
}

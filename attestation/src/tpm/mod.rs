//! The appliance's TPM: every tss-esapi call of Hearth lives in this module.
//!
//! Each operation opens its own ESYS context on the configured TCTI and
//! closes it at the end (swtpm's TCP TCTI serves one connection at a time,
//! and the two commands tss-esapi 7 lacks, TPM2_NV_Extend and
//! TPM2_NV_Certify, go through [`raw`] on a context of their own). So the
//! keys live at persistent handles: the EK at the TCG handle 0x81010001 and
//! the AK at a configured owner handle. Callers serialize operations (one
//! engine mutex) and run them off the async runtime (`spawn_blocking`):
//! every call here blocks.

mod raw;

use std::collections::BTreeMap;
use std::str::FromStr;

use tss_esapi::abstraction::ak::{create_ak_2, load_ak};
use tss_esapi::abstraction::ek::{create_ek_object, retrieve_ek_pubcert};
use tss_esapi::abstraction::{pcr, AsymmetricAlgorithmSelection, DefaultKey};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::constants::{CapabilityType, NvIndexType};
use tss_esapi::handles::{
    AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle,
    TpmHandle,
};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, CapabilityData, Data, Digest, EncryptedSecret, IdObject, NvPublicBuilder,
    PcrSelectionListBuilder, PcrSlot, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use crate::wire::{self, nv_attr};

/// A TPM operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TSS or the TPM refused.
    #[error("{op}: {source}")]
    Tss {
        /// The operation.
        op: &'static str,
        /// The TSS error (names the TPM response code).
        source: tss_esapi::Error,
    },
    /// A raw ESAPI call failed.
    #[error("{op}: TSS return code {rc:#x} ({text})")]
    Raw {
        /// The operation.
        op: &'static str,
        /// The TSS2_RC.
        rc: u32,
        /// Its decoded text.
        text: String,
    },
    /// The TPM's answer is not what was expected.
    #[error("{0}")]
    Unexpected(String),
}

trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, TpmError>;
}

impl<T> Op<T> for Result<T, tss_esapi::Error> {
    fn op(self, op: &'static str) -> Result<T, TpmError> {
        self.map_err(|source| TpmError::Tss { op, source })
    }
}

/// Where the TPM and its objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmConfig {
    /// TCTI: `device:/dev/tpmrm0`, or `swtpm:host=127.0.0.1,port=2321` in tests.
    pub tcti: String,
    /// Persistent handle of the EK (TCG: 0x81010001 for the RSA EK).
    pub ek_handle: u32,
    /// Persistent handle of the AK.
    pub ak_handle: u32,
    /// The measurement register, an NV index of type TPM_NT_EXTEND.
    pub nv_index: u32,
}

impl TpmConfig {
    /// The defaults, for a TCTI.
    pub fn with_tcti(tcti: &str) -> TpmConfig {
        TpmConfig {
            tcti: tcti.to_string(),
            ek_handle: 0x8101_0001,
            ak_handle: 0x8100_0A71,
            nv_index: 0x0140_0A71,
        }
    }
}

/// The identity of the TPM as provisioned.
#[derive(Debug, Clone)]
pub struct TpmIdentity {
    /// EK TPMT_PUBLIC.
    pub ek_public: Vec<u8>,
    /// EK certificate (DER) from NV 0x01c00002, if present.
    pub ek_cert_der: Option<Vec<u8>>,
    /// AK TPMT_PUBLIC.
    pub ak_public: Vec<u8>,
    /// Measurement register TPMS_NV_PUBLIC (as defined; WRITTEN may change).
    pub nv_public: Vec<u8>,
    /// Whether no TPM command can delete the register (platform-created,
    /// POLICY_DELETE, an authPolicy no session satisfies: decision 052).
    pub deletion_protected: bool,
}

/// A quote and the PCR values it signed.
#[derive(Debug, Clone)]
pub struct QuoteParts {
    /// TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// SHA-256 PCR values by index, as signed.
    pub pcrs: BTreeMap<u8, [u8; 32]>,
}

/// The appliance's TPM.
#[derive(Debug, Clone)]
pub struct Tpm {
    cfg: TpmConfig,
}

fn slot(p: u8) -> Result<PcrSlot, TpmError> {
    PcrSlot::try_from(1u32 << p).op("PCR slot")
}

impl Tpm {
    /// A handle on the TPM at this configuration (opens nothing yet).
    pub fn new(cfg: TpmConfig) -> Tpm {
        Tpm { cfg }
    }

    /// The configuration.
    pub fn config(&self) -> &TpmConfig {
        &self.cfg
    }

    fn context(&self) -> Result<Context, TpmError> {
        let conf = TctiNameConf::from_str(&self.cfg.tcti).op("TCTI configuration")?;
        Context::new(conf).op("opening the TPM")
    }

    fn persistent(ctx: &mut Context, handle: u32) -> Result<Option<ObjectHandle>, TpmError> {
        let h = PersistentTpmHandle::new(handle).op("persistent handle")?;
        if !handle_exists(ctx, handle)? {
            return Ok(None);
        }
        match ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(h))) {
            Ok(o) => Ok(Some(o)),
            Err(e) if is_handle_error(&e) => Ok(None),
            Err(e) => Err(TpmError::Tss {
                op: "looking up a persistent handle",
                source: e,
            }),
        }
    }

    fn ek(&self, ctx: &mut Context) -> Result<KeyHandle, TpmError> {
        if let Some(o) = Self::persistent(ctx, self.cfg.ek_handle)? {
            return Ok(o.into());
        }
        let ek =
            create_ek_object(ctx, AsymmetricAlgorithm::Rsa, DefaultKey).op("creating the EK")?;
        let persistent =
            Persistent::Persistent(PersistentTpmHandle::new(self.cfg.ek_handle).op("EK handle")?);
        let ph = ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.evict_control(Provision::Owner, ek.into(), persistent)
            })
            .op("persisting the EK")?;
        ctx.flush_context(ek.into())
            .op("flushing the transient EK")?;
        Ok(ph.into())
    }

    /// Makes sure the EK, the AK and the measurement register exist (creating
    /// what is missing), and returns their public parts. `nv_auth` is the
    /// register's authorization value (kept secret by the daemon).
    pub fn provision(&self, nv_auth: &[u8]) -> Result<TpmIdentity, TpmError> {
        let mut ctx = self.context()?;
        let ek = self.ek(&mut ctx)?;
        let (ek_pub, _, _) = ctx.read_public(ek).op("reading the EK")?;
        let ek_cert_der = retrieve_ek_pubcert(
            &mut ctx,
            AsymmetricAlgorithmSelection::Rsa(
                tss_esapi::interface_types::key_bits::RsaKeyBits::Rsa2048,
            ),
        )
        .ok();

        let ak = match Self::persistent(&mut ctx, self.cfg.ak_handle)? {
            Some(o) => KeyHandle::from(o),
            None => {
                let created = create_ak_2(
                    &mut ctx,
                    ek,
                    HashingAlgorithm::Sha256,
                    AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                    SignatureSchemeAlgorithm::EcDsa,
                    None,
                    DefaultKey,
                )
                .op("creating the AK")?;
                let loaded = load_ak(&mut ctx, ek, None, created.out_private, created.out_public)
                    .op("loading the AK")?;
                let persistent = Persistent::Persistent(
                    PersistentTpmHandle::new(self.cfg.ak_handle).op("AK handle")?,
                );
                let ph = ctx
                    .execute_with_session(Some(AuthSession::Password), |c| {
                        c.evict_control(Provision::Owner, loaded.into(), persistent)
                    })
                    .op("persisting the AK")?;
                ctx.flush_context(loaded.into())
                    .op("flushing the transient AK")?;
                ph.into()
            }
        };
        let (ak_pub, _, _) = ctx.read_public(ak).op("reading the AK")?;

        let nv_tpm = NvIndexTpmHandle::new(self.cfg.nv_index).op("NV index")?;
        let existing = if !handle_exists(&mut ctx, self.cfg.nv_index)? {
            None
        } else {
            match ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_tpm)))
            {
                Ok(o) => Some(NvIndexHandle::from(o)),
                Err(e) if is_handle_error(&e) => None,
                Err(e) => {
                    return Err(TpmError::Tss {
                        op: "looking up the measurement register",
                        source: e,
                    })
                }
            }
        };
        let nv_handle = match existing {
            Some(h) => h,
            None => define_register(&mut ctx, nv_tpm, nv_auth)?,
        };
        let (nv_pub, _name) = ctx
            .execute_without_session(|c| c.nv_read_public(nv_handle))
            .op("reading the register's public area")?;
        let nv_public = marshal_nv_public(&nv_pub)?;
        let parsed =
            wire::NvPublic::parse(&nv_public).map_err(|e| TpmError::Unexpected(e.to_string()))?;
        let attrs = parsed.attributes;
        if attrs & nv_attr::TPM_NT_MASK != nv_attr::TPM_NT_EXTEND {
            return Err(TpmError::Unexpected(format!(
                "NV index {:#010x} exists but is not of type TPM_NT_EXTEND (attributes {attrs:#x})",
                self.cfg.nv_index
            )));
        }
        Ok(TpmIdentity {
            ek_public: ek_pub.marshall().op("marshalling the EK")?,
            ek_cert_der,
            ak_public: ak_pub.marshall().op("marshalling the AK")?,
            nv_public,
            deletion_protected: crate::verify::register_protection(&parsed)
                == crate::verify::RegisterProtection::Undeletable,
        })
    }

    /// The register's current value, or `None` while it was never extended.
    pub fn read_register(&self, nv_auth: &[u8]) -> Result<Option<[u8; 32]>, TpmError> {
        let mut ctx = self.context()?;
        let nv_tpm = NvIndexTpmHandle::new(self.cfg.nv_index).op("NV index")?;
        let h: NvIndexHandle = ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_tpm)))
            .op("looking up the measurement register")?
            .into();
        let (nv_pub, _) = ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .op("reading the register's public area")?;
        if !nv_pub.attributes().written() {
            return Ok(None);
        }
        ctx.tr_set_auth(h.into(), Auth::try_from(nv_auth.to_vec()).op("NV auth")?)
            .op("setting the register's auth")?;
        let data = ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_read(NvAuth::NvIndex(h), h, 32, 0)
            })
            .op("reading the register")?;
        let v: [u8; 32] = data
            .value()
            .try_into()
            .map_err(|_| TpmError::Unexpected("register is not 32 bytes".into()))?;
        Ok(Some(v))
    }

    /// TPM2_NV_Extend of the register with one event digest.
    pub fn extend(&self, nv_auth: &[u8], digest: &[u8; 32]) -> Result<(), TpmError> {
        let mut esys = raw::RawEsys::open(&self.cfg.tcti)?;
        esys.nv_extend(self.cfg.nv_index, nv_auth, digest)
    }

    /// Reads the boot PCRs, quotes them with the nonce, and checks that the
    /// values read are the ones the quote signed (retrying if a PCR moved
    /// in between).
    pub fn quote(&self, nonce: &[u8], pcrs: &[u8]) -> Result<QuoteParts, TpmError> {
        let mut ctx = self.context()?;
        let ak: KeyHandle = Self::persistent(&mut ctx, self.cfg.ak_handle)?
            .ok_or_else(|| TpmError::Unexpected("the AK is not provisioned".into()))?
            .into();
        let slots = pcrs
            .iter()
            .map(|&p| slot(p))
            .collect::<Result<Vec<_>, _>>()?;
        let selection = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .op("PCR selection")?;
        for _attempt in 0..3 {
            let data = ctx
                .execute_without_session(|c| pcr::read_all(c, selection.clone()))
                .op("reading PCRs")?;
            let bank = data
                .pcr_bank(HashingAlgorithm::Sha256)
                .ok_or_else(|| TpmError::Unexpected("no SHA-256 PCR bank".into()))?;
            let mut values = BTreeMap::new();
            for &p in pcrs {
                let d = bank
                    .get_digest(slot(p)?)
                    .ok_or_else(|| TpmError::Unexpected(format!("PCR {p} was not read")))?;
                let v: [u8; 32] = d
                    .value()
                    .try_into()
                    .map_err(|_| TpmError::Unexpected(format!("PCR {p} is not 32 bytes")))?;
                values.insert(p, v);
            }
            let (attest, signature) = ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.quote(
                        ak,
                        Data::try_from(nonce.to_vec())?,
                        SignatureScheme::Null,
                        selection.clone(),
                    )
                })
                .op("TPM2_Quote")?;
            let attest = attest.marshall().op("marshalling the quote")?;
            let signature = signature.marshall().op("marshalling the signature")?;
            let parsed =
                wire::Attest::parse(&attest).map_err(|e| TpmError::Unexpected(e.to_string()))?;
            if let wire::Attested::Quote { pcr_digest, .. } = &parsed.attested {
                if *pcr_digest == crate::verify::pcr_composite_digest(&values) {
                    return Ok(QuoteParts {
                        attest,
                        signature,
                        pcrs: values,
                    });
                }
            }
        }
        Err(TpmError::Unexpected(
            "PCRs kept changing between reading and quoting".into(),
        ))
    }

    /// TPM2_NV_Certify of the register, signed by the AK, with the nonce.
    pub fn certify_register(
        &self,
        nv_auth: &[u8],
        nonce: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
        let mut esys = raw::RawEsys::open(&self.cfg.tcti)?;
        esys.nv_certify(self.cfg.ak_handle, self.cfg.nv_index, nv_auth, nonce)
    }

    /// The register's current TPMS_NV_PUBLIC.
    pub fn register_public(&self) -> Result<Vec<u8>, TpmError> {
        let mut ctx = self.context()?;
        let nv_tpm = NvIndexTpmHandle::new(self.cfg.nv_index).op("NV index")?;
        let h: NvIndexHandle = ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_tpm)))
            .op("looking up the measurement register")?
            .into();
        let (nv_pub, _) = ctx
            .execute_without_session(|c| c.nv_read_public(h))
            .op("reading the register's public area")?;
        marshal_nv_public(&nv_pub)
    }

    /// TPM2_ActivateCredential with the AK and the EK (the EK authorized by
    /// PolicySecret(TPM_RH_ENDORSEMENT)): recovers the credential a verifier
    /// made for this AK and EK.
    pub fn activate_credential(&self, blob: &[u8], secret: &[u8]) -> Result<Vec<u8>, TpmError> {
        let mut ctx = self.context()?;
        let ek = self.ek(&mut ctx)?;
        let ak: KeyHandle = Self::persistent(&mut ctx, self.cfg.ak_handle)?
            .ok_or_else(|| TpmError::Unexpected("the AK is not provisioned".into()))?
            .into();
        let blob = IdObject::try_from(blob.to_vec()).op("credential blob")?;
        let secret = EncryptedSecret::try_from(secret.to_vec()).op("encrypted secret")?;
        let session = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .op("starting the EK policy session")?
            .ok_or_else(|| TpmError::Unexpected("no session handle".into()))?;
        let result = (|| {
            let policy = PolicySession::try_from(session).op("policy session")?;
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .op("PolicySecret(endorsement)")?;
            ctx.execute_with_sessions((Some(AuthSession::Password), Some(session), None), |c| {
                c.activate_credential(ak, ek, blob, secret)
            })
            .op("TPM2_ActivateCredential")
        })();
        let _ = ctx.flush_context(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
            session,
        )));
        let digest: Digest = result?;
        Ok(digest.value().to_vec())
    }
}

/// Whether a persistent object or NV index exists, asked of the TPM's handle
/// list (so that a missing one is not an error that the TSS logs).
fn handle_exists(ctx: &mut Context, handle: u32) -> Result<bool, TpmError> {
    let (data, _) = ctx
        .get_capability(CapabilityType::Handles, handle, 1)
        .op("listing TPM handles")?;
    Ok(match data {
        CapabilityData::Handles(list) => list
            .as_ref()
            .iter()
            .any(|h| tss_esapi::tss2_esys::TPM2_HANDLE::from(*h) == handle),
        _ => false,
    })
}

fn is_handle_error(e: &tss_esapi::Error) -> bool {
    // TPM_RC_HANDLE (format one, 0x08B) for any handle or parameter number:
    // the object or index does not exist.
    match e {
        tss_esapi::Error::Tss2Error(rc) => {
            rc.kind() == Some(tss_esapi::constants::response_code::Tss2ResponseCodeKind::Handle)
        }
        _ => false,
    }
}

fn define_register(
    ctx: &mut Context,
    nv_tpm: NvIndexTpmHandle,
    nv_auth: &[u8],
) -> Result<NvIndexHandle, TpmError> {
    let auth = Auth::try_from(nv_auth.to_vec()).op("NV auth")?;
    let build = |protected: bool| -> Result<tss_esapi::structures::NvPublic, TpmError> {
        let attrs = NvIndexAttributesBuilder::new()
            .with_nv_index_type(NvIndexType::Extend)
            .with_auth_write(true)
            .with_auth_read(true)
            .with_no_da(true)
            .with_policy_delete(protected)
            .with_platform_create(protected)
            .build()
            .op("NV attributes")?;
        let mut b = NvPublicBuilder::new()
            .with_nv_index(nv_tpm)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attrs)
            .with_data_area_size(32);
        if protected {
            b = b.with_index_auth_policy(
                Digest::try_from(wire::unsatisfiable_policy().to_vec()).op("policy digest")?,
            );
        }
        b.build().op("NV public")
    };
    // First choice: defined by the platform hierarchy with POLICY_DELETE and
    // an authPolicy no session can satisfy, so that nobody, the platform
    // included, can ever undefine it (decision 052). Platform authorization
    // is only available before the firmware disables it (or on swtpm).
    let protected = build(true)?;
    match ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.nv_define_space(Provision::Platform, Some(auth.clone()), protected)
    }) {
        Ok(h) => Ok(h),
        Err(platform_err) => {
            tracing::warn!(
                "platform hierarchy unavailable ({platform_err}); defining the measurement register \
                 under the owner hierarchy: root can delete it and rewrite its history, and \
                 hearth-verify reports it as deletable (decision 052)"
            );
            let plain = build(false)?;
            ctx.execute_with_session(Some(AuthSession::Password), |c| {
                c.nv_define_space(Provision::Owner, Some(auth), plain)
            })
            .op("defining the measurement register")
        }
    }
}

fn marshal_nv_public(p: &tss_esapi::structures::NvPublic) -> Result<Vec<u8>, TpmError> {
    let nv = wire::NvPublic {
        index: u32::from(p.nv_index()),
        name_alg: tss_esapi::tss2_esys::TPM2_ALG_ID::from(p.name_algorithm()),
        attributes: tss_esapi::tss2_esys::TPMA_NV::try_from(p.attributes()).op("NV attributes")?,
        auth_policy: p.authorization_policy().value().to_vec(),
        data_size: p.data_size() as u16,
    };
    Ok(nv.marshal())
}

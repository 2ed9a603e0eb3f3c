//! The verifier, in software: enrollment by credential activation, and the
//! checks of a quote answer against the enrolled record and a golden policy.
//!
//! Invariant: nothing in a quote answer is believed before the signature
//! that covers it has been checked with the enrolled AK; the PCR values and
//! the event log are believed only through the digests the TPM signed.

use std::collections::{BTreeMap, BTreeSet};

use openssl::sha::{sha256, Sha256};
use serde::{Deserialize, Serialize};

use crate::api::{EnrollRequest, EnrollResponse, Identity, QuoteResponse, BOOT_PCRS};
use crate::crypto::{self, CryptoError};
use crate::eventlog::{self, Kind};
use crate::tcglog;
use crate::wire::{self, nv_attr, Attest, Attested, EcdsaSignature};

/// Why enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// A field of the identity is not hex or not a valid TPM structure.
    #[error("identity field {field}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A key or certificate check failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// The register is not an extend index software cannot rewrite.
    #[error("measurement register: {0}")]
    Register(String),
    /// The appliance did not recover the credential.
    #[error("credential activation failed: the AK is not in the TPM that holds this EK")]
    ActivationFailed,
    /// The EK certificate is required (a vendor bundle was given) but missing.
    #[error("the appliance sent no EK certificate, but a vendor CA bundle was given")]
    NoEkCert,
}

fn field_hex(field: &'static str, s: &str) -> Result<Vec<u8>, EnrollError> {
    hex::decode(s).map_err(|e| EnrollError::BadField {
        field,
        reason: e.to_string(),
    })
}

/// The verifier's stored record of an enrolled appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// HOST:PORT as enrolled.
    pub host: String,
    /// SHA-256 fingerprint of the pinned root CA certificate.
    pub root_ca_fingerprint: String,
    /// The pinned root CA certificate, PEM.
    pub root_ca_pem: String,
    /// EK TPMT_PUBLIC, hex.
    pub ek_public: String,
    /// EK certificate, PEM, if the TPM had one.
    pub ek_cert_pem: Option<String>,
    /// Whether the EK certificate was checked against a vendor CA bundle.
    pub ek_cert_checked: bool,
    /// Which EK check enrollment did (absent in records written before it
    /// was recorded).
    #[serde(default)]
    pub ek_check: EkCheck,
    /// AK TPMT_PUBLIC, hex.
    pub ak_public: String,
    /// AK name, hex.
    pub ak_name: String,
    /// Register TPMS_NV_PUBLIC at enrollment, hex.
    pub nv_public: String,
    /// Seconds since the Unix epoch.
    pub enrolled_at: u64,
}

/// Which check of the TPM's EK certificate enrollment did: it is what
/// tells a hardware TPM of a known vendor from a software one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EkCheck {
    /// The EK certificate chains to the vendor CA bundle given at enrollment.
    VendorCaBundle,
    /// None: the admin enrolled with `--insecure-no-ek-check`, so any TPM,
    /// a software one included, was accepted.
    InsecureNoEkCheck,
    /// The record predates this field.
    #[default]
    Unrecorded,
}

impl EkCheck {
    /// One line for people.
    pub fn describe(&self) -> &'static str {
        match self {
            EkCheck::VendorCaBundle => "the EK certificate chains to the vendor CA bundle",
            EkCheck::InsecureNoEkCheck => {
                "none (--insecure-no-ek-check): any TPM, a software one included, was accepted"
            }
            EkCheck::Unrecorded => "not recorded (enrolled before hearth-verify recorded it)",
        }
    }
}

/// A pending credential activation.
#[derive(Debug)]
pub struct Challenge {
    credential: [u8; 32],
    record: Enrollment,
}

/// Checks the register's public area: an SHA-256 extend index written only
/// with its own authorization, readable for certification.
pub fn check_register_public(nv: &wire::NvPublic) -> Result<(), String> {
    let a = nv.attributes;
    if a & nv_attr::TPM_NT_MASK != nv_attr::TPM_NT_EXTEND {
        return Err(format!("attributes {a:#x}: not of type TPM_NT_EXTEND"));
    }
    if nv.name_alg != wire::ALG_SHA256 || nv.data_size != 32 {
        return Err("not a SHA-256 register of 32 bytes".into());
    }
    let forbidden = nv_attr::PPWRITE
        | nv_attr::OWNERWRITE
        | nv_attr::POLICYWRITE
        | nv_attr::CLEAR_STCLEAR
        | nv_attr::WRITE_STCLEAR
        | nv_attr::GLOBALLOCK;
    if a & forbidden != 0 {
        return Err(format!(
            "attributes {a:#x}: writable by owner/platform/policy or cleared at restart"
        ));
    }
    Ok(())
}

/// How the register is protected against deletion. A register that can be
/// deleted can be defined again with the same public area, hence the same
/// name, and extended with a forged event log: its history can be rewritten
/// by whoever can delete it. The attributes and authPolicy are covered by the
/// register's name, which the AK signs in every TPM2_NV_Certify, so this is
/// what the TPM attests, not what the appliance claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegisterProtection {
    /// Platform-created with TPMA_NV_POLICY_DELETE and an authPolicy no
    /// session can satisfy: no TPM command deletes it.
    Undeletable,
    /// Platform-created but deletable with platform authorization (a
    /// satisfiable authPolicy with POLICY_DELETE, or no POLICY_DELETE).
    PlatformDeletable,
    /// Defined by the owner: TPM2_NV_UndefineSpace with owner authorization,
    /// or TPM2_Clear, deletes it.
    OwnerDeletable,
}

impl RegisterProtection {
    /// What it means, in one sentence for people.
    pub fn describe(&self) -> &'static str {
        match self {
            RegisterProtection::Undeletable => {
                "undeletable: platform-created with POLICY_DELETE and an authPolicy no session can satisfy; no TPM command deletes it or changes its authorization"
            }
            RegisterProtection::PlatformDeletable => {
                "DELETABLE with platform authorization: where the platform hierarchy is enabled (swtpm, most VMs, firmware that leaves it on) root can delete the register, define it again with the same name and replay a forged event log"
            }
            RegisterProtection::OwnerDeletable => {
                "DELETABLE by the TPM owner (TPM2_NV_UndefineSpace, TPM2_Clear): root on the appliance can delete the register, define it again with the same name and replay a forged event log"
            }
        }
    }

    /// What remains possible even so.
    pub fn residual_risk(&self) -> &'static str {
        match self {
            RegisterProtection::Undeletable => {
                "root on the appliance holds the register's authorization value and can append forged events, but never remove one; a software TPM's state file can be rewritten by whoever holds it (only an EK checked against the vendor CA bundle rules a software TPM out); a flaw in the TPM or its firmware is beyond this check"
            }
            RegisterProtection::PlatformDeletable => {
                "the measured history is only as safe as the platform hierarchy, and no quote shows whether the firmware disabled it"
            }
            RegisterProtection::OwnerDeletable => {
                "the measured history (binaries, models, executed actions) can be rewritten by anyone with root on the appliance; only a register defined with platform authorization, at provisioning, closes this"
            }
        }
    }
}

/// Classifies a register's public area (see [`RegisterProtection`]).
pub fn register_protection(nv: &wire::NvPublic) -> RegisterProtection {
    let a = nv.attributes;
    if a & nv_attr::PLATFORMCREATE == 0 {
        return RegisterProtection::OwnerDeletable;
    }
    let unsatisfiable = nv.auth_policy.is_empty()
        || (nv.name_alg == wire::ALG_SHA256
            && nv.auth_policy.as_slice() == wire::unsatisfiable_policy().as_slice());
    if a & nv_attr::POLICY_DELETE != 0 && unsatisfiable {
        RegisterProtection::Undeletable
    } else {
        RegisterProtection::PlatformDeletable
    }
}

/// The register's protection as a report states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterProtectionReport {
    /// The classification.
    pub protection: RegisterProtection,
    /// What it means.
    pub detail: String,
    /// What remains possible even so.
    pub residual_risk: String,
}

impl From<RegisterProtection> for RegisterProtectionReport {
    fn from(p: RegisterProtection) -> Self {
        RegisterProtectionReport {
            protection: p,
            detail: p.describe().to_string(),
            residual_risk: p.residual_risk().to_string(),
        }
    }
}

/// First half of enrollment: checks the identity (AK shape, EK shape, EK
/// certificate against the EK and, if given, the vendor CA bundle), and makes
/// a credential only the TPM holding this EK, with this AK loaded, can open.
/// Without a bundle the EK is not tied to any vendor (a software TPM
/// passes); the record says so ([`EkCheck::InsecureNoEkCheck`]).
pub fn begin_enroll(
    host: &str,
    root_ca_pem: &str,
    root_ca_fingerprint: &str,
    identity: &Identity,
    vendor_bundle_pem: Option<&[u8]>,
) -> Result<(EnrollRequest, Challenge), EnrollError> {
    let bad = |field: &'static str| {
        move |e: wire::WireError| EnrollError::BadField {
            field,
            reason: e.to_string(),
        }
    };
    let ek_bytes = field_hex("ek_public", &identity.ek_public)?;
    let ek = wire::Public::parse(&ek_bytes).map_err(bad("ek_public"))?;
    let ak_bytes = field_hex("ak_public", &identity.ak_public)?;
    let ak = wire::Public::parse(&ak_bytes).map_err(bad("ak_public"))?;
    crypto::ak_key(&ak)?;
    crypto::ek_rsa(&ek)?;
    let mut ek_cert_checked = false;
    match &identity.ek_cert_pem {
        Some(pem) => {
            let cert = crypto::parse_cert(pem.as_bytes())?;
            crypto::check_ek_cert(&cert, &ek, vendor_bundle_pem)?;
            ek_cert_checked = vendor_bundle_pem.is_some();
        }
        None if vendor_bundle_pem.is_some() => return Err(EnrollError::NoEkCert),
        None => {}
    }
    let nv_bytes = field_hex("nv_public", &identity.nv_public)?;
    let nv = wire::NvPublic::parse(&nv_bytes).map_err(bad("nv_public"))?;
    check_register_public(&nv).map_err(EnrollError::Register)?;

    let ak_name = wire::sha256_name(&ak_bytes);
    let mut credential = [0u8; 32];
    openssl::rand::rand_bytes(&mut credential).map_err(CryptoError::from)?;
    let (blob, secret) = crypto::make_credential(&ek, &ak_name, &credential)?;
    let enrolled_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let record = Enrollment {
        host: host.to_string(),
        root_ca_fingerprint: root_ca_fingerprint.to_string(),
        root_ca_pem: root_ca_pem.to_string(),
        ek_public: identity.ek_public.clone(),
        ek_cert_pem: identity.ek_cert_pem.clone(),
        ek_cert_checked,
        ek_check: if vendor_bundle_pem.is_some() {
            EkCheck::VendorCaBundle
        } else {
            EkCheck::InsecureNoEkCheck
        },
        ak_public: identity.ak_public.clone(),
        ak_name: hex::encode(&ak_name),
        nv_public: identity.nv_public.clone(),
        enrolled_at,
    };
    Ok((
        EnrollRequest {
            credential_blob: hex::encode(blob),
            secret: hex::encode(secret),
        },
        Challenge { credential, record },
    ))
}

/// Second half of enrollment: the appliance must have recovered the credential.
pub fn finish_enroll(
    challenge: Challenge,
    response: &EnrollResponse,
) -> Result<Enrollment, EnrollError> {
    let got = hex::decode(&response.credential).unwrap_or_default();
    if openssl::memcmp::eq(&got, &challenge.credential) && got.len() == 32 {
        Ok(challenge.record)
    } else {
        Err(EnrollError::ActivationFailed)
    }
}

/// SHA-256 over the PCR values in ascending PCR order (the TPM's pcrDigest
/// for a single SHA-256 bank selection).
pub fn pcr_composite_digest(values: &BTreeMap<u8, [u8; 32]>) -> Vec<u8> {
    let mut h = Sha256::new();
    for v in values.values() {
        h.update(v);
    }
    h.finish().to_vec()
}

/// An allowed measurement in a golden policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenMeasurement {
    /// Kind (binary, model, playbook-catalog, policy).
    pub kind: Kind,
    /// Name (path or identifier) as measured.
    pub name: String,
    /// Allowed SHA-256 digests, hex.
    pub sha256: Vec<String>,
    /// Whether it must have been measured.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// Required and forbidden executed actions, by playbook id: a rule matches
/// every `<id>@<seq>` action the gate measured for that playbook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenActions {
    /// Playbooks that must have run at least once.
    #[serde(default)]
    pub required: Vec<String>,
    /// Playbooks that must never have run.
    #[serde(default)]
    pub forbidden: Vec<String>,
}

/// The golden policy: what a trustworthy appliance looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// Whether the appliance must send the firmware's TCG event log
    /// (decision 053). Absent: true. With true, a quote without one is NOT
    /// TRUSTED ("no firmware event log"); with false it is reported, and
    /// PCRs 0-7 are judged by their quoted values alone. A log that is sent
    /// must replay to the quoted PCRs 0-7 either way.
    #[serde(default = "yes")]
    pub require_firmware_log: bool,
    /// Whether the register must be undeletable
    /// ([`RegisterProtection::Undeletable`]); a deletable one then fails the
    /// check "register protection". Absent in older files: false (the
    /// protection is still reported).
    #[serde(default)]
    pub require_protected_register: bool,
    /// Expected SHA-256 boot PCR values by PCR index (as strings, TOML keys).
    #[serde(default)]
    pub pcrs: BTreeMap<String, String>,
    /// Allowed measurements.
    #[serde(default)]
    pub measurement: Vec<GoldenMeasurement>,
    /// Action rules.
    #[serde(default)]
    pub actions: GoldenActions,
}

impl Default for Golden {
    fn default() -> Self {
        Golden {
            require_firmware_log: true,
            require_protected_register: false,
            pcrs: BTreeMap::new(),
            measurement: Vec::new(),
            actions: GoldenActions::default(),
        }
    }
}

/// What became of the firmware's TCG event log in a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirmwareLogStatus {
    /// Not looked at (the quote itself was not proven).
    #[default]
    Unchecked,
    /// The appliance sent none.
    NotSent,
    /// Sent, parsed, and its SHA-256 replay equals the quoted PCRs 0-7.
    Replayed,
    /// Sent, but malformed or not replaying to the quoted PCRs.
    Failed,
}

/// One check of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why (the reason for a failure, or what was found).
    pub detail: String,
}

/// A measured item, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// SHA-256.
    pub sha256: String,
}

/// The outcome of a check of one appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// HOST:PORT.
    pub host: String,
    /// True when every check passed.
    pub trusted: bool,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The measured models, playbook catalogs, policies and binaries
    /// (only when the event log was proven by the TPM).
    pub measured: Vec<Measured>,
    /// The executed actions, in order (same condition).
    pub actions: Vec<String>,
    /// The quoted boot PCR values (only when the quote was proven).
    pub pcrs: BTreeMap<u8, String>,
    /// Which EK check the enrollment this check relies on did.
    #[serde(default)]
    pub ek_check: EkCheck,
    /// How the measurement register is protected against deletion (from
    /// its certified definition, else the enrolled one; absent when neither
    /// could be read).
    #[serde(default)]
    pub register_protection: Option<RegisterProtectionReport>,
    /// The firmware event log's fate (its per-PCR replay is in `checks`,
    /// named `firmware log PCR n`).
    #[serde(default)]
    pub firmware_log: FirmwareLogStatus,
}

struct Checks(Vec<Check>);

impl Checks {
    fn push(&mut self, name: &str, ok: bool, detail: impl Into<String>) -> bool {
        self.0.push(Check {
            name: name.to_string(),
            ok,
            detail: detail.into(),
        });
        ok
    }
}

fn parse_signed(
    s: &crate::api::Signed,
    what: &str,
) -> Result<(Vec<u8>, Attest, EcdsaSignature), String> {
    let attest = hex::decode(&s.attest).map_err(|e| format!("{what}: attest is not hex: {e}"))?;
    let sig =
        hex::decode(&s.signature).map_err(|e| format!("{what}: signature is not hex: {e}"))?;
    let parsed = Attest::parse(&attest).map_err(|e| format!("{what}: {e}"))?;
    let sig = EcdsaSignature::parse(&sig).map_err(|e| format!("{what}: {e}"))?;
    Ok((attest, parsed, sig))
}

/// Checks a quote answer against the enrolled record, the nonce the verifier
/// sent, and (optionally) a golden policy.
pub fn check_quote(
    record: &Enrollment,
    nonce: &[u8],
    resp: &QuoteResponse,
    golden: Option<&Golden>,
) -> Report {
    let mut c = Checks(Vec::new());
    let mut report = Report {
        host: record.host.clone(),
        trusted: false,
        checks: Vec::new(),
        measured: Vec::new(),
        actions: Vec::new(),
        pcrs: BTreeMap::new(),
        ek_check: record.ek_check,
        register_protection: None,
        firmware_log: FirmwareLogStatus::Unchecked,
    };
    let finish = |mut report: Report, c: Checks| {
        report.trusted = !c.0.is_empty() && c.0.iter().all(|x| x.ok);
        report.checks = c.0;
        report
    };

    // The enrolled AK.
    let ak = hex::decode(&record.ak_public)
        .ok()
        .and_then(|b| wire::Public::parse(&b).ok())
        .and_then(|p| crypto::ak_key(&p).ok());
    let Some(ak) = ak else {
        c.push(
            "enrolled AK",
            false,
            "the enrollment record's AK is unusable",
        );
        return finish(report, c);
    };

    // 1. The quote.
    let quote = match parse_signed(&resp.quote, "quote") {
        Ok(q) => q,
        Err(e) => {
            c.push("quote signature", false, e);
            return finish(report, c);
        }
    };
    let (q_bytes, q, q_sig) = quote;
    if !c.push(
        "quote signature",
        crypto::verify_ecdsa(&ak, &q_bytes, &q_sig),
        "TPM2_Quote signed by the enrolled AK",
    ) {
        if let Some(x) = c.0.last_mut() {
            x.detail = "the quote is not signed by the enrolled AK".into();
        }
        return finish(report, c);
    }
    let nonce_ok = q.extra_data == nonce;
    c.push(
        "quote freshness",
        nonce_ok,
        if nonce_ok {
            "the quote carries this check's nonce".to_string()
        } else {
            format!(
                "the quote carries nonce {} instead of this check's {} (replayed or stale quote)",
                hex::encode(&q.extra_data),
                hex::encode(nonce)
            )
        },
    );
    let mut pcrs_proven = false;
    match &q.attested {
        Attested::Quote {
            selection,
            pcr_digest,
        } => {
            let expected_sel = vec![(wire::ALG_SHA256, wire::pcr_bitmap(&BOOT_PCRS))];
            let sel_ok = *selection == expected_sel;
            c.push(
                "quote PCR selection",
                sel_ok,
                if sel_ok {
                    "SHA-256 PCRs 0-7 and 11".to_string()
                } else {
                    format!("unexpected selection {selection:?}")
                },
            );
            let mut values = BTreeMap::new();
            let mut parse_ok = true;
            for (p, v) in &resp.pcrs {
                match hex::decode(v)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                {
                    Some(b) => {
                        values.insert(*p, b);
                    }
                    None => parse_ok = false,
                }
            }
            let keys: Vec<u8> = values.keys().copied().collect();
            let digest_ok = parse_ok
                && keys == BOOT_PCRS.to_vec()
                && pcr_composite_digest(&values) == *pcr_digest;
            c.push(
                "PCR values",
                digest_ok,
                if digest_ok {
                    "the PCR values are the ones the quote signed"
                } else {
                    "the PCR values sent do not match the signed PCR digest"
                },
            );
            if sel_ok && digest_ok {
                pcrs_proven = true;
                report.pcrs = values.iter().map(|(k, v)| (*k, hex::encode(v))).collect();
            }
            check_firmware_log(
                &mut c,
                &mut report,
                resp,
                golden,
                pcrs_proven.then_some(&values),
            );
        }
        Attested::Nv { .. } => {
            c.push(
                "quote PCR selection",
                false,
                "the quote is not a TPM2_Quote",
            );
        }
    }

    // 2. The register certification.
    let nv_pub_ok = (|| {
        let sent = hex::decode(&resp.nv_public).map_err(|e| format!("not hex: {e}"))?;
        let sent = wire::NvPublic::parse(&sent).map_err(|e| e.to_string())?;
        let enrolled = hex::decode(&record.nv_public)
            .ok()
            .and_then(|b| wire::NvPublic::parse(&b).ok())
            .ok_or("the enrolled register public area is unusable")?;
        let mut a = sent.clone();
        let mut b = enrolled;
        a.attributes &= !nv_attr::WRITTEN;
        b.attributes &= !nv_attr::WRITTEN;
        if a != b {
            return Err(
                "the register's definition differs from the enrolled one (redefined?)".into(),
            );
        }
        check_register_public(&sent)?;
        Ok::<_, String>(sent)
    })();
    let nv_pub = match nv_pub_ok {
        Ok(p) => {
            c.push(
                "register definition",
                true,
                format!("NV extend index {:#010x}, as enrolled", p.index),
            );
            Some(p)
        }
        Err(e) => {
            c.push("register definition", false, e);
            None
        }
    };
    let protection = nv_pub.clone().or_else(|| {
        hex::decode(&record.nv_public)
            .ok()
            .and_then(|b| wire::NvPublic::parse(&b).ok())
    });
    let protection = protection.map(|p| register_protection(&p));
    report.register_protection = protection.map(RegisterProtectionReport::from);
    let mut register_value: Option<Vec<u8>> = None;
    match parse_signed(&resp.nv_certify, "NV certification") {
        Err(e) => {
            c.push("register certification signature", false, e);
        }
        Ok((n_bytes, n, n_sig)) => {
            let sig_ok = crypto::verify_ecdsa(&ak, &n_bytes, &n_sig);
            c.push(
                "register certification signature",
                sig_ok,
                if sig_ok {
                    "TPM2_NV_Certify signed by the enrolled AK"
                } else {
                    "the register certification is not signed by the enrolled AK"
                },
            );
            if sig_ok {
                let fresh = n.extra_data == nonce;
                c.push(
                    "register certification freshness",
                    fresh,
                    if fresh {
                        "carries this check's nonce"
                    } else {
                        "carries another nonce (replayed or stale)"
                    },
                );
                let same_moment = n.clock_info.reset_count == q.clock_info.reset_count
                    && n.clock_info.restart_count == q.clock_info.restart_count
                    && n.firmware_version == q.firmware_version
                    && n.clock_info.clock.abs_diff(q.clock_info.clock) < 60_000;
                c.push(
                    "quote and certification together",
                    same_moment,
                    if same_moment {
                        format!(
                            "same TPM boot, {} ms apart",
                            n.clock_info.clock.abs_diff(q.clock_info.clock)
                        )
                    } else {
                        "the quote and the register certification are from different moments".into()
                    },
                );
                match (&n.attested, &nv_pub) {
                    (
                        Attested::Nv {
                            index_name,
                            offset,
                            contents,
                        },
                        Some(p),
                    ) => {
                        let name_ok = *index_name == wire::sha256_name(&p.marshal())
                            && *offset == 0
                            && contents.len() == 32;
                        c.push(
                            "register identity",
                            name_ok,
                            if name_ok {
                                "the certified index is the enrolled register".to_string()
                            } else {
                                "the certified index is not the enrolled register".to_string()
                            },
                        );
                        if name_ok && fresh && same_moment {
                            register_value = Some(contents.clone());
                        }
                    }
                    (Attested::Nv { .. }, None) => {}
                    _ => {
                        c.push("register identity", false, "not an NV certification");
                    }
                }
            }
        }
    }

    // 3. The event log, replayed to the certified register value.
    let nv_index = nv_pub.as_ref().map(|p| p.index).unwrap_or(0);
    let mut log_proven = false;
    match (&register_value, eventlog::replay(&resp.event_log, nv_index)) {
        (_, Err(e)) => {
            c.push("event log", false, format!("tampered: {e}"));
        }
        (None, Ok(_)) => {
            c.push(
                "event log",
                false,
                "no certified register value to replay the log against",
            );
        }
        (Some(certified), Ok(replayed)) => {
            let replayed = replayed.map(|v| v.to_vec()).unwrap_or_else(|| vec![0; 32]);
            log_proven = replayed == *certified;
            c.push(
                "event log",
                log_proven,
                if log_proven {
                    format!(
                        "{} events replay to the certified register value",
                        resp.event_log.len()
                    )
                } else {
                    format!(
                        "{} events replay to {} but the TPM certifies {}: events were removed, added, reordered or altered",
                        resp.event_log.len(),
                        hex::encode(&replayed),
                        hex::encode(certified)
                    )
                },
            );
        }
    }
    if log_proven {
        let mut seen = BTreeSet::new();
        for e in &resp.event_log {
            if e.content.kind == Kind::Action {
                report.actions.push(e.content.name.clone());
            } else if seen.insert((
                e.content.kind,
                e.content.name.clone(),
                e.content.sha256.clone(),
            )) {
                report.measured.push(Measured {
                    kind: e.content.kind,
                    name: e.content.name.clone(),
                    sha256: e.content.sha256.clone(),
                });
            }
        }
    }

    // 4. The golden policy.
    if let Some(g) = golden {
        apply_golden(&mut c, g, &report, pcrs_proven, log_proven, protection);
    }
    finish(report, c)
}

/// The firmware event log against the quoted PCRs 0-7 (decision 053).
fn check_firmware_log(
    c: &mut Checks,
    report: &mut Report,
    resp: &QuoteResponse,
    golden: Option<&Golden>,
    quoted: Option<&BTreeMap<u8, [u8; 32]>>,
) {
    const NAME: &str = "firmware event log";
    let Some(text) = &resp.firmware_event_log else {
        report.firmware_log = FirmwareLogStatus::NotSent;
        if golden.is_some_and(|g| g.require_firmware_log) {
            c.push(
                NAME,
                false,
                "no firmware event log: the appliance sent none, so PCRs 0-7 are not backed by one (the golden policy requires it; require_firmware_log = false accepts its absence)",
            );
        }
        return;
    };
    report.firmware_log = FirmwareLogStatus::Failed;
    if text.len() > 2 * tcglog::MAX_LOG_BYTES {
        c.push(
            NAME,
            false,
            format!(
                "{} hex digits, over the limit of {} bytes",
                text.len(),
                tcglog::MAX_LOG_BYTES
            ),
        );
        return;
    }
    let log = match hex::decode(text) {
        Err(e) => {
            c.push(NAME, false, format!("not hex: {e}"));
            return;
        }
        Ok(b) => match tcglog::parse(&b) {
            Err(e) => {
                c.push(NAME, false, format!("malformed: {e}"));
                return;
            }
            Ok(l) => l,
        },
    };
    let replay = match log.replay_sha256() {
        Err(e) => {
            c.push(NAME, false, format!("cannot be replayed: {e}"));
            return;
        }
        Ok(r) => r,
    };
    let Some(quoted) = quoted else {
        c.push(
            NAME,
            false,
            "no proven PCR values to replay the log against",
        );
        return;
    };
    let mut rows = Vec::new();
    let mut all = true;
    for p in 0u8..8 {
        let n = replay.events.get(&p).copied().unwrap_or(0);
        let (ok, detail) = match (replay.values.get(&p), quoted.get(&p)) {
            (Some(r), Some(q)) if r == q => (true, format!("{n} events replay to the quoted value")),
            (Some(r), Some(q)) => (
                false,
                format!(
                    "{n} events replay to {} but the TPM quoted {}: the log was edited or is not this boot's",
                    hex::encode(r),
                    hex::encode(q)
                ),
            ),
            _ => (false, "not quoted".to_string()),
        };
        all &= ok;
        rows.push((format!("firmware log PCR {p}"), ok, detail));
    }
    let extending: usize = (0u8..8).filter_map(|p| replay.events.get(&p)).sum();
    let banks: Vec<String> = log
        .spec
        .algorithms
        .iter()
        .map(|(a, _)| match *a {
            tcglog::ALG_SHA1 => "sha1".to_string(),
            tcglog::ALG_SHA256 => "sha256".to_string(),
            other => format!("{other:#06x}"),
        })
        .collect();
    c.push(
        NAME,
        all,
        if all {
            format!(
                "{} events ({extending} in PCRs 0-7; banks {}): the SHA-256 replay equals the quoted PCRs 0-7",
                log.events.len(),
                banks.join(", ")
            )
        } else {
            format!(
                "{} events: the SHA-256 replay differs from the quoted PCRs 0-7",
                log.events.len()
            )
        },
    );
    for (name, ok, detail) in rows {
        c.push(&name, ok, detail);
    }
    if all {
        report.firmware_log = FirmwareLogStatus::Replayed;
    }
}

fn apply_golden(
    c: &mut Checks,
    g: &Golden,
    report: &Report,
    pcrs_proven: bool,
    log_proven: bool,
    protection: Option<RegisterProtection>,
) {
    if g.require_protected_register {
        match protection {
            Some(RegisterProtection::Undeletable) => c.push(
                "register protection",
                true,
                RegisterProtection::Undeletable.describe(),
            ),
            Some(p) => c.push(
                "register protection",
                false,
                format!(
                    "the golden policy requires an undeletable register, but it is {}",
                    p.describe()
                ),
            ),
            None => c.push(
                "register protection",
                false,
                "the golden policy requires an undeletable register, but its definition could not be read",
            ),
        };
    }
    if !g.pcrs.is_empty() {
        if !pcrs_proven {
            c.push("boot PCRs", false, "no proven PCR values to compare");
        } else {
            let mut bad = Vec::new();
            for (k, want) in &g.pcrs {
                let got = k.parse::<u8>().ok().and_then(|p| report.pcrs.get(&p));
                if got.map(|g| g.eq_ignore_ascii_case(want)) != Some(true) {
                    bad.push(format!(
                        "PCR {k} is {} (expected {want})",
                        got.map(String::as_str).unwrap_or("not quoted")
                    ));
                }
            }
            let ok = bad.is_empty();
            c.push(
                "boot PCRs",
                ok,
                if ok {
                    format!("{} PCRs match the golden values", g.pcrs.len())
                } else {
                    bad.join("; ")
                },
            );
        }
    }
    if !log_proven {
        c.push(
            "golden measurements",
            false,
            "the event log is not proven, its measurements cannot be judged",
        );
        return;
    }
    for m in &report.measured {
        let rule = g
            .measurement
            .iter()
            .find(|r| r.kind == m.kind && r.name == m.name);
        let (ok, detail) = match rule {
            None => (false, "not in the golden policy".to_string()),
            Some(r) if r.sha256.iter().any(|d| d.eq_ignore_ascii_case(&m.sha256)) => {
                (true, "allowed digest".to_string())
            }
            Some(_) => (
                false,
                format!(
                    "digest {} is not an allowed one (file swapped or modified)",
                    m.sha256
                ),
            ),
        };
        c.push(&format!("{} {}", m.kind, m.name), ok, detail);
    }
    for r in g.measurement.iter().filter(|r| r.required) {
        if !report
            .measured
            .iter()
            .any(|m| m.kind == r.kind && m.name == r.name)
        {
            c.push(
                &format!("{} {}", r.kind, r.name),
                false,
                "expected but never measured".to_string(),
            );
        }
    }
    for a in &g.actions.required {
        let hits = matching_actions(&report.actions, a);
        let ok = !hits.is_empty();
        c.push(
            &format!("action {a}"),
            ok,
            if ok {
                format!("executed, as required ({})", hits.join(", "))
            } else {
                "required but not executed".to_string()
            },
        );
    }
    for a in &g.actions.forbidden {
        let hits = matching_actions(&report.actions, a);
        let ok = hits.is_empty();
        c.push(
            &format!("action {a}"),
            ok,
            if ok {
                "not executed".to_string()
            } else {
                format!("executed, but forbidden ({})", hits.join(", "))
            },
        );
    }
}

/// Whether a measured action name is an execution of the playbook a golden
/// rule names. The gate measures each run as `<playbook id>@<audit seq>`;
/// a rule names the playbook id and matches every run of it. A rule that
/// itself carries `@<seq>` matches that one run only, and an action measured
/// without a sequence number matches a rule of the same name.
pub fn action_matches(measured: &str, rule: &str) -> bool {
    if measured == rule {
        return true;
    }
    match measured.rsplit_once('@') {
        Some((id, seq)) => id == rule && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// The measured actions a rule matches, in order.
fn matching_actions(actions: &[String], rule: &str) -> Vec<String> {
    actions
        .iter()
        .filter(|m| action_matches(m, rule))
        .cloned()
        .collect()
}

/// Writes a golden policy describing what a (known-good) checked appliance
/// reported: its boot PCRs and every measurement except actions.
pub fn golden_from_report(report: &Report) -> Golden {
    let mut measurement: Vec<GoldenMeasurement> = Vec::new();
    for m in &report.measured {
        match measurement
            .iter_mut()
            .find(|g| g.kind == m.kind && g.name == m.name)
        {
            Some(g) => g.sha256.push(m.sha256.clone()),
            None => measurement.push(GoldenMeasurement {
                kind: m.kind,
                name: m.name.clone(),
                sha256: vec![m.sha256.clone()],
                required: true,
            }),
        }
    }
    Golden {
        pcrs: report
            .pcrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        measurement,
        actions: GoldenActions::default(),
        // Required from now on when the known-good appliance sent one that
        // replays; a sandbox without firmware (plain swtpm) has none.
        require_firmware_log: report.firmware_log == FirmwareLogStatus::Replayed,
        // Required from now on when the known-good appliance has it; a
        // deletable register is reported by every check either way.
        require_protected_register: report
            .register_protection
            .as_ref()
            .is_some_and(|p| p.protection == RegisterProtection::Undeletable),
    }
}

/// A fresh random nonce.
pub fn fresh_nonce() -> Vec<u8> {
    let mut n = vec![0u8; crate::api::NONCE_LEN];
    if openssl::rand::rand_bytes(&mut n).is_err() {
        // Fall back on a hash of the clock and pid; never reached in practice.
        let t = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        n.copy_from_slice(&sha256(t.as_bytes())[..crate::api::NONCE_LEN]);
    }
    n
}

//! `quote`: hearth-verify's check of a `/v1/quote` answer, the document it
//! reads from the network ([`check_quote`]), with the enrolled record of an
//! appliance whose AK this harness holds.
//!
//! Input: a mode byte, then the answer's JSON. In odd modes the harness
//! signs whatever TPMS_ATTEST bytes the answer carries with the enrolled AK
//! (as a TPM that signs anything would), so that the fuzzer reaches the
//! checks behind the signatures. Properties: no panic; a trusted report
//! means the quote and the certification carry this check's nonce, the
//! event log replays, and the PCRs are the boot PCRs; the report's own
//! golden policy keeps it trusted; forbidding an action it executed makes it
//! untrusted.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hearth_attestation::api::{QuoteResponse, Signed, BOOT_PCRS, NONCE_LEN};
use hearth_attestation::eventlog::{self, make_event, Content, Kind};
use hearth_attestation::verify::{
    check_quote, golden_from_report, pcr_composite_digest, EkCheck, Enrollment,
};
use hearth_attestation::wire::{self, nv_attr, object_attr as oa, Attest, NvPublic};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::Private;
use openssl::sha::sha256;

/// The nonce every check of this harness sends.
pub const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
/// The register's NV index.
pub const NV_INDEX: u32 = 0x0140_0a71;

struct Fixture {
    ak: EcKey<Private>,
    record: Enrollment,
}

fn tpm2b(v: &mut Vec<u8>, b: &[u8]) {
    v.extend_from_slice(&(b.len() as u16).to_be_bytes());
    v.extend_from_slice(b);
}

fn ak_public(key: &EcKey<Private>) -> Vec<u8> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let mut ctx = BigNumContext::new().unwrap();
    let mut x = openssl::bn::BigNum::new().unwrap();
    let mut y = openssl::bn::BigNum::new().unwrap();
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let mut v = Vec::new();
    v.extend_from_slice(&wire::ALG_ECC.to_be_bytes());
    v.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    let attrs =
        oa::FIXED_TPM | oa::FIXED_PARENT | oa::SENSITIVE_DATA_ORIGIN | oa::RESTRICTED | oa::SIGN;
    v.extend_from_slice(&attrs.to_be_bytes());
    tpm2b(&mut v, &[]);
    v.extend_from_slice(&wire::ALG_NULL.to_be_bytes()); // symmetric
    v.extend_from_slice(&wire::ALG_ECDSA.to_be_bytes()); // scheme
    v.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    v.extend_from_slice(&wire::ECC_NIST_P256.to_be_bytes());
    v.extend_from_slice(&wire::ALG_NULL.to_be_bytes()); // kdf
    tpm2b(&mut v, &x.to_vec_padded(32).unwrap());
    tpm2b(&mut v, &y.to_vec_padded(32).unwrap());
    v
}

/// The register as hearth-attestd defines it since decision 052.
pub fn register() -> NvPublic {
    NvPublic {
        index: NV_INDEX,
        name_alg: wire::ALG_SHA256,
        attributes: nv_attr::TPM_NT_EXTEND
            | nv_attr::AUTHWRITE
            | (1 << 18) // AUTHREAD
            | nv_attr::POLICY_DELETE
            | nv_attr::PLATFORMCREATE,
        auth_policy: wire::unsatisfiable_policy().to_vec(),
        data_size: 32,
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ak = EcKey::generate(&group).unwrap();
        let ak_pub = ak_public(&ak);
        let record = Enrollment {
            host: "hearth.fuzz:8443".into(),
            root_ca_fingerprint: String::new(),
            root_ca_pem: String::new(),
            ek_public: String::new(),
            ek_cert_pem: None,
            ek_cert_checked: false,
            ek_check: EkCheck::default(),
            ak_name: hex::encode(wire::sha256_name(&ak_pub)),
            ak_public: hex::encode(&ak_pub),
            nv_public: hex::encode(register().marshal()),
            enrolled_at: 0,
        };
        Fixture { ak, record }
    })
}

fn sign(key: &EcKey<Private>, attest: &[u8]) -> String {
    let sig = EcdsaSig::sign(&sha256(attest), key).unwrap();
    let mut v = Vec::new();
    v.extend_from_slice(&wire::ALG_ECDSA.to_be_bytes());
    v.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    tpm2b(&mut v, &sig.r().to_vec());
    tpm2b(&mut v, &sig.s().to_vec());
    hex::encode(v)
}

fn attest_head(typ: u16, v: &mut Vec<u8>) {
    v.extend_from_slice(&wire::GENERATED_VALUE.to_be_bytes());
    v.extend_from_slice(&typ.to_be_bytes());
    tpm2b(v, b"\x00\x0bsigner");
    tpm2b(v, &NONCE);
    v.extend_from_slice(&1_000_000u64.to_be_bytes()); // clock
    v.extend_from_slice(&3u32.to_be_bytes()); // resets
    v.extend_from_slice(&0u32.to_be_bytes()); // restarts
    v.push(1); // safe
    v.extend_from_slice(&0x2023_0001u64.to_be_bytes()); // firmware
}

/// A consistent answer (the seed of the corpus): two measurements and one
/// executed action, signatures left for the harness to make.
pub fn seed_response() -> QuoteResponse {
    let c = |kind, name: &str| Content {
        kind,
        name: name.into(),
        sha256: hex::encode(sha256(name.as_bytes())),
    };
    let events = vec![
        make_event(0, NV_INDEX, c(Kind::Binary, "/usr/bin/hearth-intentd")),
        make_event(1, NV_INDEX, c(Kind::PlaybookCatalog, "catalog")),
        make_event(2, NV_INDEX, c(Kind::Action, "net.allow@3")),
    ];
    let value = eventlog::replay(&events, NV_INDEX).unwrap().unwrap();
    let pcrs: BTreeMap<u8, [u8; 32]> = BOOT_PCRS.iter().map(|&p| (p, [p; 32])).collect();
    let mut q = Vec::new();
    attest_head(wire::ST_ATTEST_QUOTE, &mut q);
    q.extend_from_slice(&1u32.to_be_bytes());
    q.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
    let map = wire::pcr_bitmap(&BOOT_PCRS);
    q.push(map.len() as u8);
    q.extend_from_slice(&map);
    tpm2b(&mut q, &pcr_composite_digest(&pcrs));
    let mut n = Vec::new();
    attest_head(wire::ST_ATTEST_NV, &mut n);
    // A written index: its name covers TPMA_NV_WRITTEN.
    let mut nv = register();
    nv.attributes |= nv_attr::WRITTEN;
    tpm2b(&mut n, &wire::sha256_name(&nv.marshal()));
    n.extend_from_slice(&0u16.to_be_bytes());
    tpm2b(&mut n, &value);
    QuoteResponse {
        quote: Signed {
            attest: hex::encode(q),
            signature: String::new(),
        },
        pcrs: pcrs.iter().map(|(k, v)| (*k, hex::encode(v))).collect(),
        nv_certify: Signed {
            attest: hex::encode(n),
            signature: String::new(),
        },
        nv_public: hex::encode(nv.marshal()),
        event_log: events,
        firmware_event_log: None,
    }
}

fn attest_of(s: &Signed) -> Option<Attest> {
    Attest::parse(&hex::decode(&s.attest).ok()?).ok()
}

/// The target.
pub fn run(data: &[u8]) {
    trusted(data);
}

/// The target, saying whether the answer was trusted.
pub fn trusted(data: &[u8]) -> bool {
    let Some((&mode, json)) = data.split_first() else {
        return false;
    };
    let Ok(mut resp) = serde_json::from_slice::<QuoteResponse>(json) else {
        return false;
    };
    let f = fixture();
    if mode % 2 == 1 {
        for s in [&mut resp.quote, &mut resp.nv_certify] {
            if let Ok(bytes) = hex::decode(&s.attest) {
                s.signature = sign(&f.ak, &bytes);
            }
        }
    }
    let report = check_quote(&f.record, &NONCE, &resp, None);
    if !report.trusted {
        return false;
    }
    assert!(report.checks.iter().all(|c| c.ok));
    let q = attest_of(&resp.quote).expect("trusted, but the quote does not parse");
    assert_eq!(q.extra_data, NONCE, "trusted with another nonce");
    let n = attest_of(&resp.nv_certify).expect("trusted, but the certification does not parse");
    assert_eq!(n.extra_data, NONCE, "trusted with another nonce");
    assert!(eventlog::replay(&resp.event_log, NV_INDEX).is_ok());
    assert_eq!(
        report.pcrs.keys().copied().collect::<Vec<_>>(),
        BOOT_PCRS.to_vec()
    );
    let golden = golden_from_report(&report);
    let again = check_quote(&f.record, &NONCE, &resp, Some(&golden));
    let failed: Vec<_> = again.checks.iter().filter(|c| !c.ok).collect();
    assert!(again.trusted, "its own golden policy fails it: {failed:?}");
    for a in &report.actions {
        let id = a.rsplit_once('@').map_or(a.as_str(), |(id, _)| id);
        let mut g = golden.clone();
        g.actions.forbidden = vec![id.to_string()];
        let r = check_quote(&f.record, &NONCE, &resp, Some(&g));
        assert!(
            !r.trusted,
            "action {a} executed, {id} forbidden, still trusted"
        );
    }
    true
}

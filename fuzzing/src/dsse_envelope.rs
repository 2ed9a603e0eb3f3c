//! `dsse_envelope`: DSSE envelopes through [`TrustStore::verify`], the path
//! every installed or loaded playbook takes.
//!
//! Input: a mode byte, then bytes.
//! * Even mode: the bytes are an envelope file. Property: no panic, and
//!   nothing is accepted (the trust anchor is made at start; no input can
//!   carry a signature of its key).
//! * Odd mode: the bytes are a payload, signed with a signer the anchor
//!   certifies. Properties: the envelope is accepted exactly when the
//!   playbook parser accepts the payload, and yields that playbook; the
//!   same envelope with its payload or payload type changed (the bytes of
//!   the mode's second byte pick how) is refused.

use std::path::Path;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hearth_playbook::dsse::{self, KeyFileSigner, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, SignerOptions};
use hearth_playbook::{Playbook, RefusalKind, TrustStore};
use rustls_pki_types::UnixTime;

struct Fixture {
    trust: TrustStore,
    signer: KeyFileSigner,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = Authority::new_root("fuzz root", 1).unwrap();
        let issued = root
            .issue_signer(&SignerOptions::valid_for("fuzz signer", 1))
            .unwrap();
        let signer = KeyFileSigner::new(
            issued.key_pem.as_bytes(),
            cert_pem(&issued.cert_der).as_bytes(),
        )
        .unwrap();
        let trust = TrustStore::from_der(std::slice::from_ref(&root.cert_der), &[]).unwrap();
        Fixture { trust, signer }
    })
}

// Not `<id>.dsse.json`: the file-name check is not what is fuzzed here.
const FILE: &str = "fuzz-input.json";

/// The target.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let now = UnixTime::now();
    if mode % 2 == 0 {
        if let Ok(v) = f.trust.verify(Path::new(FILE), rest, now) {
            panic!(
                "an envelope nobody signed was accepted: {}",
                v.playbook.spec.id
            );
        }
        return;
    }
    let env = dsse::sign(rest, PAYLOAD_TYPE, &f.signer).unwrap();
    let bytes = serde_json::to_vec(&env).unwrap();
    let verified = f.trust.verify(Path::new(FILE), &bytes, now);
    match (verified, Playbook::parse(rest)) {
        (Ok(v), Ok(p)) => {
            assert_eq!(v.playbook.spec, p.spec);
            assert_eq!(v.playbook.digest, p.digest);
            crate::playbook_toml::check_accepted(rest, &v.playbook);
        }
        (Err(r), Err(_)) => assert_eq!(r.kind, RefusalKind::BadPlaybook, "{r}"),
        (Ok(v), Err(e)) => panic!(
            "verified {} though the parser refuses it: {e}",
            v.playbook.spec.id
        ),
        (Err(r), Ok(_)) => panic!("a validly signed playbook was refused: {r}"),
    }
    // Tampering: the signature binds the payload and its type.
    let how = rest.first().copied().unwrap_or(0);
    let mut t = env.clone();
    match how % 3 {
        0 => {
            let mut p = rest.to_vec();
            match p.get_mut(usize::from(how) % rest.len().max(1)) {
                Some(b) => *b ^= 0x01,
                None => p.push(b'\n'),
            }
            t.payload = B64.encode(&p);
        }
        1 => {
            let mut p = rest.to_vec();
            p.extend_from_slice(b"\n# appended\n");
            t.payload = B64.encode(&p);
        }
        _ => t.payload_type = format!("{PAYLOAD_TYPE}+x"),
    }
    let tampered = serde_json::to_vec(&t).unwrap();
    if let Ok(v) = f.trust.verify(Path::new(FILE), &tampered, now) {
        panic!("a tampered envelope was accepted: {}", v.playbook.spec.id);
    }
}

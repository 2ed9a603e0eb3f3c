//! `csr`: hearth-pkid's CSR parser ([`hearth_pkid::csr::parse`]), which
//! reads what any caller allowed to ask for a certificate sends.
//!
//! Input: a selector byte, then
//! * 0: PEM text as a caller sends it;
//! * 1: DER, wrapped here in a PEM block (so that mutations reach the
//!   PKCS#10 parser and the key checks, not the base64);
//! * 2: names, one a line, put into a CSR signed with a P-256 key.
//!
//! Properties: no panic; an accepted request names 1 to 32 distinct names,
//! each a valid certificate name, with an allowed key type; in mode 2 the
//! request is accepted exactly when every name is one pkid accepts directly
//! ([`SanName::parse`]) and there are at most 32, and it yields those names.

use std::sync::OnceLock;

use hearth_pkid::csr::{parse, CsrRequest, SanName};

/// The size limit the harness gives the parser (hearth-pkid's default).
pub const MAX_CSR: usize = 16 * 1024;

fn key() -> &'static rcgen::KeyPair {
    static K: OnceLock<rcgen::KeyPair> = OnceLock::new();
    K.get_or_init(|| rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap())
}

fn check_accepted(req: &CsrRequest) {
    assert!(
        (1..=32).contains(&req.names.len()),
        "{} names",
        req.names.len()
    );
    for (i, n) in req.names.iter().enumerate() {
        assert!(!req.names[..i].contains(n), "{n} twice");
        let shown = n.to_string();
        assert_eq!(
            SanName::parse("name", &shown).ok().as_ref(),
            Some(n),
            "{shown:?}"
        );
        if let SanName::Dns(d) = n {
            assert!(!d.as_str().contains('_'), "{d}");
        }
    }
    assert!(
        ["ec-p256", "ec-p384", "ed25519"].contains(&req.key.kind.as_str())
            || (req.key.is_rsa && req.key.kind.starts_with("rsa-")),
        "{}",
        req.key.kind
    );
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(req) = parse(text, MAX_CSR) {
                    check_accepted(&req);
                }
            }
        }
        1 => {
            let text = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", rest.to_vec()));
            if let Ok(req) = parse(&text, MAX_CSR) {
                check_accepted(&req);
            }
        }
        _ => names_roundtrip(rest),
    }
}

fn names_roundtrip(rest: &[u8]) {
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let names: Vec<String> = text.lines().take(40).map(str::to_string).collect();
    let Ok(mut params) = rcgen::CertificateParams::new(names.clone()) else {
        return; // not encodable in a CSR (not IA5 text)
    };
    params.distinguished_name = rcgen::DistinguishedName::new();
    let Ok(csr) = params.serialize_request(key()) else {
        return;
    };
    let pem_text = csr.pem().unwrap();
    let got = parse(&pem_text, usize::MAX);
    let mut expected: Vec<SanName> = Vec::new();
    let mut valid = !names.is_empty();
    for n in &names {
        match SanName::parse("name", n) {
            Ok(s) if !expected.contains(&s) => expected.push(s),
            Ok(_) => {}
            Err(_) => valid = false,
        }
    }
    valid &= expected.len() <= 32;
    match got {
        Ok(req) => {
            check_accepted(&req);
            assert!(
                valid,
                "accepted {names:?}, which pkid refuses when asked directly"
            );
            assert_eq!(req.names, expected, "{names:?}");
            assert_eq!(req.key.kind, "ec-p256");
        }
        Err(e) => assert!(
            !valid,
            "{names:?}: refused ({e}) though every name is valid"
        ),
    }
}

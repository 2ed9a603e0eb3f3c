//! Signed playbooks end to end with real keys and certificates: every
//! refusal reason, and anti-rollback across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::path::{Path, PathBuf};

use hearth_playbook::catalog;
use hearth_playbook::dsse::{self, KeyFileSigner, Signer, LANGUAGE_PAYLOAD_TYPE, PAYLOAD_TYPE};
use hearth_playbook::keygen::{cert_pem, Authority, Issued, SignerOptions};
use hearth_playbook::{RefusalKind, RollbackState, TrustConfig, TrustStore};
use rustls_pki_types::UnixTime;
use time::{Duration, OffsetDateTime};

const ADD_RECORD: &str = include_str!("../../catalog/dns.add_record.toml");

fn signer_for(issued: &Issued, chain: &[&[u8]]) -> KeyFileSigner {
    let mut pem = cert_pem(&issued.cert_der);
    for c in chain {
        pem.push_str(&cert_pem(c));
    }
    KeyFileSigner::new(issued.key_pem.as_bytes(), pem.as_bytes()).unwrap()
}

fn write_env(dir: &Path, name: &str, payload: &[u8], s: &dyn Signer) -> PathBuf {
    let env = dsse::sign(payload, PAYLOAD_TYPE, s).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    p
}

struct Fixture {
    dir: tempfile::TempDir,
    root: Authority,
    trust: TrustStore,
    good: KeyFileSigner,
}

fn fixture() -> Fixture {
    let root = Authority::new_root("test vendor root", 1).unwrap();
    let good = root
        .issue_signer(&SignerOptions::valid_for("signer", 30))
        .unwrap();
    let trust = TrustStore::from_der(std::slice::from_ref(&root.cert_der), &[]).unwrap();
    Fixture {
        dir: tempfile::tempdir().unwrap(),
        good: signer_for(&good, &[]),
        root,
        trust,
    }
}

fn kind(trust: &TrustStore, file: &Path) -> RefusalKind {
    let state = RollbackState::in_memory();
    let r = catalog::verify_file(trust, &state, file, UnixTime::now()).unwrap_err();
    assert!(
        r.to_string().contains(&file.display().to_string()),
        "the reason names the file: {r}"
    );
    r.kind
}

#[test]
fn a_validly_signed_playbook_is_accepted() {
    let f = fixture();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let state = RollbackState::in_memory();
    let inst = catalog::verify_file(&f.trust, &state, &p, UnixTime::now()).unwrap();
    assert_eq!(inst.playbook.spec.id, "dns.add_record");
    assert_eq!(
        inst.playbook.digest,
        dsse::sha256_hex(ADD_RECORD.as_bytes())
    );
}

#[test]
fn a_chain_through_an_intermediate_is_accepted() {
    let f = fixture();
    let mid = f.root.new_intermediate("appliance signing CA").unwrap();
    let s = mid
        .issue_signer(&SignerOptions::valid_for("admin signer", 30))
        .unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[&mid.cert_der]),
    );
    let state = RollbackState::in_memory();
    let r = catalog::verify_file(&f.trust, &state, &p, UnixTime::now());
    assert!(r.is_ok(), "{:?}", r.err());
}

#[test]
fn unsigned_playbooks_are_refused() {
    let f = fixture();
    let bare = f.dir.path().join("dns.add_record.toml");
    std::fs::write(&bare, ADD_RECORD).unwrap();
    assert_eq!(kind(&f.trust, &bare), RefusalKind::Unsigned);
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let mut env: dsse::Envelope = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    env.signatures.clear();
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    assert_eq!(kind(&f.trust, &p), RefusalKind::Unsigned);
}

#[test]
fn a_tampered_payload_is_refused() {
    let f = fixture();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let mut env: dsse::Envelope = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let evil = ADD_RECORD.replace("risk = \"change\"", "risk = \"read\"");
    use base64::Engine as _;
    env.payload = base64::engine::general_purpose::STANDARD.encode(evil);
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    assert_eq!(kind(&f.trust, &p), RefusalKind::Tampered);
    // Changing the payload type breaks the signature too (PAE covers it).
    let mut env: dsse::Envelope = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    env.payload_type = "text/plain".into();
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    assert_eq!(kind(&f.trust, &p), RefusalKind::WrongPayloadType);
}

#[test]
fn a_signature_by_another_key_under_a_trusted_certificate_is_refused() {
    let f = fixture();
    let other = f
        .root
        .issue_signer(&SignerOptions::valid_for("other", 30))
        .unwrap();
    let good_chain = f.good.chain().to_vec();
    // The other key signs, but the envelope carries the good signer's chain.
    struct Mixed(KeyFileSigner, Vec<Vec<u8>>);
    impl Signer for Mixed {
        fn sign(&self, m: &[u8]) -> Result<Vec<u8>, dsse::SignError> {
            self.0.sign(m)
        }
        fn chain(&self) -> &[Vec<u8>] {
            &self.1
        }
    }
    let mixed = Mixed(signer_for(&other, &[]), good_chain);
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &mixed,
    );
    assert_eq!(kind(&f.trust, &p), RefusalKind::Tampered);
}

#[test]
fn a_signer_from_an_untrusted_root_is_refused() {
    let f = fixture();
    let stranger = Authority::new_root("someone else", 1).unwrap();
    let s = stranger
        .issue_signer(&SignerOptions::valid_for("evil", 30))
        .unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[&stranger.cert_der]),
    );
    let r = catalog::verify_file(&f.trust, &RollbackState::in_memory(), &p, UnixTime::now())
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::UntrustedSigner, "{r}");
}

#[test]
fn an_expired_signer_is_refused() {
    let f = fixture();
    let now = OffsetDateTime::now_utc();
    let s = f
        .root
        .issue_signer(&SignerOptions {
            common_name: "old".into(),
            not_before: now - Duration::days(60),
            not_after: now - Duration::days(1),
            code_signing: true,
        })
        .unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[]),
    );
    assert_eq!(kind(&f.trust, &p), RefusalKind::Expired);
}

#[test]
fn a_signer_without_code_signing_is_refused() {
    let f = fixture();
    let mut o = SignerOptions::valid_for("tls server", 30);
    o.code_signing = false;
    let s = f.root.issue_signer(&o).unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[]),
    );
    assert_eq!(kind(&f.trust, &p), RefusalKind::NotCodeSigning);
}

#[test]
fn a_revoked_signer_is_refused_and_others_still_pass() {
    let f = fixture();
    let s = f
        .root
        .issue_signer(&SignerOptions::valid_for("leaked", 30))
        .unwrap();
    let crl = f.root.crl(2, std::slice::from_ref(&s.serial)).unwrap();
    let trust = TrustStore::from_der(std::slice::from_ref(&f.root.cert_der), &[crl]).unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[]),
    );
    assert_eq!(kind(&trust, &p), RefusalKind::Revoked);
    let q = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let state = RollbackState::in_memory();
    assert!(catalog::verify_file(&trust, &state, &q, UnixTime::now()).is_ok());
}

#[test]
fn a_file_named_after_another_id_is_refused() {
    let f = fixture();
    let p = write_env(
        f.dir.path(),
        "net.allow.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    assert_eq!(kind(&f.trust, &p), RefusalKind::WrongName);
}

#[test]
fn an_older_version_never_replaces_a_newer_one_across_restarts() {
    let f = fixture();
    let catalog_dir = f.dir.path().join("catalog");
    let incoming = f.dir.path().join("incoming");
    std::fs::create_dir_all(&catalog_dir).unwrap();
    std::fs::create_dir_all(&incoming).unwrap();
    let state_file = f.dir.path().join("rollback.json");
    let v2 = ADD_RECORD.replace("version = 1", "version = 2");
    let new = write_env(
        &incoming,
        "dns.add_record.dsse.json",
        v2.as_bytes(),
        &f.good,
    );
    let mut state = RollbackState::load(&state_file).unwrap();
    catalog::install(&f.trust, &mut state, &new, &catalog_dir, UnixTime::now()).unwrap();
    drop(state);

    // After a restart, a validly signed v1 is refused and the installed v2 stays.
    let mut state = RollbackState::load(&state_file).unwrap();
    let old = write_env(
        &incoming,
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let r =
        catalog::install(&f.trust, &mut state, &old, &catalog_dir, UnixTime::now()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::RolledBack);
    assert!(r.reason.contains("older"), "{r}");
    let loaded = catalog::load_dir(&f.trust, &mut state, &catalog_dir, UnixTime::now()).unwrap();
    assert_eq!(loaded.playbooks["dns.add_record"].playbook.spec.version, 2);

    // Copying v1 into the catalog by hand is refused at load.
    std::fs::copy(&old, catalog_dir.join("dns.add_record.dsse.json")).unwrap();
    let loaded = catalog::load_dir(&f.trust, &mut state, &catalog_dir, UnixTime::now()).unwrap();
    assert!(loaded.playbooks.is_empty());
    assert_eq!(loaded.refused[0].kind, RefusalKind::RolledBack);

    // Same version, other content: refused too.
    let v2b = v2.replace("Add a DNS address record", "Add an address record");
    let other = write_env(
        &incoming,
        "dns.add_record.dsse.json",
        v2b.as_bytes(),
        &f.good,
    );
    let r =
        catalog::install(&f.trust, &mut state, &other, &catalog_dir, UnixTime::now()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::RolledBack);
}

#[test]
fn loading_a_directory_refuses_bad_files_and_keeps_good_ones() {
    let f = fixture();
    let d = f.dir.path();
    write_env(
        d,
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    std::fs::write(d.join("net.allow.toml"), "id = \"net.allow\"").unwrap();
    std::fs::write(d.join("net.show.dsse.json"), "{not json").unwrap();
    let mut state = RollbackState::in_memory();
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.playbooks.len(), 1);
    let kinds: Vec<_> = loaded.refused.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![RefusalKind::Unsigned, RefusalKind::Malformed]);
}

#[test]
fn the_appliance_ca_and_its_crl_count_once_they_exist() {
    let f = fixture();
    let appliance = Authority::new_root("appliance root", 1).unwrap();
    let issuing = appliance.new_intermediate("appliance issuing").unwrap();
    let s = issuing
        .issue_signer(&SignerOptions::valid_for("playbook-signer.home.arpa", 30))
        .unwrap();
    let p = write_env(
        f.dir.path(),
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &signer_for(&s, &[&issuing.cert_der]),
    );
    let vendor = f.dir.path().join("vendor.pem");
    std::fs::write(&vendor, cert_pem(&f.root.cert_der)).unwrap();
    let ca = f.dir.path().join("ca/root.pem");
    let crl = f.dir.path().join("ca/crl.pem");
    let cfg = TrustConfig {
        vendor_roots: vec![vendor],
        appliance_ca: Some(ca.clone()),
        appliance_crl: Some(crl.clone()),
        ..Default::default()
    };
    // No appliance CA yet: only the vendor root is trusted.
    let trust = TrustStore::load(&cfg).unwrap();
    assert_eq!(kind(&trust, &p), RefusalKind::UntrustedSigner);
    // hearth-pkid made its CA: its signer is trusted.
    std::fs::create_dir_all(ca.parent().unwrap()).unwrap();
    std::fs::write(&ca, cert_pem(&appliance.cert_der)).unwrap();
    let trust = TrustStore::load(&cfg).unwrap();
    let state = RollbackState::in_memory();
    assert!(catalog::verify_file(&trust, &state, &p, UnixTime::now()).is_ok());
    // The issuing CA revoked the signer: refused.
    let list = issuing.crl(2, std::slice::from_ref(&s.serial)).unwrap();
    std::fs::write(&crl, hearth_playbook::keygen::crl_pem(&list)).unwrap();
    let trust = TrustStore::load(&cfg).unwrap();
    assert_eq!(kind(&trust, &p), RefusalKind::Revoked);
    // An unreadable CRL, once configured and present, stops loading.
    std::fs::write(&crl, "not a CRL").unwrap();
    assert!(TrustStore::load(&cfg).is_err());
}

const LANGUAGE: &str = include_str!("../../catalog/language/en.toml");

fn write_language(dir: &Path, name: &str, payload: &[u8], s: &dyn Signer) -> PathBuf {
    let env = dsse::sign(payload, LANGUAGE_PAYLOAD_TYPE, s).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    p
}

#[test]
fn the_language_file_is_signed_and_loaded_apart_from_the_playbooks() {
    let f = fixture();
    let d = f.dir.path();
    write_env(
        d,
        "dns.add_record.dsse.json",
        ADD_RECORD.as_bytes(),
        &f.good,
    );
    let p = write_language(d, catalog::LANGUAGE_FILE, LANGUAGE.as_bytes(), &f.good);
    let l = catalog::verify_language_file(&f.trust, &p, UnixTime::now()).unwrap();
    assert_eq!(l.text, LANGUAGE);
    assert_eq!(l.digest, dsse::sha256_hex(LANGUAGE.as_bytes()));
    let mut state = RollbackState::in_memory();
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert!(loaded.refused.is_empty(), "{:?}", loaded.refused);
    assert_eq!(
        loaded.playbooks.keys().collect::<Vec<_>>(),
        vec!["dns.add_record"]
    );
    assert_eq!(loaded.language, Some(l));
    // Not a playbook: checked as one, it is refused by its payload type.
    let r = catalog::verify_file(&f.trust, &state, &p, UnixTime::now()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::WrongPayloadType);
    assert!(r.reason.contains("language file"), "{r}");
}

#[test]
fn a_tampered_or_misplaced_language_file_is_refused() {
    let f = fixture();
    let d = f.dir.path();
    let p = write_language(d, catalog::LANGUAGE_FILE, LANGUAGE.as_bytes(), &f.good);
    // Other words under the same signature.
    let mut env: dsse::Envelope = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let other = LANGUAGE.replacen("week", "wek", 1);
    assert_ne!(other, LANGUAGE);
    env.payload = base64_encode(other.as_bytes());
    std::fs::write(&p, serde_json::to_vec(&env).unwrap()).unwrap();
    let mut state = RollbackState::in_memory();
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.language, None);
    assert_eq!(loaded.refused.len(), 1);
    let r = &loaded.refused[0];
    assert_eq!(r.kind, RefusalKind::Tampered);
    assert!(r.to_string().contains(catalog::LANGUAGE_FILE), "{r}");

    // Signed by a signer outside the trust anchors.
    let stranger = Authority::new_root("stranger", 1).unwrap();
    let s = stranger
        .issue_signer(&SignerOptions::valid_for("s", 30))
        .unwrap();
    write_language(
        d,
        catalog::LANGUAGE_FILE,
        LANGUAGE.as_bytes(),
        &signer_for(&s, &[]),
    );
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.language, None);
    assert_eq!(loaded.refused[0].kind, RefusalKind::UntrustedSigner);

    // A playbook envelope under the language file's name.
    write_env(d, catalog::LANGUAGE_FILE, ADD_RECORD.as_bytes(), &f.good);
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.refused[0].kind, RefusalKind::WrongPayloadType);
    assert!(loaded.playbooks.is_empty());

    // Signed, but not TOML.
    write_language(d, catalog::LANGUAGE_FILE, b"[numbers", &f.good);
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.refused[0].kind, RefusalKind::BadLanguage);

    // The language file under a playbook's name is no playbook.
    std::fs::remove_file(d.join(catalog::LANGUAGE_FILE)).unwrap();
    write_language(d, "net.show.dsse.json", LANGUAGE.as_bytes(), &f.good);
    let loaded = catalog::load_dir(&f.trust, &mut state, d, UnixTime::now()).unwrap();
    assert_eq!(loaded.language, None);
    assert_eq!(loaded.refused[0].kind, RefusalKind::WrongPayloadType);
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

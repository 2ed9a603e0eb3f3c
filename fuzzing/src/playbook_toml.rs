//! `playbook_toml`: the playbook file parser (the payload of every signed
//! envelope, and what `hearth-playbook check` reads).
//!
//! Properties: no panic; an accepted playbook has at least one step, every
//! call is an allow-listed method with one template per argument, no step
//! does more than the playbook's declared risk, a state-changing step has an
//! undo or is the last and irreversible, the digest is the SHA-256 of the
//! bytes, and parsing is deterministic.

use hearth_common::spec::Risk;
use hearth_playbook::{methods, Playbook};
use sha2::{Digest, Sha256};

/// The invariants every accepted playbook meets.
pub fn check_accepted(bytes: &[u8], pb: &Playbook) {
    assert_eq!(pb.digest, hex::encode(Sha256::digest(bytes)));
    assert!(!pb.steps.is_empty(), "a playbook without steps");
    let last = pb.steps.len() - 1;
    for (i, step) in pb.steps.iter().enumerate() {
        let m = step.call.method;
        let listed = methods::lookup(m.key).expect("a call outside the allow-list");
        assert!(
            std::ptr::eq(listed, m),
            "{}: not the allow-list's entry",
            m.key
        );
        assert_eq!(step.call.args.len(), m.args.len(), "{}", m.key);
        assert!(
            m.effect <= pb.spec.risk,
            "{}: more than the declared risk",
            m.key
        );
        if let Some(u) = &step.undo {
            assert!(methods::lookup(u.method.key).is_some());
            assert_eq!(u.args.len(), u.method.args.len());
            assert!(!step.irreversible);
            assert!(m.effect != Risk::Read);
        }
        if m.effect != Risk::Read && step.undo.is_none() {
            assert!(
                step.irreversible && i == last,
                "step {i}: no undo, not last irreversible"
            );
        }
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Ok(pb) = Playbook::parse(data) else {
        return;
    };
    check_accepted(data, &pb);
    let again = Playbook::parse(data).expect("accepted once, refused the second time");
    assert_eq!(again.spec, pb.spec);
    assert_eq!(again.digest, pb.digest);
}

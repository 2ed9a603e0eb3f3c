//! `structured_intent`: intentd's structured intent (`AskStructured`: a
//! playbook id and a JSON object of parameters), validated and rendered by
//! the same [`Playbook::plan`] the gate calls, against the shipped catalog.
//!
//! Input: a byte choosing the playbook, then the params JSON. Properties:
//! no panic; accepted parameters are canonical (planning them again gives
//! the same parameters and the same calls); every rendered argument has the
//! allow-listed method's D-Bus type and fits it; a new domain's name is not
//! an existing domain and an existing domain's name is one.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hearth_common::spec::{Context, ParamKind};
use hearth_common::types::DomainId;
use hearth_playbook::methods::ArgType;
use hearth_playbook::{ArgValue, Playbook};
use serde_json::Value;

/// The shipped catalog's playbook files.
pub const CATALOG: &[(&str, &str)] = &[
    (
        "attest.status",
        include_str!("../../catalog/attest.status.toml"),
    ),
    (
        "dns.add_alias",
        include_str!("../../catalog/dns.add_alias.toml"),
    ),
    (
        "dns.add_record",
        include_str!("../../catalog/dns.add_record.toml"),
    ),
    (
        "dns.list_records",
        include_str!("../../catalog/dns.list_records.toml"),
    ),
    (
        "dns.remove_record",
        include_str!("../../catalog/dns.remove_record.toml"),
    ),
    (
        "dns.update_record",
        include_str!("../../catalog/dns.update_record.toml"),
    ),
    ("net.allow", include_str!("../../catalog/net.allow.toml")),
    (
        "net.create_domain",
        include_str!("../../catalog/net.create_domain.toml"),
    ),
    (
        "net.delete_domain",
        include_str!("../../catalog/net.delete_domain.toml"),
    ),
    ("net.revoke", include_str!("../../catalog/net.revoke.toml")),
    ("net.show", include_str!("../../catalog/net.show.toml")),
    (
        "pki.issue_certificate",
        include_str!("../../catalog/pki.issue_certificate.toml"),
    ),
    (
        "pki.list_certificates",
        include_str!("../../catalog/pki.list_certificates.toml"),
    ),
    (
        "pki.revoke_certificate",
        include_str!("../../catalog/pki.revoke_certificate.toml"),
    ),
];

fn catalog() -> &'static [Playbook] {
    static C: OnceLock<Vec<Playbook>> = OnceLock::new();
    C.get_or_init(|| {
        CATALOG
            .iter()
            .map(|(id, text)| {
                let pb = Playbook::parse(text.as_bytes()).unwrap();
                assert_eq!(pb.spec.id, *id);
                pb
            })
            .collect()
    })
}

fn context() -> Context {
    let d = |s: &str| DomainId::parse(s).unwrap();
    Context {
        domains: vec![d("admin"), d("lan"), d("iot"), d("guest")],
        protected: vec![d("admin")],
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let cat = catalog();
    let pb = &cat[usize::from(which) % cat.len()];
    let Ok(raw) = serde_json::from_slice::<BTreeMap<String, Value>>(json) else {
        return;
    };
    let ctx = context();
    let Ok((params, steps)) = pb.plan(&raw, &ctx) else {
        return;
    };
    let (again, steps_again) = pb
        .plan(&params, &ctx)
        .unwrap_or_else(|e| panic!("{}: canonical parameters refused: {e}", pb.spec.id));
    assert_eq!(again, params, "{}: canonical form not stable", pb.spec.id);
    assert_eq!(
        serde_json::to_value(&steps_again).unwrap(),
        serde_json::to_value(&steps).unwrap(),
        "{}: the same parameters render other calls",
        pb.spec.id
    );
    for p in &pb.spec.params {
        let Some(v) = params.get(&p.name) else {
            assert!(!p.required, "{}: required {} missing", pb.spec.id, p.name);
            continue;
        };
        let name = v.as_str().and_then(|s| DomainId::parse(s).ok());
        match p.kind {
            ParamKind::NewDomain => {
                let d = name.expect("a new domain's name is a domain id");
                assert!(!ctx.domains.contains(&d), "{d} exists already");
            }
            ParamKind::ExistingDomain => {
                let d = name.expect("an existing domain's name is a domain id");
                assert!(ctx.domains.contains(&d), "{d} does not exist");
            }
            ParamKind::Integer { min, max } => {
                let n = v.as_i64().expect("an integer parameter is a number");
                assert!((min..=max).contains(&n), "{}: {n}", p.name);
            }
            _ => {}
        }
    }
    for s in &steps {
        let m = s.call.method;
        assert_eq!(s.call.args.len(), m.args.len(), "{}", m.key);
        for (a, v) in m.args.iter().zip(&s.call.args) {
            match (a.ty, v) {
                (ArgType::Str, ArgValue::Str(_)) => {}
                (ArgType::U16 | ArgType::U32, ArgValue::Num(n)) => {
                    assert!(*n <= a.ty.max(), "{} {}: {n} does not fit", m.key, a.name)
                }
                (t, v) => panic!("{} {}: {v:?} rendered for a {t:?}", m.key, a.name),
            }
        }
    }
}

//! The playbook allow-list (`src/methods.rs`) against the bus contract as
//! the daemons serve it: the introspection XML checked into `docs/dbus/`
//! (recorded from the running daemons and held against them by
//! `tests/tests/introspection.rs`, which also holds the typed proxies of
//! `hearth-common` against the same files).
//!
//! For every allow-listed method, the interface of its service has a method
//! of that member name whose input arguments are the allow-listed ones (same
//! count, same D-Bus types, same names, in order) followed by `b dry_run`
//! when the method takes one, and which returns one string.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;

use hearth_playbook::methods::{Method, METHODS};
use zbus_xml::{ArgDirection, Node};

fn xml_path(interface: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/dbus")
        .join(format!("{interface}.xml"))
}

/// `(type, name)` of each input argument, and the output types, of a member
/// as the checked-in XML describes it; `Err` says why there is none.
#[allow(clippy::type_complexity)]
fn on_bus(m: &Method) -> Result<(Vec<(String, String)>, Vec<String>), String> {
    let interface = m.service.bus_name;
    let path = xml_path(interface);
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let node = Node::from_reader(text.as_bytes())
        .map_err(|e| format!("{}: not introspection XML: {e}", path.display()))?;
    let iface = node
        .interfaces()
        .iter()
        .find(|i| i.name() == interface)
        .ok_or_else(|| format!("{}: no interface {interface}", path.display()))?;
    let method = iface
        .methods()
        .iter()
        .find(|x| x.name() == m.member)
        .ok_or_else(|| format!("{interface} has no method {}", m.member))?;
    let input = method
        .args()
        .iter()
        .filter(|a| a.direction() != Some(ArgDirection::Out))
        .map(|a| (a.ty().to_string(), a.name().unwrap_or("").to_string()))
        .collect();
    let output = method
        .args()
        .iter()
        .filter(|a| a.direction() == Some(ArgDirection::Out))
        .map(|a| a.ty().to_string())
        .collect();
    Ok((input, output))
}

/// What the allow-list says the daemon takes: its arguments, then `b dry_run`.
fn allow_listed(m: &Method) -> Vec<(String, String)> {
    let mut args: Vec<(String, String)> = m
        .args
        .iter()
        .map(|a| (a.ty.signature().to_string(), a.name.to_string()))
        .collect();
    if m.dry_run {
        args.push(("b".into(), "dry_run".into()));
    }
    args
}

fn show(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn every_allow_listed_method_is_on_the_bus_with_the_same_arguments() {
    let mut problems = Vec::new();
    for m in METHODS {
        let (input, output) = match on_bus(m) {
            Ok(x) => x,
            Err(e) => {
                problems.push(format!("{}: {e}", m.key));
                continue;
            }
        };
        let want = allow_listed(m);
        if input != want {
            problems.push(format!(
                "{}: allow-listed as {}({}), the daemon takes {}({})",
                m.key,
                m.member,
                show(&want),
                m.member,
                show(&input)
            ));
        }
        // The signature the gate sends is the one the daemon takes.
        let bus_sig: String = input.iter().map(|(t, _)| t.as_str()).collect();
        if m.signature() != bus_sig {
            problems.push(format!(
                "{}: the gate sends ({}), the daemon takes ({bus_sig})",
                m.key,
                m.signature()
            ));
        }
        if output != ["s"] {
            problems.push(format!(
                "{}: the allow-list expects one string back, the daemon returns ({})",
                m.key,
                output.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "playbook/src/methods.rs and docs/dbus/*.xml disagree:\n{}",
        problems.join("\n")
    );
}

/// The comparison itself fails on a changed method (so the test above can
/// fail): a changed type, a missing trailing dry_run, a renamed member.
#[test]
fn a_changed_method_is_noticed() {
    use hearth_common::spec::Risk;
    use hearth_playbook::methods::{Arg, ArgType};
    let real = METHODS.iter().find(|m| m.key == "net.Allow").unwrap();
    let (input, _) = on_bus(real).unwrap();
    assert_eq!(input, allow_listed(real));

    const PORT_AS_U16: &[Arg] = &[
        Arg {
            name: "from",
            ty: ArgType::Str,
        },
        Arg {
            name: "to",
            ty: ArgType::Str,
        },
        Arg {
            name: "port",
            ty: ArgType::U16,
        },
        Arg {
            name: "protocol",
            ty: ArgType::Str,
        },
    ];
    let changed = Method {
        key: "net.Allow",
        service: real.service,
        member: "Allow",
        args: PORT_AS_U16,
        effect: Risk::Change,
        dry_run: true,
    };
    assert_ne!(on_bus(&changed).unwrap().0, allow_listed(&changed));
    let no_dry_run = Method {
        dry_run: false,
        args: real.args,
        ..changed
    };
    assert_ne!(on_bus(&no_dry_run).unwrap().0, allow_listed(&no_dry_run));
    let renamed = Method {
        member: "AllowAll",
        args: real.args,
        ..no_dry_run
    };
    assert!(on_bus(&renamed).is_err());
}

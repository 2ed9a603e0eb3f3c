//! The allow-list: every daemon method a playbook step may call, in ONE table.
//!
//! A step names a method by its key (`dns.AddRecord`); parsing refuses any
//! other key, so a playbook can express nothing but these calls. Aligning
//! with the daemons' interfaces (docs/dbus/*.md) means editing [`METHODS`]
//! only: the bus name, object path and interface come from
//! [`hearth_common::names`], the member and the argument list from here.
//!
//! Every method returns one string (a JSON document or a plain value); an
//! undo step may use it through `{result}` or `{result.<field>}`.

use hearth_common::names::{self, Service};
use hearth_common::spec::Risk;
use serde::Serialize;

/// The D-Bus type of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ArgType {
    /// `s`: a string. A missing optional parameter renders as `""`.
    Str,
    /// `q`: an unsigned 16-bit number. A missing optional parameter renders as `0`.
    U16,
    /// `u`: an unsigned 32-bit number. A missing optional parameter renders as `0`.
    U32,
}

impl ArgType {
    /// The D-Bus signature character.
    pub fn signature(&self) -> char {
        match self {
            ArgType::Str => 's',
            ArgType::U16 => 'q',
            ArgType::U32 => 'u',
        }
    }

    /// True for the number types.
    pub fn is_numeric(&self) -> bool {
        !matches!(self, ArgType::Str)
    }

    /// Largest value of a number type.
    pub fn max(&self) -> u64 {
        match self {
            ArgType::Str => 0,
            ArgType::U16 => u16::MAX as u64,
            ArgType::U32 => u32::MAX as u64,
        }
    }
}

/// One argument of an allow-listed method, in call order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    /// The name used in a step's `args` table.
    pub name: &'static str,
    /// Its D-Bus type.
    pub ty: ArgType,
}

/// One allow-listed daemon method.
#[derive(Debug, PartialEq, Eq)]
pub struct Method {
    /// The key used in playbooks: `<service short name>.<Member>`.
    pub key: &'static str,
    /// The daemon that serves it.
    pub service: Service,
    /// The D-Bus member name on the service's interface.
    pub member: &'static str,
    /// The arguments, in call order.
    pub args: &'static [Arg],
    /// What calling it may do: a playbook's risk is at least the highest
    /// effect of its steps.
    pub effect: Risk,
    /// The member takes a trailing `b dry_run` after [`Method::args`]: the
    /// gate sends `false` to make the change and `true` to preview it (the
    /// daemon checks everything as for the real call, changes nothing and
    /// returns the same document with `"dry_run": true`).
    pub dry_run: bool,
}

const fn s(name: &'static str) -> Arg {
    Arg {
        name,
        ty: ArgType::Str,
    }
}
const fn u(name: &'static str) -> Arg {
    Arg {
        name,
        ty: ArgType::U32,
    }
}

const fn m(
    key: &'static str,
    service: Service,
    member: &'static str,
    args: &'static [Arg],
    effect: Risk,
) -> Method {
    Method {
        key,
        service,
        member,
        args,
        effect,
        dry_run: false,
    }
}

/// A changing method with a trailing `b dry_run`.
const fn d(
    key: &'static str,
    service: Service,
    member: &'static str,
    args: &'static [Arg],
    effect: Risk,
) -> Method {
    Method {
        key,
        service,
        member,
        args,
        effect,
        dry_run: true,
    }
}

/// THE allow-list. Nothing else can be called by a playbook.
///
/// Aligned with the daemons' documented signatures: docs/dbus/dns.md
/// (hearth-dnsd), docs/dbus/network.md (hearth-netd), docs/dbus/pki.md
/// (hearth-pkid), docs/dbus/attestation.md (hearth-attestd) and
/// docs/dbus/dhcp.md (hearth-dhcpd). Argument
/// names are the daemons' own.
pub const METHODS: &[Method] = &[
    d(
        "dns.AddRecord",
        names::DNS,
        "AddRecord",
        &[s("name"), s("address")],
        Risk::Change,
    ),
    d(
        "dns.AddAlias",
        names::DNS,
        "AddAlias",
        &[s("name"), s("target")],
        Risk::Change,
    ),
    d(
        "dns.Remove",
        names::DNS,
        "Remove",
        &[s("name")],
        Risk::Destructive,
    ),
    d(
        "dns.RemoveRecord",
        names::DNS,
        "RemoveRecord",
        &[s("name"), s("address")],
        Risk::Change,
    ),
    d(
        "dns.Restore",
        names::DNS,
        "Restore",
        &[s("records")],
        Risk::Change,
    ),
    m("dns.List", names::DNS, "List", &[], Risk::Read),
    m(
        "net.ListDomains",
        names::NETWORK,
        "ListDomains",
        &[],
        Risk::Read,
    ),
    m("net.Show", names::NETWORK, "Show", &[], Risk::Read),
    m("net.Matrix", names::NETWORK, "Matrix", &[], Risk::Read),
    d(
        "net.CreateDomain",
        names::NETWORK,
        "CreateDomain",
        &[s("name"), s("subnet")],
        Risk::Change,
    ),
    d(
        "net.DeleteDomain",
        names::NETWORK,
        "DeleteDomain",
        &[s("name")],
        Risk::Destructive,
    ),
    d(
        "net.Allow",
        names::NETWORK,
        "Allow",
        &[s("from"), s("to"), u("port"), s("protocol")],
        Risk::Change,
    ),
    d(
        "net.Revoke",
        names::NETWORK,
        "Revoke",
        &[s("from"), s("to")],
        Risk::Change,
    ),
    m(
        "pki.IssueCertificate",
        names::PKI,
        "IssueCertificate",
        &[s("name"), u("days")],
        Risk::Change,
    ),
    m(
        "pki.RevokeCertificate",
        names::PKI,
        "RevokeCertificate",
        &[s("serial_or_name")],
        Risk::Destructive,
    ),
    m(
        "pki.ListCertificates",
        names::PKI,
        "ListCertificates",
        &[],
        Risk::Read,
    ),
    m(
        "dhcp.ListDevices",
        names::DHCP,
        "ListDevices",
        &[],
        Risk::Read,
    ),
    d(
        "dhcp.Reserve",
        names::DHCP,
        "Reserve",
        &[s("device"), s("address")],
        Risk::Change,
    ),
    d(
        "dhcp.ReleaseReservation",
        names::DHCP,
        "ReleaseReservation",
        &[s("device")],
        Risk::Change,
    ),
    m(
        "attest.Status",
        names::ATTESTATION,
        "Status",
        &[],
        Risk::Read,
    ),
];

/// Looks an allow-listed method up by its key.
pub fn lookup(key: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.key == key)
}

impl Method {
    /// The D-Bus signature of the arguments, e.g. `ssusb` (with the
    /// trailing `b` of a dry-run method).
    pub fn signature(&self) -> String {
        let mut sig: String = self.args.iter().map(|a| a.ty.signature()).collect();
        if self.dry_run {
            sig.push('b');
        }
        sig
    }

    /// Looks an argument up by name.
    pub fn arg(&self, name: &str) -> Option<&'static Arg> {
        self.args.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_match_service_and_member() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(
                m.key,
                format!(
                    "{}.{}",
                    m.key.split('.').next().unwrap_or_default(),
                    m.member
                )
            );
            assert!(
                METHODS[i + 1..].iter().all(|o| o.key != m.key),
                "{} twice",
                m.key
            );
            let prefix = m.key.split('.').next().unwrap_or_default();
            let short = match prefix {
                "dns" => "dns",
                "net" => "network",
                "pki" => "pki",
                "attest" => "attestation",
                "dhcp" => "dhcp",
                other => panic!("unknown prefix {other}"),
            };
            assert_eq!(m.service.short, short, "{}", m.key);
        }
        assert!(lookup("dns.AddRecord").is_some());
        assert!(
            lookup("attest.Measure").is_none(),
            "playbooks cannot measure"
        );
        assert!(lookup("sh.Run").is_none());
        assert_eq!(
            lookup("net.Allow").map(|m| m.signature()),
            Some("ssusb".into())
        );
    }
}

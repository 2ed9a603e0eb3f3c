//! What a change method's answer says, for people and for the gate: one
//! plain line, and whether it changes nothing. Keyed by the allow-listed
//! call (`net.Allow`, `dns.AddRecord`, …) the gate's plans name.

use std::fmt;

use super::{decode, dhcp, dns, network, pki};

/// A change method's answer, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// The one-line rendering ("Opens iot → lan tcp/443. Nothing else
    /// changes.").
    pub line: String,
    /// True when the answer says nothing changes (or would change).
    pub nothing: bool,
}

fn read<T: fmt::Display + serde::de::DeserializeOwned>(
    call: &str,
    text: &str,
    empty: impl Fn(&T) -> bool,
) -> Option<Described> {
    let v: T = decode(call, text).ok()?;
    Some(Described {
        line: v.to_string(),
        nothing: empty(&v),
    })
}

/// The answer of `call` read as its contract type; `None` for a call that
/// is not a change or an answer of another shape.
pub fn change(call: &str, text: &str) -> Option<Described> {
    match call {
        "net.CreateDomain" | "net.DeleteDomain" | "net.Allow" | "net.Revoke" => {
            read(call, text, network::NetChange::is_empty)
        }
        "dns.AddRecord" | "dns.AddAlias" | "dns.Remove" | "dns.RemoveRecord" | "dns.Restore" => {
            read(call, text, dns::ZoneDiff::is_empty)
        }
        "pki.IssueCertificate" => read(call, text, |_: &pki::Issued| false),
        "pki.RevokeCertificate" => read(call, text, pki::CertificateDiff::is_empty),
        "dhcp.Reserve" | "dhcp.ReleaseReservation" => {
            read(call, text, |_: &dhcp::ReservationChange| false)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_network_diff_changes_nothing() {
        let empty = network::NetChange::between(
            network::NetAction::Allow,
            false,
            &network::NetState::default(),
            &network::NetState::default(),
        );
        let text = serde_json::to_string(&empty).unwrap_or_default();
        let d = change("net.Allow", &text).unwrap_or_else(|| panic!("{text}"));
        assert!(d.nothing, "{d:?}");
        assert_eq!(d.line, "Nothing changes.");
        assert!(change("net.Allow", "{\"x\": 1}").is_none(), "another shape");
        assert!(change("net.Show", &text).is_none(), "not a change");
    }
}

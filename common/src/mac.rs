//! A device's hardware (MAC) address, as hearth-dhcpd's inventory, the
//! playbooks and hearthctl write it: six octets, lower-case hex, separated
//! by colons (`aa:bb:cc:00:11:22`). Dashes are accepted on input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::ParseError;

/// A validated 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Parses `s`, naming `field` in the error.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(ParseError::new(
                field,
                s,
                "a MAC address is six hex octets separated by ':' (aa:bb:cc:00:11:22)",
            ));
        }
        let mut octets = [0u8; 6];
        for (o, p) in octets.iter_mut().zip(&parts) {
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseError::new(
                    field,
                    s,
                    format!("{p:?} is not a two-digit hex octet"),
                ));
            }
            *o = u8::from_str_radix(p, 16).map_err(|e| ParseError::new(field, s, e.to_string()))?;
        }
        Ok(MacAddr(octets))
    }

    /// Parses `s` as the field `mac`.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::parse_field("mac", s)
    }

    /// From a packet's hardware address (the first six octets); `None` when
    /// it is shorter.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let six: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(MacAddr(six))
    }

    /// The octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The organisationally unique identifier (first three octets) as
    /// upper-case hex without separators, as `oui.txt` writes it.
    pub fn oui(&self) -> String {
        format!("{:02X}{:02X}{:02X}", self.0[0], self.0[1], self.0[2])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for MacAddr {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonically() {
        let m = MacAddr::parse("AA-bb-CC-00-11-22").unwrap();
        assert_eq!(m.to_string(), "aa:bb:cc:00:11:22");
        assert_eq!(m.oui(), "AABBCC");
        assert_eq!(MacAddr::from_slice(&m.octets()), Some(m));
        for bad in [
            "",
            "aa:bb:cc:00:11",
            "aa:bb:cc:00:11:2",
            "aa:bb:cc:00:11:zz",
            "aa:bb:cc:00:11:22:33",
            "+a:bb:cc:00:11:22",
        ] {
            let e = MacAddr::parse_field("device", bad).unwrap_err();
            assert_eq!(e.field, "device", "{bad}");
        }
    }
}

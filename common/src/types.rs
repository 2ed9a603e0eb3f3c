//! Validated value types, written once for every daemon, the gate and the CLI.
//!
//! Each type parses from text with [`parse_field`](DomainId::parse_field), which
//! names the field and the bad value in its error, and serializes back to the
//! same canonical text. Once a value exists it is valid.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that failed validation: which field, which value, and why.
/// Shown as `invalid FIELD "VALUE": REASON`, or `missing FIELD: REASON`
/// when no value (or an empty one) was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The field (parameter, key, argument) the value was given for.
    pub field: String,
    /// The rejected value, as given (truncated to 80 characters).
    pub value: String,
    /// Why it was rejected.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "missing {}: {}", self.field, self.reason)
        } else {
            write!(
                f,
                "invalid {} {:?}: {}",
                self.field, self.value, self.reason
            )
        }
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    pub(crate) fn new(field: &str, value: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = value.chars().take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        ParseError {
            field: field.to_string(),
            value: shown,
            reason: reason.into(),
        }
    }
}

macro_rules! text_type {
    ($ty:ident, $field:literal) => {
        impl $ty {
            /// Parses `s`, naming the default field in an error.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                Self::parse_field($field, s)
            }
        }
        impl FromStr for $ty {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.to_string()
            }
        }
    };
}

/// A network domain's identifier: `^[a-z][a-z0-9-]{0,11}$`, so that the bridge
/// name `hb-<name>` fits the kernel's 15-character limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainId(String);

impl DomainId {
    /// Longest identifier accepted.
    pub const MAX_LEN: usize = 12;

    /// Parses a domain identifier given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let err = |r: &str| Err(ParseError::new(field, s, r));
        let mut chars = s.chars();
        match chars.next() {
            None => return err("a domain name cannot be empty"),
            Some(c) if !c.is_ascii_lowercase() => {
                return err("a domain name starts with a lower-case letter a-z")
            }
            _ => {}
        }
        if s.len() > Self::MAX_LEN {
            return err("a domain name has at most 12 characters");
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return err("a domain name holds only a-z, 0-9 and '-'");
        }
        Ok(DomainId(s.to_string()))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Linux bridge that carries this domain: `hb-<name>`.
    pub fn bridge_name(&self) -> String {
        format!("hb-{}", self.0)
    }
}
text_type!(DomainId, "domain");

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS name: RFC 1035 labels (letters, digits, hyphens inside; 1 to 63
/// characters each; underscores allowed at a label's start for service
/// labels), at most 253 characters, stored lower-case without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    /// Longest name accepted, without the trailing dot.
    pub const MAX_LEN: usize = 253;

    /// Parses a DNS name given for `field`. One trailing dot is accepted and
    /// dropped; upper case is folded to lower case.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let err = |r: String| Err(ParseError::new(field, s, r));
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if trimmed.is_empty() {
            return err("a DNS name cannot be empty".into());
        }
        if trimmed.len() > Self::MAX_LEN {
            return err(format!(
                "a DNS name has at most {} characters, this one has {}",
                Self::MAX_LEN,
                trimmed.len()
            ));
        }
        let lower = trimmed.to_ascii_lowercase();
        for label in lower.split('.') {
            if label.is_empty() {
                return err("a DNS name cannot hold an empty label (two dots in a row)".into());
            }
            if label.len() > 63 {
                return err(format!("the label {label:?} is longer than 63 characters"));
            }
            let body = label.strip_prefix('_').unwrap_or(label);
            if body.is_empty()
                || !body
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return err(format!(
                    "the label {label:?} may hold only letters, digits and '-'"
                ));
            }
            if body.starts_with('-') || body.ends_with('-') {
                return err(format!("the label {label:?} cannot start or end with '-'"));
            }
        }
        // RFC 3696 §2: a top-level label is never all digits, so that a
        // name cannot be mistaken for an IPv4 address.
        if let Some(last) = lower.rsplit('.').next() {
            if last.chars().all(|c| c.is_ascii_digit()) {
                return err(format!(
                    "the last label {last:?} is all digits: a DNS name cannot read as an IP address"
                ));
            }
        }
        Ok(DnsName(lower))
    }

    /// The name, lower-case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fully qualified form, with the trailing dot.
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// True when `self` is `zone` or lies below it.
    pub fn is_within(&self, zone: &DnsName) -> bool {
        self.0 == zone.0 || self.0.ends_with(&format!(".{}", zone.0))
    }

    /// The labels, left to right.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}
text_type!(DnsName, "name");

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 or IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(IpAddr);

impl Address {
    /// Parses an IPv4 or IPv6 address given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        s.trim()
            .parse::<IpAddr>()
            .map(Address)
            .map_err(|_| ParseError::new(field, s, "not an IPv4 or IPv6 address"))
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// True for IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.0.is_ipv4()
    }
}
text_type!(Address, "address");

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        Address(ip)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An IPv4 address, for fields that accept no IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4(Ipv4Addr);

impl Ipv4 {
    /// Parses an IPv4 address given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        s.trim()
            .parse::<Ipv4Addr>()
            .map(Ipv4)
            .map_err(|_| ParseError::new(field, s, "not an IPv4 address (a.b.c.d)"))
    }
    /// The address.
    pub fn addr(&self) -> Ipv4Addr {
        self.0
    }
}
text_type!(Ipv4, "address");

impl From<Ipv4Addr> for Ipv4 {
    fn from(a: Ipv4Addr) -> Self {
        Ipv4(a)
    }
}

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An IPv6 address, for fields that accept no IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv6(Ipv6Addr);

impl Ipv6 {
    /// Parses an IPv6 address given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        s.trim()
            .parse::<Ipv6Addr>()
            .map(Ipv6)
            .map_err(|_| ParseError::new(field, s, "not an IPv6 address"))
    }
    /// The address.
    pub fn addr(&self) -> Ipv6Addr {
        self.0
    }
}
text_type!(Ipv6, "address");

impl fmt::Display for Ipv6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A network in CIDR notation (IPv4 or IPv6). Host bits must be zero:
/// `192.168.1.0/24` is accepted, `192.168.1.5/24` is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Parses a CIDR given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let net: ipnet::IpNet = s.trim().parse().map_err(|_| {
            ParseError::new(
                field,
                s,
                "not a network in CIDR notation (e.g. 10.20.0.0/24)",
            )
        })?;
        if net.trunc() != net {
            return Err(ParseError::new(
                field,
                s,
                format!("host bits are set; the network is {}", net.trunc()),
            ));
        }
        Ok(Cidr(net))
    }

    /// Parses an IPv4 CIDR given for `field`.
    pub fn parse_v4_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let c = Self::parse_field(field, s)?;
        if !c.is_ipv4() {
            return Err(ParseError::new(field, s, "an IPv4 network is required"));
        }
        Ok(c)
    }

    /// The network an interface address `ip/prefix` lies in (host bits
    /// cleared).
    pub fn network_of(ip: IpAddr, prefix: u8) -> Result<Self, ParseError> {
        ipnet::IpNet::new(ip, prefix)
            .map(|n| Cidr(n.trunc()))
            .map_err(|_| {
                ParseError::new(
                    "prefix",
                    &format!("{ip}/{prefix}"),
                    "the prefix is longer than the address",
                )
            })
    }

    /// The network.
    pub fn net(&self) -> ipnet::IpNet {
        self.0
    }

    /// True for an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, ipnet::IpNet::V4(_))
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// True when the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }

    /// True when `ip` lies in this network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// The first host address (the gateway of a domain), if the network has
    /// room for one.
    pub fn first_host(&self) -> Option<IpAddr> {
        self.0.hosts().next()
    }
}
text_type!(Cidr, "subnet");

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A TCP or UDP port, 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u16")]
pub struct Port(u16);

impl Port {
    /// Parses a port given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| ParseError::new(field, s, "a port is a whole number from 1 to 65535"))?;
        Self::from_number(field, n)
    }

    /// Checks a number given for `field`.
    pub fn from_number(field: &str, n: u32) -> Result<Self, ParseError> {
        match u16::try_from(n) {
            Ok(p) if p >= 1 => Ok(Port(p)),
            _ => Err(ParseError::new(
                field,
                &n.to_string(),
                "a port is a whole number from 1 to 65535",
            )),
        }
    }

    /// The port number.
    pub fn get(&self) -> u16 {
        self.0
    }
}
text_type!(Port, "port");

impl TryFrom<u32> for Port {
    type Error = ParseError;
    fn try_from(n: u32) -> Result<Self, ParseError> {
        Self::from_number("port", n)
    }
}
impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A transport protocol: tcp or udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Parses `tcp` or `udp` (any case) given for `field`.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(ParseError::new(field, s, "the protocol is tcp or udp")),
        }
    }

    /// `tcp` or `udp`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The IP protocol number (6 or 17).
    pub fn number(&self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}
text_type!(Protocol, "protocol");

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_ids() {
        for good in ["a", "lan", "iot", "guest-2", "abcdefghijkl", "a-", "x9"] {
            let d = DomainId::parse(good).unwrap();
            assert_eq!(d.as_str(), good);
            assert!(d.bridge_name().len() <= 15);
        }
        for bad in [
            "",
            "Lan",
            "1lan",
            "-a",
            "abcdefghijklm",
            "la n",
            "lan_1",
            "ü",
            "a.b",
        ] {
            let e = DomainId::parse_field("from", bad).unwrap_err();
            assert_eq!(e.field, "from");
            assert_eq!(e.value, bad);
            assert!(e.to_string().contains("from"), "{e}");
        }
    }

    #[test]
    fn dns_names() {
        let n = DnsName::parse("NAS.Home.Arpa.").unwrap();
        assert_eq!(n.as_str(), "nas.home.arpa");
        assert_eq!(n.fqdn(), "nas.home.arpa.");
        assert!(n.is_within(&DnsName::parse("home.arpa").unwrap()));
        assert!(!n.is_within(&DnsName::parse("me.arpa").unwrap()));
        assert!(n.is_within(&n));
        for good in [
            "a",
            "test.local",
            "x-1.y",
            "_http._tcp.home.arpa",
            "1.2.3.4.in-addr.arpa",
        ] {
            DnsName::parse(good).unwrap();
        }
        let long_label = "a".repeat(64);
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a_b.c",
            "ex!.com",
            long_label.as_str(),
            long_name.as_str(),
            "nas.home.arpa..",
            "10.0.0.5",
            "host.42",
            "7",
        ] {
            let e = DnsName::parse_field("target", bad).unwrap_err();
            assert_eq!(e.field, "target");
        }
        assert_eq!(DnsName::parse(&"a".repeat(63)).unwrap().as_str().len(), 63);
    }

    #[test]
    fn addresses() {
        assert!(Address::parse("192.168.1.20").unwrap().is_ipv4());
        assert!(!Address::parse("fd00::1").unwrap().is_ipv4());
        assert_eq!(Address::parse("FD00::0001").unwrap().to_string(), "fd00::1");
        for bad in [
            "",
            "192.168.1",
            "192.168.1.256",
            "1.2.3.4/24",
            "fd00:::1",
            "nas",
        ] {
            let e = Address::parse(bad).unwrap_err();
            assert_eq!(e.field, "address");
        }
        assert!(Ipv4::parse("10.0.0.1").is_ok());
        assert!(Ipv4::parse("::1").is_err());
        assert!(Ipv6::parse("::1").is_ok());
        assert!(Ipv6::parse("10.0.0.1").is_err());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.20.0.0/24").unwrap();
        assert_eq!(c.first_host().unwrap().to_string(), "10.20.0.1");
        assert!(c.overlaps(&Cidr::parse("10.20.0.0/16").unwrap()));
        assert!(!c.overlaps(&Cidr::parse("10.21.0.0/24").unwrap()));
        assert!(Cidr::parse("fd00:1::/64").is_ok());
        assert!(Cidr::parse_v4_field("subnet", "fd00:1::/64").is_err());
        let ip: IpAddr = "192.168.1.77".parse().unwrap();
        assert_eq!(
            Cidr::network_of(ip, 24).unwrap().to_string(),
            "192.168.1.0/24"
        );
        assert_eq!(
            Cidr::network_of(ip, 32).unwrap().to_string(),
            "192.168.1.77/32"
        );
        assert!(Cidr::network_of(ip, 33).is_err());
        for bad in ["10.20.0.1/24", "10.20.0.0", "10.20.0.0/33", "x/24", ""] {
            let e = Cidr::parse(bad).unwrap_err();
            assert_eq!(e.field, "subnet");
        }
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(Port::parse("443").unwrap().get(), 443);
        assert_eq!(Port::parse("65535").unwrap().get(), 65535);
        for bad in ["0", "65536", "-1", "http", "", "4.5"] {
            assert_eq!(Port::parse(bad).unwrap_err().field, "port");
        }
        assert_eq!(Protocol::parse("TCP").unwrap(), Protocol::Tcp);
        assert_eq!(Protocol::parse("udp").unwrap().number(), 17);
        assert!(Protocol::parse("icmp").is_err());
    }

    #[test]
    fn serde_round_trip_validates() {
        #[derive(Serialize, Deserialize)]
        struct Rule {
            from: DomainId,
            port: Port,
            protocol: Protocol,
            name: DnsName,
        }
        let r: Rule = serde_json::from_str(
            r#"{"from":"iot","port":443,"protocol":"tcp","name":"Nas.Home.Arpa"}"#,
        )
        .unwrap();
        assert_eq!(r.name.as_str(), "nas.home.arpa");
        let back = serde_json::to_string(&r).unwrap();
        assert!(back.contains("\"port\":443"));
        assert!(serde_json::from_str::<Rule>(
            r#"{"from":"IOT","port":443,"protocol":"tcp","name":"a"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<Rule>(
            r#"{"from":"iot","port":0,"protocol":"tcp","name":"a"}"#
        )
        .is_err());
    }
}

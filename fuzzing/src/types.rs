//! `types`: hearth-common's validated value types, as the daemons parse
//! them from D-Bus strings and JSON, and the domain subnet rules.
//!
//! Input: a selector byte, then UTF-8 text. Properties: no panic; an
//! accepted value prints as text that parses back to the same value, and
//! its JSON (serde) form agrees with the text parser; every accepted value
//! meets the invariant its type documents.

use std::fmt::{Debug, Display};
use std::net::IpAddr;
use std::str::FromStr;

use hearth_common::subnets::{check_domain_subnet, check_ula_prefix, ULA_PREFIX, V4_PREFIX};
use hearth_common::types::{
    Address, Cidr, DnsName, DomainId, Ipv4, Ipv6, ParseError, Port, Protocol,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses `s` as `T`; an accepted value round-trips through its text and
/// its JSON form.
fn roundtrip<T>(s: &str) -> Option<T>
where
    T: FromStr<Err = ParseError> + Display + Debug + PartialEq + Serialize + DeserializeOwned,
{
    let parsed = T::from_str(s);
    // The JSON form (what a structured intent or a config file gives) is
    // read by the same rule as the text form.
    if let Ok(from_json) = serde_json::from_value::<T>(serde_json::Value::String(s.to_string())) {
        assert_eq!(
            Some(&from_json),
            parsed.as_ref().ok(),
            "JSON accepted {s:?} but the text parser did not agree"
        );
    } else {
        assert!(
            parsed.is_err(),
            "the text parser accepted {s:?}, JSON did not"
        );
    }
    let v = parsed.ok()?;
    let shown = v.to_string();
    let again = T::from_str(&shown);
    assert_eq!(
        again.as_ref(),
        Ok(&v),
        "{s:?} -> {shown:?} does not parse back"
    );
    let json = serde_json::to_string(&v).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v, "{s:?}: the JSON form {json} does not read back");
    Some(v)
}

fn rfc1918(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 10 || (o[0] == 172 && (16..32).contains(&o[1])) || (o[0] == 192 && o[1] == 168)
        }
        IpAddr::V6(_) => false,
    }
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match sel % 9 {
        0 => {
            if let Some(d) = roundtrip::<DomainId>(s) {
                let t = d.as_str();
                assert!((1..=DomainId::MAX_LEN).contains(&t.len()), "{t:?}");
                assert!(t.as_bytes()[0].is_ascii_lowercase(), "{t:?}");
                assert!(
                    t.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{t:?}"
                );
                assert!(d.bridge_name().len() <= 15, "{t:?}: bridge name too long");
            }
        }
        1 => {
            if let Some(n) = roundtrip::<DnsName>(s) {
                let t = n.as_str();
                assert!(!t.is_empty() && t.len() <= DnsName::MAX_LEN, "{t:?}");
                assert!(!t.ends_with('.'), "{t:?}");
                assert_eq!(t, t.to_ascii_lowercase(), "{t:?} is not lower-case");
                for label in n.labels() {
                    assert!((1..=63).contains(&label.len()), "{t:?}: label {label:?}");
                    assert!(!label.starts_with('-') && !label.ends_with('-'), "{t:?}");
                }
                assert!(n.is_within(&n));
                assert!(n.fqdn().len() <= 254);
            }
        }
        2 => {
            roundtrip::<Address>(s);
        }
        3 => {
            if let Some(a) = roundtrip::<Ipv4>(s) {
                assert_eq!(
                    a.to_string().parse::<std::net::Ipv4Addr>().ok(),
                    Some(a.addr())
                );
            }
        }
        4 => {
            roundtrip::<Ipv6>(s);
        }
        5 | 6 => {
            if let Some(c) = roundtrip::<Cidr>(s) {
                let net = c.net();
                assert_eq!(net.trunc(), net, "{s:?}: host bits set");
                check_subnet_rules(&c);
            }
            if sel % 9 == 6 {
                if let Ok(c) = Cidr::parse_v4_field("subnet", s) {
                    assert!(c.is_ipv4());
                }
            }
        }
        7 => {
            if let Some(p) = roundtrip_port(s) {
                assert!(p.get() >= 1);
            }
        }
        _ => {
            if let Some(p) = roundtrip::<Protocol>(s) {
                assert!(matches!(p.number(), 6 | 17));
            }
        }
    }
}

/// Ports are text on the bus and numbers in JSON.
fn roundtrip_port(s: &str) -> Option<Port> {
    let p = Port::from_str(s).ok()?;
    assert_eq!(Port::from_str(&p.to_string()), Ok(p));
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<Port>(&json).unwrap(), p);
    Some(p)
}

/// Whatever a domain's subnet check accepts lies in private space (or the
/// pool), with a prefix of /16 to /30, and has a gateway address.
fn check_subnet_rules(c: &Cidr) {
    let pool = Cidr::parse("100.64.0.0/10").unwrap();
    for pool in [None, Some(&pool)] {
        if check_domain_subnet("subnet", c, pool).is_ok() {
            assert!(c.is_ipv4(), "{c}");
            assert!(V4_PREFIX.contains(&c.prefix_len()), "{c}");
            let inside_pool = pool.is_some_and(|p| p.net().contains(&c.net()));
            let first = c.net().network();
            let last = c.net().broadcast();
            assert!(
                inside_pool || (rfc1918(first) && rfc1918(last)),
                "{c}: accepted outside private space"
            );
            assert!(c.first_host().is_some(), "{c}: no gateway address");
        }
    }
    if check_ula_prefix("ula", c).is_ok() {
        let IpAddr::V6(first) = c.net().network() else {
            panic!("{c}: an IPv4 network passed as a ULA prefix");
        };
        assert_eq!(first.octets()[0] & 0xfe, 0xfc, "{c}: outside fc00::/7");
        assert!(ULA_PREFIX.contains(&c.prefix_len()), "{c}");
    }
}

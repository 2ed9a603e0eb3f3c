//! Where a network domain's addresses may lie.
//!
//! A domain's IPv4 subnet is private space (RFC 1918, or inside the pool the
//! configuration names) of /16 to /30; its optional IPv6 prefix is unique
//! local (fc00::/7) of /48 to /64. Neither may share an address with another
//! domain, the uplink's network or any other address of the appliance: the
//! caller (hearth-netd, which every path to a new domain goes through: the
//! CLI, the gate's playbooks and structured intents) gathers those and asks
//! [`first_overlap`].

use std::net::IpAddr;
use std::ops::RangeInclusive;

use crate::types::{Cidr, ParseError};

/// The private IPv4 ranges of RFC 1918.
pub const PRIVATE_V4: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// Prefix lengths a domain's IPv4 subnet may have: at most 65534 hosts, and
/// room for a gateway and at least one host.
pub const V4_PREFIX: RangeInclusive<u8> = 16..=30;

/// The unique local IPv6 range (RFC 4193).
pub const ULA_RANGE: &str = "fc00::/7";

/// Prefix lengths a domain's ULA prefix may have: a site's /48 down to one
/// /64 link.
pub const ULA_PREFIX: RangeInclusive<u8> = 48..=64;

fn within(outer: &str, inner: &Cidr) -> bool {
    outer
        .parse::<ipnet::IpNet>()
        .is_ok_and(|o| o.contains(&inner.net()))
}

/// Checks the IPv4 subnet of a domain given for `field`: private space (or
/// inside `pool`, when one is configured) and a prefix of /16 to /30.
pub fn check_domain_subnet(
    field: &str,
    subnet: &Cidr,
    pool: Option<&Cidr>,
) -> Result<(), ParseError> {
    let err = |reason: String| Err(ParseError::new(field, &subnet.to_string(), reason));
    if !subnet.is_ipv4() {
        return err("an IPv4 network is required".into());
    }
    let in_pool = pool.is_some_and(|p| p.net().contains(&subnet.net()));
    if !in_pool && !PRIVATE_V4.iter().any(|r| within(r, subnet)) {
        let pool = match pool {
            Some(p) => format!(" or the configured pool {p}"),
            None => String::new(),
        };
        return err(format!(
            "not private address space: a domain's subnet lies inside {}{pool}",
            PRIVATE_V4.join(", ")
        ));
    }
    if !V4_PREFIX.contains(&subnet.prefix_len()) {
        return err(format!(
            "the prefix is /{} to /{} (at most 65534 hosts, at least a gateway and one host), not /{}",
            V4_PREFIX.start(),
            V4_PREFIX.end(),
            subnet.prefix_len()
        ));
    }
    Ok(())
}

/// Checks the IPv6 ULA prefix of a domain given for `field`: inside
/// fc00::/7, /48 to /64.
pub fn check_ula_prefix(field: &str, prefix: &Cidr) -> Result<(), ParseError> {
    let err = |reason: String| Err(ParseError::new(field, &prefix.to_string(), reason));
    if !matches!(prefix.net().network(), IpAddr::V6(_)) {
        return err("an IPv6 prefix is required".into());
    }
    if !within(ULA_RANGE, prefix) {
        return err(format!(
            "not unique local address space: a domain's IPv6 prefix lies inside {ULA_RANGE}"
        ));
    }
    if !ULA_PREFIX.contains(&prefix.prefix_len()) {
        return err(format!(
            "the prefix is /{} to /{}, not /{}",
            ULA_PREFIX.start(),
            ULA_PREFIX.end(),
            prefix.prefix_len()
        ));
    }
    Ok(())
}

/// The first of `taken` (a network and what holds it) that shares an
/// address with `subnet`.
pub fn first_overlap<T>(
    subnet: &Cidr,
    taken: impl IntoIterator<Item = (Cidr, T)>,
) -> Option<(Cidr, T)> {
    taken.into_iter().find(|(net, _)| net.overlaps(subnet))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn private_subnets_of_16_to_30_are_accepted() {
        for good in [
            "10.0.0.0/16",
            "10.77.1.0/24",
            "10.255.255.252/30",
            "172.16.0.0/16",
            "172.31.255.0/24",
            "192.168.0.0/16",
            "192.168.1.0/24",
        ] {
            check_domain_subnet("subnet", &c(good), None).unwrap();
        }
    }

    #[test]
    fn public_space_is_refused_naming_the_subnet_and_the_rule() {
        for bad in [
            "128.0.0.0/1",
            "0.0.0.0/0",
            "8.8.8.0/24",
            "1.1.1.0/24",
            "192.0.2.0/24",
            "100.64.0.0/16",
            "172.32.0.0/16",
            "172.15.255.0/24",
            "192.169.0.0/16",
            "11.0.0.0/16",
            "127.0.0.0/16",
            "169.254.0.0/16",
            "224.0.0.0/24",
            "255.255.255.0/24",
            // Larger than a private range, though it starts in one.
            "172.0.0.0/11",
            "192.168.0.0/15",
        ] {
            let e = check_domain_subnet("subnet", &c(bad), None).unwrap_err();
            assert_eq!(e.field, "subnet");
            assert_eq!(e.value, bad);
            assert!(e.reason.contains("private"), "{e}");
        }
    }

    #[test]
    fn prefixes_outside_16_to_30_are_refused() {
        for bad in ["10.0.0.0/8", "10.0.0.0/15", "10.0.0.0/31", "10.0.0.1/32"] {
            let e = check_domain_subnet("subnet", &c(bad), None).unwrap_err();
            assert!(e.reason.contains("/16 to /30"), "{e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn the_configured_pool_counts_as_private() {
        let pool = c("100.64.0.0/16");
        check_domain_subnet("subnet", &c("100.64.3.0/24"), Some(&pool)).unwrap();
        let e = check_domain_subnet("subnet", &c("100.65.0.0/24"), Some(&pool)).unwrap_err();
        assert!(e.reason.contains("100.64.0.0/16"), "{e}");
        // Only wholly inside the pool.
        assert!(check_domain_subnet("subnet", &c("100.64.0.0/15"), Some(&pool)).is_err());
        // The pool widens nothing about the prefix.
        assert!(check_domain_subnet("subnet", &c("100.64.0.0/31"), Some(&pool)).is_err());
        // Private space stays acceptable next to a pool.
        check_domain_subnet("subnet", &c("192.168.7.0/24"), Some(&pool)).unwrap();
    }

    #[test]
    fn ipv6_is_not_a_domain_subnet() {
        let e = check_domain_subnet("subnet", &c("fd00::/64"), None).unwrap_err();
        assert!(e.reason.contains("IPv4"), "{e}");
    }

    #[test]
    fn ula_prefixes_are_fc00_7_of_48_to_64() {
        for good in [
            "fd42:77::/64",
            "fd00::/48",
            "fc00:1::/56",
            "fdff:ffff:ffff::/48",
        ] {
            check_ula_prefix("ula", &c(good)).unwrap();
        }
        for (bad, why) in [
            ("2001:db8::/64", "unique local"),
            ("fe80::/64", "unique local"),
            ("::/0", "unique local"),
            ("fc00::/7", "/48 to /64"),
            ("fd00::/8", "/48 to /64"),
            ("fd00::/47", "/48 to /64"),
            ("fd00::/65", "/48 to /64"),
            ("fd00::1/128", "/48 to /64"),
            ("10.0.0.0/24", "IPv6"),
        ] {
            let e = check_ula_prefix("ula", &c(bad)).unwrap_err();
            assert!(e.reason.contains(why), "{bad}: {e}");
            assert_eq!(e.value, bad);
        }
    }

    #[test]
    fn first_overlap_names_what_holds_the_space() {
        let taken = vec![
            (c("10.61.0.0/24"), "admin"),
            (c("192.168.1.0/24"), "uplink"),
        ];
        assert_eq!(
            first_overlap(&c("192.168.0.0/16"), taken.clone()),
            Some((c("192.168.1.0/24"), "uplink"))
        );
        assert_eq!(
            first_overlap(&c("10.61.0.128/25"), taken.clone()),
            Some((c("10.61.0.0/24"), "admin"))
        );
        assert_eq!(first_overlap(&c("10.61.1.0/24"), taken), None);
    }
}

//! The pure part: the model's domains and allows as a [`Ruleset`], and the
//! ruleset as the set elements and the rules (expressions in order) the
//! table holds. Nothing here touches libnftnl or the kernel; the batch
//! ([`super::batch`]) turns these descriptions into nftnl objects one to one.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::model::Model;

/// `NFPROTO_IPV4`, as `meta nfproto` loads it (one byte).
const NFPROTO_IPV4: u8 = 2;
/// ct state established (bit 1) | related (bit 2).
const CT_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;

// The 4-byte registers NFT_REG32_xx that concatenations are loaded into:
// NFT_REG32_00 (8) is the first quarter of NFT_REG_1.
const REG32_00: u32 = 8;
const R8: u32 = REG32_00;
const R12: u32 = REG32_00 + 4;
const R13: u32 = REG32_00 + 5;
const R16: u32 = REG32_00 + 8;
const R17: u32 = REG32_00 + 9;

/// Everything the table enforces, derived from the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ruleset {
    /// Every domain bridge.
    pub bridges: Vec<String>,
    /// The admin domain's bridge.
    pub admin: String,
    /// The uplink.
    pub uplink: Option<String>,
    /// (from bridge, to bridge): everything.
    pub allow_any: Vec<(String, String)>,
    /// (from, to, l4proto): one protocol.
    pub allow_proto: Vec<(String, String, u8)>,
    /// (from, to, l4proto, port).
    pub allow_port: Vec<(String, String, u8, u16)>,
    /// (bridge, l4proto, port) of appliance services.
    pub services: Vec<(String, u8, u16)>,
    /// Domain subnets masqueraded to the uplink.
    pub nat: Vec<(Ipv4Addr, u8)>,
}

impl Ruleset {
    /// Derives the ruleset from the model.
    pub fn from_model(m: &Model) -> Ruleset {
        let br = |d: &hearth_common::types::DomainId| d.bridge_name();
        let mut rs = Ruleset {
            bridges: m.domains.keys().map(br).collect(),
            admin: br(&m.admin),
            uplink: m.uplink.clone(),
            allow_any: Vec::new(),
            allow_proto: Vec::new(),
            allow_port: Vec::new(),
            services: Vec::new(),
            nat: Vec::new(),
        };
        for a in &m.allows {
            let (f, t) = (br(&a.from), br(&a.to));
            match (a.protocol, a.port) {
                (None, None) => rs.allow_any.push((f, t)),
                (Some(p), None) => rs.allow_proto.push((f, t, p.number())),
                (Some(p), Some(port)) => rs.allow_port.push((f, t, p.number(), port.get())),
                (None, Some(port)) => {
                    rs.allow_port.push((f.clone(), t.clone(), 6, port.get()));
                    rs.allow_port.push((f, t, 17, port.get()));
                }
            }
        }
        for d in m.domains.values() {
            for s in &d.service_ports {
                rs.services.push((d.bridge(), s.protocol.number(), s.port));
            }
            if let (IpAddr::V4(net), Some(_)) = (d.subnet.net().network(), &m.uplink) {
                rs.nat.push((net, d.subnet.prefix_len()));
            }
        }
        rs.allow_any.sort();
        rs.allow_any.dedup();
        rs.allow_proto.sort();
        rs.allow_proto.dedup();
        rs.allow_port.sort();
        rs.allow_port.dedup();
        rs.services.sort();
        rs.services.dedup();
        rs
    }

    /// A fingerprint of the ruleset, stored as the table's comment.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over the canonical JSON form.
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Number of set elements per set, in [`SETS`] order.
    pub fn element_counts(&self) -> [usize; 5] {
        [
            self.bridges.len(),
            self.allow_any.len(),
            self.allow_proto.len(),
            self.allow_port.len(),
            self.services.len(),
        ]
    }

    /// Number of rules per chain, in [`CHAINS`] order.
    pub fn rule_counts(&self) -> [usize; 3] {
        let up = usize::from(self.uplink.is_some());
        [7 + up, 5, if up == 1 { self.nat.len() } else { 0 }]
    }

    /// Total rules.
    pub fn rule_count(&self) -> usize {
        self.rule_counts().iter().sum()
    }
}

/// `ifname` as a set key or comparison value: the name, NUL-padded to 16
/// bytes (IFNAMSIZ).
pub fn ifname(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// A one-byte value in a 4-byte concatenation field.
fn u8_reg(v: u8) -> [u8; 4] {
    [v, 0, 0, 0]
}

/// A port (network byte order) in a 4-byte concatenation field.
fn port_reg(p: u16) -> [u8; 4] {
    let be = p.to_be_bytes();
    [be[0], be[1], 0, 0]
}

/// What a `meta` expression loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// `meta iifname`.
    IifName,
    /// `meta oifname`.
    OifName,
    /// `meta l4proto`.
    L4Proto,
    /// `meta nfproto`.
    NfProto,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`.
    Eq,
    /// `!=`.
    Neq,
}

/// One expression of a rule, as nftnl builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta <key>` into `NFT_REG_1` (nftnl's `Meta`).
    Meta(Load),
    /// `meta <key>` into the 32-bit register given (concatenations).
    MetaInto(Load, u32),
    /// `th dport` into the 32-bit register given.
    ThDportInto(u32),
    /// `ct state`.
    CtState,
    /// `bitwise`: mask, xor (the bytes nftnl would write).
    Bitwise(Vec<u8>, Vec<u8>),
    /// `cmp` against the bytes given.
    Cmp(Op, Vec<u8>),
    /// `ip saddr`.
    Ipv4Saddr,
    /// `lookup` in the set of [`super::SETS`] at this index.
    Lookup(usize),
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `masquerade`.
    Masquerade,
}

/// The index of each set in [`super::SETS`].
pub const BRIDGES: usize = 0;
/// `allow_any`.
pub const ALLOW_ANY: usize = 1;
/// `allow_proto`.
pub const ALLOW_PROTO: usize = 2;
/// `allow_port`.
pub const ALLOW_PORT: usize = 3;
/// `services`.
pub const SERVICES: usize = 4;

/// One rule: its chain (index in [`super::CHAINS`]), a description for
/// error reports, and its expressions in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Index of the chain in [`super::CHAINS`].
    pub chain: usize,
    /// What the rule does, in nft's words.
    pub what: String,
    /// The expressions.
    pub exprs: Vec<Expr>,
}

const FORWARD: usize = 0;
const INPUT: usize = 1;
const POSTROUTING: usize = 2;

impl Ruleset {
    /// The distinct keys of each set, in [`super::SETS`] order (nftnl's
    /// element messages are sent with NLM_F_EXCL: a key twice would be
    /// refused).
    pub fn elements(&self) -> [BTreeSet<Vec<u8>>; 5] {
        [
            self.bridges.iter().map(|b| ifname(b).to_vec()).collect(),
            self.allow_any
                .iter()
                .map(|(f, t)| [ifname(f), ifname(t)].concat())
                .collect(),
            self.allow_proto
                .iter()
                .map(|(f, t, p)| [&ifname(f)[..], &ifname(t), &u8_reg(*p)].concat())
                .collect(),
            self.allow_port
                .iter()
                .map(|(f, t, p, port)| {
                    [&ifname(f)[..], &ifname(t), &u8_reg(*p), &port_reg(*port)].concat()
                })
                .collect(),
            self.services
                .iter()
                .map(|(br, p, port)| [&ifname(br)[..], &u8_reg(*p), &port_reg(*port)].concat())
                .collect(),
        ]
    }

    /// Every rule of the table, chain by chain, in the order they are added.
    pub fn rules(&self) -> Vec<RuleSpec> {
        use Expr::*;
        let mut out = Vec::new();
        let mut rule = |chain: usize, what: &str, exprs: Vec<Expr>| {
            out.push(RuleSpec {
                chain,
                what: what.to_string(),
                exprs,
            })
        };
        let established = || {
            vec![
                CtState,
                Bitwise(
                    CT_ESTABLISHED_RELATED.to_ne_bytes().to_vec(),
                    0u32.to_ne_bytes().to_vec(),
                ),
                Cmp(Op::Neq, 0u32.to_ne_bytes().to_vec()),
                Accept,
            ]
        };

        // forward
        rule(
            FORWARD,
            "ct state established,related accept",
            established(),
        );
        rule(
            FORWARD,
            "admin reaches every domain",
            vec![
                Meta(Load::IifName),
                Cmp(Op::Eq, ifname(&self.admin).to_vec()),
                Meta(Load::OifName),
                Lookup(BRIDGES),
                Accept,
            ],
        );
        rule(
            FORWARD,
            "iifname . oifname @allow_any accept",
            vec![
                MetaInto(Load::IifName, R8),
                MetaInto(Load::OifName, R12),
                Lookup(ALLOW_ANY),
                Accept,
            ],
        );
        rule(
            FORWARD,
            "iifname . oifname . l4proto @allow_proto accept",
            vec![
                MetaInto(Load::IifName, R8),
                MetaInto(Load::OifName, R12),
                MetaInto(Load::L4Proto, R16),
                Lookup(ALLOW_PROTO),
                Accept,
            ],
        );
        rule(
            FORWARD,
            "iifname . oifname . l4proto . th dport @allow_port accept",
            vec![
                MetaInto(Load::IifName, R8),
                MetaInto(Load::OifName, R12),
                MetaInto(Load::L4Proto, R16),
                ThDportInto(R17),
                Lookup(ALLOW_PORT),
                Accept,
            ],
        );
        let uplink = self.uplink.as_deref().map(ifname);
        if let Some(up) = &uplink {
            rule(
                FORWARD,
                "domains reach the uplink",
                vec![
                    Meta(Load::IifName),
                    Lookup(BRIDGES),
                    Meta(Load::OifName),
                    Cmp(Op::Eq, up.to_vec()),
                    Accept,
                ],
            );
        }
        rule(
            FORWARD,
            "iifname @bridges drop",
            vec![Meta(Load::IifName), Lookup(BRIDGES), Drop],
        );
        rule(
            FORWARD,
            "oifname @bridges drop",
            vec![Meta(Load::OifName), Lookup(BRIDGES), Drop],
        );

        // input
        rule(INPUT, "ct state established,related accept", established());
        rule(
            INPUT,
            "iifname . l4proto . th dport @services accept",
            vec![
                MetaInto(Load::IifName, R8),
                MetaInto(Load::L4Proto, R12),
                ThDportInto(R13),
                Lookup(SERVICES),
                Accept,
            ],
        );
        for (proto, what) in [(1u8, "icmp"), (58u8, "ipv6-icmp")] {
            rule(
                INPUT,
                &format!("iifname @bridges {what} accept"),
                vec![
                    Meta(Load::IifName),
                    Lookup(BRIDGES),
                    Meta(Load::L4Proto),
                    Cmp(Op::Eq, vec![proto]),
                    Accept,
                ],
            );
        }
        rule(
            INPUT,
            "iifname @bridges drop",
            vec![Meta(Load::IifName), Lookup(BRIDGES), Drop],
        );

        // postrouting: masquerade each domain's subnet out of the uplink
        if let Some(up) = &uplink {
            for (net, len) in &self.nat {
                let mask = if *len == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(*len))
                };
                rule(
                    POSTROUTING,
                    &format!("masquerade {net}/{len}"),
                    vec![
                        Meta(Load::NfProto),
                        Cmp(Op::Eq, vec![NFPROTO_IPV4]),
                        Meta(Load::OifName),
                        Cmp(Op::Eq, up.to_vec()),
                        Ipv4Saddr,
                        Bitwise(mask.to_be_bytes().to_vec(), vec![0u8; 4]),
                        Cmp(Op::Eq, net.octets().to_vec()),
                        Masquerade,
                    ],
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::Overlay;
    use crate::NetworkConfig;

    fn ruleset(toml: &str) -> Ruleset {
        let cfg: NetworkConfig =
            hearth_common::config::parse(Path::new("network.toml"), toml).unwrap();
        Ruleset::from_model(&Model::compose(&cfg, &Overlay::default()).unwrap())
    }

    const ADMIN_ONLY: &str = r#"
admin = "admin"
pool = "10.77.0.0/16"
[[domain]]
name = "admin"
subnet = "10.77.0.0/24"
"#;

    fn with_lan(extra: &str) -> Ruleset {
        ruleset(&format!(
            r#"uplink = "eth0"
{ADMIN_ONLY}
[[domain]]
name = "lan"
subnet = "10.77.1.0/24"
[[domain]]
name = "iot"
subnet = "10.77.2.0/24"
services = ["dns"]
{extra}"#
        ))
    }

    fn per_chain(rules: &[RuleSpec]) -> [usize; 3] {
        let mut n = [0; 3];
        for r in rules {
            n[r.chain] += 1;
        }
        n
    }

    #[test]
    fn an_allow_with_a_port_is_one_allow_port_element() {
        let rs =
            with_lan("[[allow]]\nfrom = \"iot\"\nto = \"lan\"\nport = 443\nprotocol = \"tcp\"\n");
        assert_eq!(
            rs.allow_port,
            vec![("hb-iot".into(), "hb-lan".into(), 6, 443)]
        );
        assert!(rs.allow_any.is_empty() && rs.allow_proto.is_empty());
        let el = rs.elements();
        let key: Vec<u8> = [
            &ifname("hb-iot")[..],
            &ifname("hb-lan"),
            &[6, 0, 0, 0],
            &[0x01, 0xbb, 0, 0],
        ]
        .concat();
        assert_eq!(key.len(), 40);
        assert_eq!(el[ALLOW_PORT], BTreeSet::from([key]));
        assert!(el[ALLOW_ANY].is_empty() && el[ALLOW_PROTO].is_empty());
        // The rule that matches it: the concatenation into the 32-bit
        // registers, then the lookup.
        let rule = rs
            .rules()
            .into_iter()
            .find(|r| r.exprs.contains(&Expr::Lookup(ALLOW_PORT)))
            .unwrap();
        assert_eq!(rule.chain, FORWARD);
        assert_eq!(
            rule.exprs,
            vec![
                Expr::MetaInto(Load::IifName, 8),
                Expr::MetaInto(Load::OifName, 12),
                Expr::MetaInto(Load::L4Proto, 16),
                Expr::ThDportInto(17),
                Expr::Lookup(ALLOW_PORT),
                Expr::Accept,
            ]
        );
    }

    #[test]
    fn a_port_without_protocol_allows_tcp_and_udp() {
        let rs = with_lan("[[allow]]\nfrom = \"lan\"\nto = \"iot\"\nport = 53\n");
        assert_eq!(
            rs.allow_port,
            vec![
                ("hb-lan".into(), "hb-iot".into(), 6, 53),
                ("hb-lan".into(), "hb-iot".into(), 17, 53),
            ]
        );
        assert_eq!(rs.elements()[ALLOW_PORT].len(), 2);
    }

    #[test]
    fn an_allow_without_port_or_protocol_is_one_allow_any_element() {
        let rs = with_lan("[[allow]]\nfrom = \"lan\"\nto = \"iot\"\n");
        assert_eq!(rs.allow_any, vec![("hb-lan".into(), "hb-iot".into())]);
        assert_eq!(
            rs.elements()[ALLOW_ANY],
            BTreeSet::from([[ifname("hb-lan"), ifname("hb-iot")].concat()])
        );
    }

    #[test]
    fn the_admin_domain_reaches_every_bridge() {
        let rs = with_lan("");
        assert_eq!(rs.admin, "hb-admin");
        let rules = rs.rules();
        let admin = rules
            .iter()
            .find(|r| r.what == "admin reaches every domain")
            .unwrap();
        assert_eq!(admin.chain, FORWARD);
        assert_eq!(
            admin.exprs,
            vec![
                Expr::Meta(Load::IifName),
                Expr::Cmp(Op::Eq, ifname("hb-admin").to_vec()),
                Expr::Meta(Load::OifName),
                Expr::Lookup(BRIDGES),
                Expr::Accept,
            ]
        );
        // It comes right after the established/related accept, before any
        // drop.
        let forward: Vec<_> = rules.iter().filter(|r| r.chain == FORWARD).collect();
        assert_eq!(forward[1], admin);
        assert_eq!(
            rs.elements()[BRIDGES],
            ["hb-admin", "hb-iot", "hb-lan"]
                .iter()
                .map(|b| ifname(b).to_vec())
                .collect()
        );
    }

    #[test]
    fn services_and_nat_come_from_the_domains() {
        let rs = with_lan("");
        // Every domain serves dns and dhcp by default; iot names only dns.
        let iot: Vec<_> = rs.services.iter().filter(|s| s.0 == "hb-iot").collect();
        assert_eq!(iot, [&("hb-iot".into(), 6, 53), &("hb-iot".into(), 17, 53)]);
        assert!(rs.services.contains(&("hb-lan".into(), 17, 67)));
        let key = [&ifname("hb-iot")[..], &[17, 0, 0, 0], &[0, 53, 0, 0]].concat();
        assert!(rs.elements()[SERVICES].contains(&key));
        assert_eq!(rs.nat.len(), 3);
        let rules = rs.rules();
        assert_eq!(per_chain(&rules), rs.rule_counts());
        assert_eq!(rs.rule_counts(), [8, 5, 3]);
        let nat = rules
            .iter()
            .find(|r| r.what == "masquerade 10.77.1.0/24")
            .unwrap();
        assert_eq!(nat.chain, POSTROUTING);
        assert_eq!(
            nat.exprs[3..],
            [
                Expr::Cmp(Op::Eq, ifname("eth0").to_vec()),
                Expr::Ipv4Saddr,
                Expr::Bitwise(vec![255, 255, 255, 0], vec![0; 4]),
                Expr::Cmp(Op::Eq, vec![10, 77, 1, 0]),
                Expr::Masquerade,
            ]
        );
    }

    #[test]
    fn a_configuration_with_only_the_admin_domain() {
        let rs = ruleset(ADMIN_ONLY);
        assert_eq!(rs.bridges, vec!["hb-admin".to_string()]);
        assert_eq!(rs.uplink, None);
        assert!(rs.nat.is_empty(), "no uplink, no masquerade");
        // The admin bridge's default services: dns (tcp, udp) and dhcp.
        assert_eq!(rs.element_counts(), [1, 0, 0, 0, 3]);
        let rules = rs.rules();
        assert_eq!(per_chain(&rules), [7, 5, 0]);
        assert_eq!(rules.len(), rs.rule_count());
        assert!(!rules.iter().any(|r| r.what == "domains reach the uplink"));
        // Both chains end in the drops for anything from a domain bridge.
        let last = |c: usize| rules.iter().rfind(|r| r.chain == c).unwrap();
        assert_eq!(
            last(FORWARD).exprs,
            vec![Expr::Meta(Load::OifName), Expr::Lookup(BRIDGES), Expr::Drop]
        );
        assert_eq!(
            last(INPUT).exprs,
            vec![Expr::Meta(Load::IifName), Expr::Lookup(BRIDGES), Expr::Drop]
        );
    }

    #[test]
    fn the_fingerprint_changes_with_the_ruleset() {
        let a = with_lan("");
        let b = with_lan("[[allow]]\nfrom = \"lan\"\nto = \"iot\"\n");
        assert_eq!(a.fingerprint(), with_lan("").fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 16);
    }
}

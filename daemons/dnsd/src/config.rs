//! The zones hearth-dnsd serves and where it listens, as configured.
//!
//! ```toml
//! listen = ["127.0.0.1:5353"]      # UDP and TCP; port 53 in production
//!
//! [[zone]]
//! name = "home.arpa"
//! ns_name = "ns.home.arpa"          # default: ns.<zone>
//! ns_addresses = ["192.168.1.1"]    # required when ns_name lies inside a served zone
//! hostmaster = "hostmaster.home.arpa" # SOA RNAME; default: hostmaster.<zone>
//! ttl = 300                         # TTL of every record, and the negative-caching TTL
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;

use hearth_common::types::{Address, DnsName};
use serde::Deserialize;

/// Default TTL (seconds) of the records of a zone.
pub const DEFAULT_TTL: u32 = 300;

/// One zone hearth-dnsd is authoritative for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's apex, e.g. `home.arpa`.
    pub name: DnsName,
    /// The host named in the zone's NS and SOA MNAME records; `ns.<zone>` when
    /// not given.
    #[serde(default)]
    pub ns_name: Option<DnsName>,
    /// The name server's addresses, served as its A/AAAA records when its
    /// name lies inside a served zone. Those records are fixed: they cannot be
    /// changed over the bus.
    #[serde(default)]
    pub ns_addresses: Vec<Address>,
    /// The SOA RNAME (the zone's contact); `hostmaster.<zone>` when not given.
    #[serde(default)]
    pub hostmaster: Option<DnsName>,
    /// TTL of every record of the zone and of negative answers (seconds).
    #[serde(default = "default_ttl")]
    pub ttl: u32,
}

fn default_ttl() -> u32 {
    DEFAULT_TTL
}

impl ZoneConfig {
    /// A zone with every default: NS `ns.<zone>` at `ns_address`.
    pub fn new(name: DnsName, ns_addresses: Vec<Address>) -> Self {
        ZoneConfig {
            name,
            ns_name: None,
            ns_addresses,
            hostmaster: None,
            ttl: DEFAULT_TTL,
        }
    }

    /// The name server's host name.
    pub fn ns_name(&self) -> DnsName {
        self.ns_name
            .clone()
            .unwrap_or_else(|| prefixed("ns", &self.name))
    }

    /// The SOA RNAME.
    pub fn hostmaster(&self) -> DnsName {
        self.hostmaster
            .clone()
            .unwrap_or_else(|| prefixed("hostmaster", &self.name))
    }
}

fn prefixed(label: &str, zone: &DnsName) -> DnsName {
    // A 253-character zone plus a label may be too long; fall back to the apex.
    DnsName::parse(&format!("{label}.{zone}")).unwrap_or_else(|_| zone.clone())
}

/// The DNS part of hearth-dnsd's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// Socket addresses to serve DNS on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The zones served.
    #[serde(rename = "zone")]
    pub zones: Vec<ZoneConfig>,
}

/// hearth-dnsd's whole configuration file: the DNS settings and the
/// `[access]` table every daemon has.
///
/// ```toml
/// listen = ["0.0.0.0:53", "[::]:53"]
/// [[zone]]
/// name = "home.arpa"
/// ns_addresses = ["192.168.1.1"]
/// [access]
/// service_users = ["hearth-intentd"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Socket addresses to serve DNS on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The zones served.
    #[serde(rename = "zone")]
    pub zones: Vec<ZoneConfig>,
    /// When set, also answer on this port of every domain's gateway
    /// address, following hearth-netd's domains (see [`crate::gateways`]).
    #[serde(default)]
    pub gateway_port: Option<u16>,
    /// How often hearth-netd's domains are read for `gateway_port` (seconds).
    #[serde(default = "default_gateway_poll")]
    pub gateway_poll_secs: u32,
    /// Who may read and who may change records over the bus.
    #[serde(default)]
    pub access: hearth_runtime::AccessConfig,
}

impl DaemonSettings {
    /// The DNS part.
    pub fn dns(&self) -> DnsSettings {
        DnsSettings {
            listen: self.listen.clone(),
            zones: self.zones.clone(),
        }
    }
}

fn default_gateway_poll() -> u32 {
    5
}

impl hearth_runtime::DaemonConfig for DaemonSettings {
    fn access(&self) -> &hearth_runtime::AccessConfig {
        &self.access
    }
}

/// A configuration whose values break a rule across fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigInvalid(pub String);

/// Checks the rules that TOML types cannot express: at least one zone, no
/// zone twice, an in-zone name server has addresses.
pub fn validate_zones(zones: &[ZoneConfig]) -> Result<(), ConfigInvalid> {
    if zones.is_empty() {
        return Err(ConfigInvalid(
            "no [[zone]] is configured; hearth-dnsd needs at least one".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for z in zones {
        if !seen.insert(z.name.clone()) {
            return Err(ConfigInvalid(format!(
                "zone {} is configured twice",
                z.name
            )));
        }
        if z.ttl == 0 {
            return Err(ConfigInvalid(format!(
                "zone {}: ttl must be at least 1 second",
                z.name
            )));
        }
    }
    for z in zones {
        let ns = z.ns_name();
        let inside = zones.iter().any(|o| ns.is_within(&o.name));
        if inside && z.ns_addresses.is_empty() {
            return Err(ConfigInvalid(format!(
                "zone {}: its name server {ns} lies inside a served zone, so ns_addresses must give its address",
                z.name
            )));
        }
    }
    Ok(())
}

/// Checks the listen addresses (at least one, none twice) and the zones.
pub fn validate(settings: &DnsSettings) -> Result<(), ConfigInvalid> {
    if settings.listen.is_empty() {
        return Err(ConfigInvalid(
            "listen is empty; give at least one address such as \"127.0.0.1:53\"".into(),
        ));
    }
    let unique: BTreeSet<_> = settings.listen.iter().collect();
    if unique.len() != settings.listen.len() {
        return Err(ConfigInvalid("listen names an address twice".into()));
    }
    validate_zones(&settings.zones)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsSettings, String> {
        hearth_common::config::parse::<DnsSettings>(std::path::Path::new("dnsd.toml"), text)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_ns_hostmaster_and_ttl() {
        let s = parse(
            "listen = [\"127.0.0.1:5353\"]\n[[zone]]\nname = \"Home.Arpa\"\nns_addresses = [\"192.168.1.1\"]\n",
        )
        .unwrap();
        validate(&s).unwrap();
        let z = &s.zones[0];
        assert_eq!(z.name.as_str(), "home.arpa");
        assert_eq!(z.ns_name().as_str(), "ns.home.arpa");
        assert_eq!(z.hostmaster().as_str(), "hostmaster.home.arpa");
        assert_eq!(z.ttl, DEFAULT_TTL);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse("listen = []\n[[zone]]\nname = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        let e = parse("listen = []\n[[zone]]\nname = \"a..b\"\n").unwrap_err();
        assert!(e.contains("a..b"), "{e}");
    }

    #[test]
    fn daemon_settings_take_an_access_table() {
        let text = "listen = [\"127.0.0.1:5353\"]\n[[zone]]\nname = \"home.arpa\"\nns_addresses = [\"192.168.1.1\"]\n[access]\nservice_users = [\"hearth-intentd\"]\n";
        let s: DaemonSettings =
            hearth_common::config::parse(std::path::Path::new("dnsd.toml"), text).unwrap();
        assert_eq!(s.access.service_users, ["hearth-intentd"]);
        validate(&s.dns()).unwrap();
        let e = hearth_common::config::parse::<DaemonSettings>(
            std::path::Path::new("dnsd.toml"),
            "listen = []\nzone = []\n[access]\nadmins = 1\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("admins"), "{e}");
    }

    #[test]
    fn the_shipped_sandbox_and_example_configs_are_valid() {
        let template = include_str!("../sandbox.toml").replace("@DNS_PORT@", "5353");
        // The testbed's two forms of @DNS_GATEWAYS@ (outside or inside its
        // namespace).
        let sandbox = template.replace("@DNS_GATEWAYS@", "# (outside)");
        let in_netns =
            template.replace("@DNS_GATEWAYS@", "gateway_port = 53\ngateway_poll_secs = 1");
        let example = include_str!("../hearth-dnsd.example.toml");
        for (file, text) in [
            ("sandbox.toml", sandbox.as_str()),
            ("sandbox.toml in the namespace", in_netns.as_str()),
            ("example", example),
        ] {
            let s: DaemonSettings = hearth_common::config::parse(std::path::Path::new(file), text)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            validate(&s.dns()).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let s: DaemonSettings =
            hearth_common::config::parse(std::path::Path::new("sandbox.toml"), &sandbox).unwrap();
        let test_local = DnsName::parse("test.local").unwrap();
        assert!(
            s.zones.iter().any(|z| test_local.is_within(&z.name)),
            "the demo's test.local lies in a sandbox zone"
        );
    }

    #[test]
    fn rule_breaks_are_refused() {
        let z = |n: &str| ZoneConfig::new(DnsName::parse(n).unwrap(), vec![]);
        let ip = Address::parse("10.0.0.1").unwrap();
        assert!(validate_zones(&[]).is_err());
        let e = validate_zones(&[z("home.arpa")]).unwrap_err();
        assert!(e.0.contains("ns.home.arpa"), "{e}");
        let mut ok = z("home.arpa");
        ok.ns_addresses = vec![ip];
        let e = validate_zones(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(e.0.contains("twice"), "{e}");
        let mut outside = z("lab.example");
        outside.ns_name = Some(DnsName::parse("ns.elsewhere.net").unwrap());
        validate_zones(&[ok, outside]).unwrap();
    }
}

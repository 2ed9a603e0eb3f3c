//! hearth-dhcpd's configuration.
//!
//! ```toml
//! zone = "home.arpa"          # names: HOSTNAME.<domain>.<zone>; also the search domain
//! lease_secs = 3600           # lease time handed out
//! offer_secs = 60             # how long an offered address is held for the client
//! decline_hold_secs = 600     # how long an address a client declined (in use) is set aside
//! poll_secs = 10              # how often netd's domains are read again (its Changed signal also wakes)
//! expire_secs = 5             # how often ended leases are swept
//! port = 67                   # server port; client replies go to port + 1
//! oui_file = "/usr/share/ieee-data/oui.txt"   # vendors by MAC prefix; absent: no vendor
//!
//! [[pool]]                    # optional: a domain's range (default: every host but the gateway)
//! domain = "cams"
//! first = "10.77.5.100"
//! last = "10.77.5.199"
//!
//! [access]
//! service_users = ["hearth-intentd"]
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;

use hearth_common::types::{DnsName, DomainId};
use serde::Deserialize;

/// One domain's configured range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The domain.
    pub domain: DomainId,
    /// First address handed out.
    pub first: Ipv4Addr,
    /// Last address handed out.
    pub last: Ipv4Addr,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpConfig {
    /// The zone the lease names go under (`home.arpa` when not given).
    #[serde(default)]
    pub zone: Option<DnsName>,
    /// Lease time (seconds).
    #[serde(default = "default_lease")]
    pub lease_secs: u32,
    /// How long an offer holds its address (seconds).
    #[serde(default = "default_offer")]
    pub offer_secs: u32,
    /// How long a declined address is set aside (seconds).
    #[serde(default = "default_decline")]
    pub decline_hold_secs: u32,
    /// How often netd's domains are read (seconds).
    #[serde(default = "default_poll")]
    pub poll_secs: u32,
    /// How often ended leases are swept (seconds).
    #[serde(default = "default_expire")]
    pub expire_secs: u32,
    /// The server port (67).
    #[serde(default = "default_port")]
    pub port: u16,
    /// IEEE's OUI list.
    #[serde(default = "default_oui")]
    pub oui_file: PathBuf,
    /// Ranges of some domains.
    #[serde(default)]
    pub pool: Vec<PoolConfig>,
    /// Who may call the interface.
    #[serde(default)]
    pub access: hearth_runtime::AccessConfig,
}

fn default_lease() -> u32 {
    3600
}
fn default_offer() -> u32 {
    60
}
fn default_decline() -> u32 {
    600
}
fn default_poll() -> u32 {
    10
}
fn default_expire() -> u32 {
    5
}
fn default_port() -> u16 {
    67
}
fn default_oui() -> PathBuf {
    PathBuf::from("/usr/share/ieee-data/oui.txt")
}

impl hearth_runtime::DaemonConfig for DhcpConfig {
    fn access(&self) -> &hearth_runtime::AccessConfig {
        &self.access
    }
}

impl DhcpConfig {
    /// Checks what serde cannot: positive times, ordered ranges, one range
    /// per domain.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [
            ("lease_secs", self.lease_secs),
            ("offer_secs", self.offer_secs),
            ("poll_secs", self.poll_secs),
            ("expire_secs", self.expire_secs),
        ] {
            if v == 0 {
                return Err(format!("{k} must be at least 1"));
            }
        }
        if self.port == 0 || self.port == u16::MAX {
            return Err(format!("port {} cannot be used", self.port));
        }
        for (i, p) in self.pool.iter().enumerate() {
            if u32::from(p.first) > u32::from(p.last) {
                return Err(format!(
                    "pool of {}: first {} is after last {}",
                    p.domain, p.first, p.last
                ));
            }
            if self.pool[..i].iter().any(|q| q.domain == p.domain) {
                return Err(format!("pool of {} is given twice", p.domain));
            }
        }
        Ok(())
    }

    /// The zone lease names go under.
    pub fn zone(&self) -> &str {
        self.zone.as_ref().map_or("home.arpa", DnsName::as_str)
    }

    /// The configured range of a domain, if any.
    pub fn range_of(&self, domain: &DomainId) -> Option<(Ipv4Addr, Ipv4Addr)> {
        self.pool
            .iter()
            .find(|p| &p.domain == domain)
            .map(|p| (p.first, p.last))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_parse() {
        for f in ["hearth-dhcpd.example.toml", "sandbox.toml"] {
            let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let c: DhcpConfig = hearth_common::config::load(&p).unwrap();
            c.validate().unwrap();
        }
    }

    #[test]
    fn defaults_and_checks() {
        let p = std::path::Path::new("dhcpd.toml");
        let c: DhcpConfig = hearth_common::config::parse(p, "").unwrap();
        assert_eq!(c.zone(), "home.arpa");
        assert_eq!(c.lease_secs, 3600);
        c.validate().unwrap();
        let e = hearth_common::config::parse::<DhcpConfig>(p, "leases = 1\n").unwrap_err();
        assert!(e.to_string().contains("leases"), "{e}");
        let c: DhcpConfig = hearth_common::config::parse(
            p,
            "[[pool]]\ndomain = \"cams\"\nfirst = \"10.0.0.9\"\nlast = \"10.0.0.2\"\n",
        )
        .unwrap();
        assert!(c.validate().unwrap_err().contains("after"));
    }
}

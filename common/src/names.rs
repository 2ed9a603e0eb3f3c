//! Bus names, object paths and interface names of the Hearth daemons.
//!
//! Each daemon owns one well-known name, serves one object at the matching
//! path and implements one interface of the same name.

/// One Hearth daemon as seen on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Service {
    /// Short name used in logs, unit names and `hearthctl status`.
    pub short: &'static str,
    /// Well-known bus name, also the interface name.
    pub bus_name: &'static str,
    /// Object path of the daemon's single object.
    pub path: &'static str,
    /// The executable (and systemd unit) name.
    pub unit: &'static str,
}

/// hearth-intentd, the intent gate.
pub const INTENT: Service = Service {
    short: "intent",
    bus_name: "org.hearth.Intent1",
    path: "/org/hearth/Intent1",
    unit: "hearth-intentd",
};
/// hearth-netd, network domains.
pub const NETWORK: Service = Service {
    short: "network",
    bus_name: "org.hearth.Network1",
    path: "/org/hearth/Network1",
    unit: "hearth-netd",
};
/// hearth-pkid, the appliance CA.
pub const PKI: Service = Service {
    short: "pki",
    bus_name: "org.hearth.Pki1",
    path: "/org/hearth/Pki1",
    unit: "hearth-pkid",
};
/// hearth-attestd, TPM attestation.
pub const ATTESTATION: Service = Service {
    short: "attestation",
    bus_name: "org.hearth.Attestation1",
    path: "/org/hearth/Attestation1",
    unit: "hearth-attestd",
};
/// hearth-dnsd, the home zone's DNS authority.
pub const DNS: Service = Service {
    short: "dns",
    bus_name: "org.hearth.Dns1",
    path: "/org/hearth/Dns1",
    unit: "hearth-dnsd",
};

/// hearth-dhcpd, addresses for every domain and the device inventory.
pub const DHCP: Service = Service {
    short: "dhcp",
    bus_name: "org.hearth.Dhcp1",
    path: "/org/hearth/Dhcp1",
    unit: "hearth-dhcpd",
};

/// Every daemon, in start order (dependencies first).
pub const ALL: [Service; 6] = [PKI, ATTESTATION, NETWORK, DNS, DHCP, INTENT];

/// Looks a service up by its short name, unit name or bus name.
pub fn service(name: &str) -> Option<Service> {
    ALL.into_iter()
        .find(|s| s.short == name || s.unit == name || s.bus_name == name)
}

/// The interface every daemon serves beside its own, for `hearthctl status`.
pub const DAEMON_INTERFACE: &str = "org.hearth.Daemon1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_agree() {
        for s in ALL {
            assert_eq!(s.path, format!("/{}", s.bus_name.replace('.', "/")));
            assert!(s.unit.starts_with("hearth-"));
            assert_eq!(service(s.short), Some(s));
            assert_eq!(service(s.unit), Some(s));
        }
        assert_eq!(service("nope"), None);
    }
}

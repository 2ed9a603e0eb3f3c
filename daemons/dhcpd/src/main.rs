//! hearth-dhcpd: DHCPv4 for every network domain and the device inventory,
//! served as `org.hearth.Dhcp1`. All logic lives in the `hearth_dhcpd`
//! library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hearth_runtime::main::<hearth_dhcpd::DhcpConfig, _, _, _>(
        hearth_common::names::DHCP,
        |ctx, cfg| async move { hearth_dhcpd::start(ctx, cfg).await },
    )
}

//! `hearthctl devices`: the device inventory over `org.hearth.Dhcp1`, read
//! through the typed calls of [`hearth_common::contract::dhcp`].

use hearth_common::contract::decode;
use hearth_common::contract::dhcp::{self as contract, Device, LeaseState};
use hearth_common::proxies::dhcp::DhcpProxy;
use hearth_common::HearthError;

use super::{json, opt, table_of, Output};
use crate::cli::devices::Command;

/// The `--json` form of a contract value.
/// The device inventory as `hearthctl devices list` shows it.
fn devices_table(list: &[Device]) -> String {
    if list.is_empty() {
        return "no devices yet".to_string();
    }
    let headers = [
        "MAC",
        "DOMAIN",
        "ADDRESS",
        "HOSTNAME",
        "NAME",
        "RESERVED",
        "LAST SEEN",
        "VENDOR",
    ];
    table_of(headers, list, |d| {
        [
            d.mac.to_string(),
            opt(&d.domain),
            opt(&d.address),
            opt(&d.hostname),
            opt(&d.name),
            opt(&d.reserved),
            when(d.last_seen),
            opt(&d.vendor),
        ]
    })
}

/// A read answer of Dhcp1 (a playbook's step), shown as the matching
/// command shows it.
pub fn answer(call: &str, text: &str) -> Option<String> {
    match call {
        "dhcp.ListDevices" => decode::<Vec<Device>>(call, text)
            .ok()
            .map(|l| devices_table(&l)),
        _ => None,
    }
}

/// Runs one devices command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let dhcp = DhcpProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let list = contract::devices(&dhcp).await?;
            Ok(Output::ok(json(&list)?, devices_table(&list)))
        }
        Command::Show { device } => {
            let d = contract::device(&dhcp, &device).await?;
            let lease = match &d.lease {
                None => "none".to_string(),
                Some(l) => format!(
                    "{} {} until {}",
                    l.address,
                    match l.state {
                        LeaseState::Bound => "bound",
                        LeaseState::Offered => "offered",
                    },
                    when(Some(l.expires))
                ),
            };
            let rows = [
                ("mac", d.mac.to_string()),
                ("vendor", opt(&d.vendor)),
                ("domain", opt(&d.domain)),
                ("address", opt(&d.address)),
                ("hostname", opt(&d.hostname)),
                ("name", opt(&d.name)),
                ("lease", lease),
                ("reserved", opt(&d.reserved)),
                ("first seen", when(d.first_seen)),
                ("last seen", when(d.last_seen)),
            ];
            let text = rows
                .iter()
                .map(|(k, v)| format!("{k:<11} {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output::ok(json(&d)?, text))
        }
        Command::Reserve {
            device,
            address,
            dry_run,
        } => {
            let r = contract::reserve(&dhcp, &device, &address, dry_run).await?;
            let verb = if r.dry_run {
                "would reserve"
            } else {
                "reserved"
            };
            let text = format!("{verb} {} for {} in {}", r.address, r.mac, r.domain);
            Ok(Output::ok(json(&r)?, text))
        }
        Command::Unreserve { device, dry_run } => {
            let r = contract::release_reservation(&dhcp, &device, dry_run).await?;
            let verb = if r.dry_run {
                "would release"
            } else {
                "released"
            };
            let text = format!("{verb} the reservation of {} for {}", r.address, r.mac);
            Ok(Output::ok(json(&r)?, text))
        }
        Command::Forget { device, dry_run } => {
            let f = contract::forget(&dhcp, &device, dry_run).await?;
            let verb = if f.dry_run { "would forget" } else { "forgot" };
            let text = format!("{verb} {}", f.device.mac);
            Ok(Output::ok(json(&f)?, text))
        }
        Command::Pools => {
            let pools = contract::pools(&dhcp).await?;
            let headers = [
                "DOMAIN", "SUBNET", "POOL", "SIZE", "LEASED", "RESERVED", "FREE", "",
            ];
            let text = table_of(headers, &pools, |p| {
                [
                    p.domain.to_string(),
                    p.subnet.to_string(),
                    format!("{}-{}", p.first, p.last),
                    p.size.to_string(),
                    p.leased.to_string(),
                    p.reserved.to_string(),
                    p.free.to_string(),
                    if p.full { "FULL" } else { "" }.to_string(),
                ]
            });
            Ok(Output::ok(json(&pools)?, text))
        }
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn when(v: Option<u64>) -> String {
    let Some(secs) = v else {
        return "-".into();
    };
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(when(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(when(Some(1_796_256_000)), "2026-12-03 00:00:00");
        assert_eq!(when(None), "-");
    }
}

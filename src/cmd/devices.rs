//! `hearthctl devices`: the device inventory over `org.hearth.Dhcp1`.

use hearth_common::proxies::dhcp::DhcpProxy;
use hearth_common::HearthError;
use serde_json::Value;

use super::{table, Output};
use crate::cli::devices::Command;

/// Runs one devices command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let dhcp = DhcpProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let json = parse(&dhcp.list_devices().await?)?;
            let rows: Vec<Vec<String>> = json
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    vec![
                        s(&d["mac"]),
                        s(&d["domain"]),
                        s(&d["address"]),
                        s(&d["hostname"]),
                        s(&d["name"]),
                        s(&d["reserved"]),
                        when(&d["last_seen"]),
                        s(&d["vendor"]),
                    ]
                })
                .collect();
            let text = if rows.is_empty() {
                "no devices yet".to_string()
            } else {
                table(
                    &[
                        "MAC",
                        "DOMAIN",
                        "ADDRESS",
                        "HOSTNAME",
                        "NAME",
                        "RESERVED",
                        "LAST SEEN",
                        "VENDOR",
                    ],
                    &rows,
                )
            };
            Ok(Output::ok(json, text))
        }
        Command::Show { device } => {
            let json = parse(&dhcp.show_device(&device).await?)?;
            let lease = match &json["lease"] {
                Value::Null => "none".to_string(),
                l => format!(
                    "{} {} until {}",
                    s(&l["address"]),
                    s(&l["state"]),
                    when(&l["expires"])
                ),
            };
            let rows = [
                ("mac", s(&json["mac"])),
                ("vendor", s(&json["vendor"])),
                ("domain", s(&json["domain"])),
                ("address", s(&json["address"])),
                ("hostname", s(&json["hostname"])),
                ("name", s(&json["name"])),
                ("lease", lease),
                ("reserved", s(&json["reserved"])),
                ("first seen", when(&json["first_seen"])),
                ("last seen", when(&json["last_seen"])),
            ];
            let text = rows
                .iter()
                .map(|(k, v)| format!("{k:<11} {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output::ok(json, text))
        }
        Command::Reserve {
            device,
            address,
            dry_run,
        } => {
            let json = parse(&dhcp.reserve(&device, &address, dry_run).await?)?;
            let verb = if dry_run { "would reserve" } else { "reserved" };
            let text = format!(
                "{verb} {} for {} in {}",
                s(&json["address"]),
                s(&json["mac"]),
                s(&json["domain"])
            );
            Ok(Output::ok(json, text))
        }
        Command::Unreserve { device, dry_run } => {
            let json = parse(&dhcp.release_reservation(&device, dry_run).await?)?;
            let verb = if dry_run { "would release" } else { "released" };
            let text = format!(
                "{verb} the reservation of {} for {}",
                s(&json["address"]),
                s(&json["mac"])
            );
            Ok(Output::ok(json, text))
        }
        Command::Forget { device, dry_run } => {
            let json = parse(&dhcp.forget(&device, dry_run).await?)?;
            let verb = if dry_run { "would forget" } else { "forgot" };
            let text = format!("{verb} {}", s(&json["device"]["mac"]));
            Ok(Output::ok(json, text))
        }
        Command::Pools => {
            let json = parse(&dhcp.pools().await?)?;
            let rows: Vec<Vec<String>> = json
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    vec![
                        s(&p["domain"]),
                        s(&p["subnet"]),
                        format!("{}-{}", s(&p["first"]), s(&p["last"])),
                        s(&p["size"]),
                        s(&p["leased"]),
                        s(&p["reserved"]),
                        s(&p["free"]),
                        if p["full"] == true { "FULL" } else { "" }.to_string(),
                    ]
                })
                .collect();
            let text = table(
                &[
                    "DOMAIN", "SUBNET", "POOL", "SIZE", "LEASED", "RESERVED", "FREE", "",
                ],
                &rows,
            );
            Ok(Output::ok(json, text))
        }
    }
}

fn parse(text: &str) -> Result<Value, HearthError> {
    serde_json::from_str(text)
        .map_err(|e| HearthError::Internal(format!("hearth-dhcpd sent invalid JSON: {e}")))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC.
fn when(v: &Value) -> String {
    let Some(secs) = v.as_u64() else {
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
        assert_eq!(when(&Value::from(0u64)), "1970-01-01 00:00:00");
        assert_eq!(when(&Value::from(1_796_256_000u64)), "2026-12-03 00:00:00");
        assert_eq!(when(&Value::Null), "-");
    }
}

//! `hearthctl dns`: records of the home zones, over `org.hearth.Dns1`,
//! read through the typed calls of [`hearth_common::contract::dns`].

use hearth_common::contract::decode;
use hearth_common::contract::dns::{self as contract, Record, Zone, ZoneDiff};
use hearth_common::proxies::dns::DnsProxy;
use hearth_common::HearthError;

use super::{json, table_of, Output};
use crate::cli::dns::Command;

/// Runs one dns command.
/// A read answer of Dns1 (a playbook's step), shown as the matching
/// command shows it.
pub fn answer(call: &str, text: &str) -> Option<String> {
    match call {
        "dns.List" => decode::<Vec<Zone>>(call, text)
            .ok()
            .map(|z| render_list(&z)),
        _ => None,
    }
}

pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let dns = DnsProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let zones = contract::zones(&dns).await?;
            Ok(Output::ok(json(&zones)?, render_list(&zones)))
        }
        Command::Show { name } => {
            let d = contract::name_records(&dns, &name).await?;
            let text = if d.records.is_empty() {
                format!("{name} has no records (zone {})", d.zone)
            } else {
                record_table(&d.records)
            };
            Ok(Output::ok(json(&d)?, text))
        }
        Command::Add {
            name,
            address,
            dry_run,
        } => change(contract::add_record(&dns, &name, &address, dry_run).await?),
        Command::Alias {
            name,
            target,
            dry_run,
        } => change(contract::add_alias(&dns, &name, &target, dry_run).await?),
        Command::Remove {
            name,
            address: Some(address),
            dry_run,
        } => change(contract::remove_record(&dns, &name, &address, dry_run).await?),
        Command::Remove {
            name,
            address: None,
            dry_run,
        } => change(contract::remove(&dns, &name, dry_run).await?),
    }
}

fn record_table(records: &[Record]) -> String {
    table_of(["NAME", "TYPE", "VALUE", "TTL"], records, |r| {
        [
            r.name.to_string(),
            r.rtype.to_string(),
            r.value.clone(),
            r.ttl.to_string(),
        ]
    })
}

fn render_list(zones: &[Zone]) -> String {
    let mut out = Vec::new();
    for z in zones {
        let ns_addrs: Vec<String> = z.ns_addresses.iter().map(ToString::to_string).collect();
        out.push(format!(
            "zone {} (serial {}, name server {}{})",
            z.zone,
            z.serial,
            z.ns,
            if ns_addrs.is_empty() {
                String::new()
            } else {
                format!(" at {}", ns_addrs.join(", "))
            }
        ));
        if z.records.is_empty() {
            out.push("  (no records)".into());
        } else {
            out.push(record_table(&z.records));
        }
    }
    out.join("\n")
}

/// A change prints its diff's one line (a preview says so first).
fn change(diff: ZoneDiff) -> Result<Output, HearthError> {
    let text = if diff.dry_run {
        format!("Preview, nothing changed: {diff}")
    } else {
        diff.to_string()
    };
    Ok(Output::ok(json(&diff)?, text))
}

//! `hearthctl dns`: records of the home zones, over `org.hearth.Dns1`.

use hearth_common::proxies::dns::DnsProxy;
use hearth_common::HearthError;
use serde_json::Value;

use super::{table, Output};
use crate::cli::dns::Command;

/// Runs one dns command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let dns = DnsProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let json = parse(&dns.list().await?)?;
            Ok(Output::ok(json.clone(), render_list(&json)))
        }
        Command::Show { name } => {
            let json = parse(&dns.describe(&name).await?)?;
            let records = json["records"].as_array().cloned().unwrap_or_default();
            let text = if records.is_empty() {
                format!("{name} has no records (zone {})", str_of(&json["zone"]))
            } else {
                record_table(&records)
            };
            Ok(Output::ok(json, text))
        }
        Command::Add {
            name,
            address,
            dry_run,
        } => change(dns.add_record(&name, &address, dry_run).await?),
        Command::Alias {
            name,
            target,
            dry_run,
        } => change(dns.add_alias(&name, &target, dry_run).await?),
        Command::Remove {
            name,
            address: Some(address),
            dry_run,
        } => change(dns.remove_record(&name, &address, dry_run).await?),
        Command::Remove {
            name,
            address: None,
            dry_run,
        } => change(dns.remove(&name, dry_run).await?),
    }
}

fn parse(text: &str) -> Result<Value, HearthError> {
    serde_json::from_str(text)
        .map_err(|e| HearthError::Internal(format!("hearth-dnsd sent invalid JSON: {e}")))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn record_row(r: &Value) -> Vec<String> {
    vec![
        str_of(&r["name"]),
        str_of(&r["type"]),
        str_of(&r["value"]),
        str_of(&r["ttl"]),
    ]
}

fn record_table(records: &[Value]) -> String {
    let rows: Vec<Vec<String>> = records.iter().map(record_row).collect();
    table(&["NAME", "TYPE", "VALUE", "TTL"], &rows)
}

fn render_list(json: &Value) -> String {
    let mut out = Vec::new();
    for z in json.as_array().map(Vec::as_slice).unwrap_or_default() {
        let ns_addrs: Vec<String> = z["ns_addresses"]
            .as_array()
            .map(|a| a.iter().map(str_of).collect())
            .unwrap_or_default();
        out.push(format!(
            "zone {} (serial {}, name server {}{})",
            str_of(&z["zone"]),
            str_of(&z["serial"]),
            str_of(&z["ns"]),
            if ns_addrs.is_empty() {
                String::new()
            } else {
                format!(" at {}", ns_addrs.join(", "))
            }
        ));
        let records = z["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() {
            out.push("  (no records)".into());
        } else {
            out.push(record_table(&records));
        }
    }
    out.join("\n")
}

fn change(text: String) -> Result<Output, HearthError> {
    let json = parse(&text)?;
    let dry = json["dry_run"].as_bool().unwrap_or(false);
    let mut lines = Vec::new();
    for (key, done, preview) in [
        ("added", "added", "would add"),
        ("removed", "removed", "would remove"),
    ] {
        let verb = if dry { preview } else { done };
        for r in json[key].as_array().map(Vec::as_slice).unwrap_or_default() {
            let row = record_row(r);
            lines.push(format!("{verb} {} {} {}", row[0], row[1], row[2]));
        }
    }
    lines.push(format!(
        "zone {} serial {}{}",
        str_of(&json["zone"]),
        if dry { "would become " } else { "now " },
        str_of(&json["serial"])
    ));
    Ok(Output::ok(json, lines.join("\n")))
}

//! `hearthctl net`: network domains over `org.hearth.Network1`.

use hearth_common::proxies::network::NetworkProxy;
use hearth_common::HearthError;
use serde_json::Value;

use super::{table, Output};
use crate::cli::net::Command;

fn parse(s: &str) -> Result<Value, HearthError> {
    serde_json::from_str(s)
        .map_err(|e| HearthError::Internal(format!("hearth-netd answered malformed JSON: {e}")))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn domains_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|l| {
            l.iter()
                .map(|d| {
                    let mut name = text(&d["name"]);
                    if d["admin"] == true {
                        name.push_str(" (admin)");
                    }
                    vec![
                        name,
                        text(&d["bridge"]),
                        text(&d["subnet"]),
                        text(&d["gateway"]),
                        text(&d["ula"]),
                        text(&d["services"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &["DOMAIN", "BRIDGE", "SUBNET", "GATEWAY", "ULA", "SERVICES"],
        &rows,
    )
}

fn matrix_table(matrix: &Value) -> String {
    let Some(m) = matrix.as_object() else {
        return String::new();
    };
    let mut cols: Vec<String> = Vec::new();
    for row in m.values().filter_map(Value::as_object) {
        for k in row.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols.sort_by_key(|c| (c.starts_with("uplink:"), c.clone()));
    let mut headers = vec!["FROM \\ TO"];
    headers.extend(cols.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = m
        .iter()
        .map(|(from, row)| {
            let mut r = vec![from.clone()];
            for c in &cols {
                r.push(if c == from {
                    "self".into()
                } else {
                    text(&row[c])
                });
            }
            r
        })
        .collect();
    table(&headers, &rows)
}

fn change_text(doc: &Value) -> String {
    let verb = if doc["dry_run"] == true {
        "would"
    } else {
        "did"
    };
    let what = match doc["action"].as_str().unwrap_or("") {
        "create" => format!(
            "create domain {} ({} on {}, gateway {})",
            text(&doc["domain"]["name"]),
            text(&doc["domain"]["subnet"]),
            text(&doc["domain"]["bridge"]),
            text(&doc["domain"]["gateway"])
        ),
        "delete" => format!("delete domain {}", text(&doc["name"])),
        "allow" => {
            let a = &doc["allow"];
            let scope = match (a["protocol"].as_str(), &a["port"]) {
                (None, Value::Null) => "everything".to_string(),
                (Some(p), Value::Null) => p.to_string(),
                (p, port) => format!("{}/{}", p.unwrap_or("tcp+udp"), text(port)),
            };
            format!(
                "allow {} to reach {} ({scope})",
                text(&a["from"]),
                text(&a["to"])
            )
        }
        "revoke" => format!(
            "revoke every allow from {} to {}",
            text(&doc["from"]),
            text(&doc["to"])
        ),
        other => other.to_string(),
    };
    format!("{verb}: {what}\n\n{}", matrix_table(&doc["matrix"]))
}

/// Runs one net command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let net = NetworkProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let v = parse(&net.list_domains().await?)?;
            let t = domains_table(&v);
            Ok(Output::ok(v, t))
        }
        Command::Show => {
            let v = parse(&net.show().await?)?;
            let allows: Vec<Vec<String>> = v["allows"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|a| {
                            vec![
                                text(&a["from"]),
                                text(&a["to"]),
                                text(&a["protocol"]),
                                text(&a["port"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let t = format!(
                "admin domain: {}   uplink: {}   pool: {}\n\n{}\n\nallows:\n{}\n\n{}\n\ntable inet hearth: {} rules, {} set elements, in force: {}",
                text(&v["admin"]),
                text(&v["uplink"]),
                text(&v["pool"]),
                domains_table(&v["domains"]),
                table(&["FROM", "TO", "PROTOCOL", "PORT"], &allows),
                matrix_table(&v["matrix"]),
                text(&v["table"]["rules"]),
                text(&v["table"]["elements"]),
                text(&v["table"]["current"]),
            );
            Ok(Output::ok(v, t))
        }
        Command::Matrix => {
            let v = parse(&net.matrix().await?)?;
            let t = matrix_table(&v["matrix"]);
            Ok(Output::ok(v, t))
        }
        Command::Create {
            name,
            subnet,
            dry_run,
        } => {
            let s = net
                .create_domain(&name, subnet.as_deref().unwrap_or(""), dry_run)
                .await?;
            let v = parse(&s)?;
            let t = change_text(&v);
            Ok(Output::ok(v, t))
        }
        Command::Delete { name, dry_run } => {
            let v = parse(&net.delete_domain(&name, dry_run).await?)?;
            let t = change_text(&v);
            Ok(Output::ok(v, t))
        }
        Command::Allow {
            from,
            to,
            port,
            protocol,
            dry_run,
        } => {
            if port == Some(0) {
                return Err(HearthError::InvalidArgument(
                    "invalid port \"0\": a port is a whole number from 1 to 65535".into(),
                ));
            }
            let s = net
                .allow(
                    &from,
                    &to,
                    port.unwrap_or(0),
                    protocol.as_deref().unwrap_or(""),
                    dry_run,
                )
                .await?;
            let v = parse(&s)?;
            let t = change_text(&v);
            Ok(Output::ok(v, t))
        }
        Command::Revoke { from, to, dry_run } => {
            let v = parse(&net.revoke(&from, &to, dry_run).await?)?;
            let t = change_text(&v);
            Ok(Output::ok(v, t))
        }
        Command::Reconcile => {
            let v = parse(&net.reconcile().await?)?;
            let t = format!("{} change(s)", text(&v["changes"]));
            Ok(Output::ok(v, t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_renders_one_row_per_domain_with_the_uplink_last() {
        let m = serde_json::json!({
            "admin": {"lan": "all", "uplink:eth0": "all"},
            "lan": {"admin": "none", "uplink:eth0": "all"},
        });
        let t = matrix_table(&m);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].ends_with("uplink:eth0"), "{t}");
        assert!(
            lines[2].starts_with("lan") && lines[2].contains("none"),
            "{t}"
        );
    }

    #[test]
    fn a_dry_run_says_would() {
        let doc =
            serde_json::json!({"dry_run": true, "action": "delete", "name": "iot", "matrix": {}});
        assert!(change_text(&doc).starts_with("would: delete domain iot"));
    }
}

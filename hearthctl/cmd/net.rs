//! `hearthctl net`: network domains over `org.hearth.Network1`, read
//! through the typed calls of [`hearth_common::contract::network`].

use hearth_common::contract::decode;
use hearth_common::contract::network::{
    self as contract, Domain, Matrix, MatrixRows, NetChange, Show,
};
use hearth_common::proxies::network::NetworkProxy;
use hearth_common::HearthError;

use super::{json, opt, table, table_of, Output};
use crate::cli::net::Command;

/// The `--json` form of a contract value.
fn domains_table(list: &[Domain]) -> String {
    let headers = ["DOMAIN", "BRIDGE", "SUBNET", "GATEWAY", "ULA", "SERVICES"];
    table_of(headers, list, |d| {
        let mut name = d.name.to_string();
        if d.admin {
            name.push_str(" (admin)");
        }
        [
            name,
            d.bridge.clone(),
            d.subnet.to_string(),
            d.gateway.to_string(),
            opt(&d.ula),
            d.services.join(","),
        ]
    })
}

fn matrix_table(m: &MatrixRows) -> String {
    let mut cols: Vec<String> = Vec::new();
    for row in m.values() {
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
            let mut r = vec![from.to_string()];
            for c in &cols {
                r.push(if c == from.as_str() {
                    "self".into()
                } else {
                    row.get(c).map_or_else(|| "-".into(), ToString::to_string)
                });
            }
            r
        })
        .collect();
    table(&headers, &rows)
}

/// A change's answer: its one-line rendering, said as a preview on a dry
/// run; `--json` prints the diff.
fn change(diff: &NetChange) -> Result<Output, HearthError> {
    let text = if diff.dry_run {
        format!("Dry run: {diff}")
    } else {
        diff.to_string()
    };
    Ok(Output::ok(json(diff)?, text))
}

/// `hearthctl net show`'s text.
fn show_text(v: &Show) -> String {
    let allows = table_of(["FROM", "TO", "PROTOCOL", "PORT"], &v.allows, |a| {
        [
            a.from.to_string(),
            a.to.to_string(),
            opt(&a.protocol),
            opt(&a.port),
        ]
    });
    let t = format!(
        "admin domain: {}   uplink: {}   pool: {}\n\n{}\n\nallows:\n{}\n\n{}\n\ntable inet hearth: {} rules, {} set elements, in force: {}",
        v.admin,
        opt(&v.uplink),
        opt(&v.pool),
        domains_table(&v.domains),
        allows,
        matrix_table(&v.matrix),
        v.table.rules,
        v.table.elements,
        opt(&v.table.current),
    );
    t
}

/// A read answer of Network1 (a playbook's step), shown as the matching
/// command shows it.
pub fn answer(call: &str, text: &str) -> Option<String> {
    match call {
        "net.ListDomains" => decode::<Vec<Domain>>(call, text)
            .ok()
            .map(|l| domains_table(&l)),
        "net.Show" => decode::<Show>(call, text).ok().map(|v| show_text(&v)),
        "net.Matrix" => decode::<Matrix>(call, text)
            .ok()
            .map(|m| matrix_table(&m.matrix)),
        _ => None,
    }
}

/// Runs one net command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let net = NetworkProxy::new(conn).await?;
    match cmd {
        Command::List => {
            let list = contract::domains(&net).await?;
            Ok(Output::ok(json(&list)?, domains_table(&list)))
        }
        Command::Show => {
            let v = contract::show(&net).await?;
            Ok(Output::ok(json(&v)?, show_text(&v)))
        }
        Command::Matrix => {
            let m = contract::matrix(&net).await?;
            let t = matrix_table(&m.matrix);
            Ok(Output::ok(json(&m)?, t))
        }
        Command::Create {
            name,
            subnet,
            dry_run,
        } => change(
            &contract::create_domain(&net, &name, subnet.as_deref().unwrap_or(""), dry_run).await?,
        ),
        Command::Delete { name, dry_run } => {
            change(&contract::delete_domain(&net, &name, dry_run).await?)
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
            change(
                &contract::allow(
                    &net,
                    &from,
                    &to,
                    port.unwrap_or(0),
                    protocol.as_deref().unwrap_or(""),
                    dry_run,
                )
                .await?,
            )
        }
        Command::Revoke { from, to, dry_run } => {
            change(&contract::revoke(&net, &from, &to, dry_run).await?)
        }
        Command::Reconcile => {
            let r = contract::reconcile(&net).await?;
            let t = format!("{} change(s)", r.changes);
            Ok(Output::ok(json(&r)?, t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_common::contract::decode;

    #[test]
    fn matrix_renders_one_row_per_domain_with_the_uplink_last() {
        let m: MatrixRows = decode(
            "Matrix",
            r#"{"admin": {"lan": "all", "uplink:eth0": "all"},
                "lan": {"admin": "none", "uplink:eth0": "all"}}"#,
        )
        .unwrap();
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
    fn a_change_prints_its_diff_in_one_line_and_a_dry_run_says_so() {
        let diff: NetChange = decode(
            "Allow",
            r#"{"action":"allow","dry_run":true,"opened":[{"from":"lan","to":"cams","protocol":"tcp","port":554}],
                "closed":[],"domains_created":[],"domains_removed":[],"dhcp_scopes_added":[],"dhcp_scopes_removed":[]}"#,
        )
        .unwrap();
        let o = change(&diff).unwrap();
        assert_eq!(
            o.text,
            "Dry run: Opens lan → cams tcp/554. Nothing else changes."
        );
        let printed: NetChange = serde_json::from_value(o.json).unwrap();
        assert_eq!(printed.opened[0].port.map(|p| p.get()), Some(554));
        assert_eq!(printed, diff);
    }
}

//! `hearthctl attest`: status, log and PCRs of hearth-attestd.

use hearth_common::proxies::attestation::AttestationProxy;
use hearth_common::HearthError;
use serde_json::Value;

use super::{table, Output};
use crate::cli::attest::Command;

fn parse(doc: &str) -> Result<Value, HearthError> {
    serde_json::from_str(doc)
        .map_err(|e| HearthError::Internal(format!("hearth-attestd sent unreadable JSON: {e}")))
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Runs one attest command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let p = AttestationProxy::new(conn).await?;
    match cmd {
        Command::Status => {
            let v = parse(&p.status().await?)?;
            let consistent = v["consistent"].as_bool().unwrap_or(false);
            let mut text = format!(
                "measurement log: {} events, {}\nregister {}: {}\ndeletion protected: {}",
                s(&v["events"]),
                if consistent {
                    "consistent with the TPM register"
                } else {
                    "INCONSISTENT with the TPM register"
                },
                s(&v["register_name"]),
                s(&v["register"]),
                s(&v["deletion_protected"]),
            );
            if let Some(d) = v["detail"].as_str() {
                text.push_str(&format!("\ndetail: {d}"));
            }
            Ok(if consistent {
                Output::ok(v, text)
            } else {
                Output::failed(v, text)
            })
        }
        Command::Log { kind } => {
            let v = parse(&p.log().await?)?;
            let records: Vec<Value> = v
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| kind.as_deref().is_none_or(|k| r["content"]["kind"] == k))
                .collect();
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    let sha = s(&r["content"]["sha256"]);
                    vec![
                        s(&r["recnum"]),
                        s(&r["content"]["kind"]),
                        s(&r["content"]["name"]),
                        sha.chars().take(16).collect(),
                    ]
                })
                .collect();
            let text = table(&["#", "KIND", "NAME", "SHA256"], &rows);
            Ok(Output::ok(Value::Array(records), text))
        }
        Command::Pcrs => {
            let v = parse(&p.pcrs().await?)?;
            let mut rows: Vec<(u32, String)> = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, val)| (k.parse().unwrap_or(u32::MAX), s(val)))
                        .collect()
                })
                .unwrap_or_default();
            rows.sort();
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|(k, val)| vec![k.to_string(), val])
                .collect();
            Ok(Output::ok(v, table(&["PCR", "SHA256"], &rows)))
        }
    }
}

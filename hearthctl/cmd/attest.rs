//! `hearthctl attest`: status, log and PCRs of hearth-attestd, read through
//! the typed calls of [`hearth_common::contract::attestation`].

use hearth_common::contract::attestation::{self as contract, Status};
use hearth_common::contract::decode;
use hearth_common::proxies::attestation::AttestationProxy;
use hearth_common::HearthError;

use super::{json, table_of, Output};
use crate::cli::attest::Command;

/// Runs one attest command.
/// `hearthctl attest status`'s text.
fn status_text(v: &Status) -> String {
    let mut text = format!(
        "measurement log: {} events, {}\nregister {}: {}\ndeletion protected: {}",
        v.events,
        if v.consistent {
            "consistent with the TPM register"
        } else {
            "INCONSISTENT with the TPM register"
        },
        v.register_name,
        v.register.as_deref().unwrap_or("-"),
        v.deletion_protected,
    );
    if let Some(d) = &v.detail {
        text.push_str(&format!("\ndetail: {d}"));
    }
    text
}

/// A read answer of Attestation1 (a playbook's step), shown as the
/// matching command shows it.
pub fn answer(call: &str, text: &str) -> Option<String> {
    match call {
        "attest.Status" => decode::<Status>(call, text).ok().map(|v| status_text(&v)),
        _ => None,
    }
}

pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let p = AttestationProxy::new(conn).await?;
    match cmd {
        Command::Status => {
            let v = contract::status(&p).await?;
            let text = status_text(&v);
            Ok(if v.consistent {
                Output::ok(json(&v)?, text)
            } else {
                Output::failed(json(&v)?, text)
            })
        }
        Command::Log { kind } => {
            let records: Vec<contract::Event> = contract::log(&p)
                .await?
                .into_iter()
                .filter(|r| kind.as_deref().is_none_or(|k| r.content.kind.as_str() == k))
                .collect();
            let text = table_of(["#", "KIND", "NAME", "SHA256"], &records, |r| {
                [
                    r.recnum.to_string(),
                    r.content.kind.to_string(),
                    r.content.name.clone(),
                    r.content.sha256.chars().take(16).collect(),
                ]
            });
            Ok(Output::ok(json(&records)?, text))
        }
        Command::Pcrs => {
            let pcrs = contract::pcrs(&p).await?;
            let text = table_of(["PCR", "SHA256"], &pcrs, |(k, val)| {
                [k.to_string(), val.clone()]
            });
            Ok(Output::ok(json(&pcrs)?, text))
        }
    }
}

//! `hearthctl pki`: the CA over `org.hearth.Pki1`.

use hearth_common::contract::cli::CrlReport;
use hearth_common::contract::decode;
use hearth_common::contract::pki::{self as contract, names_text, CertificateSummary, Issued};
use hearth_common::proxies::pki::PkiProxy;
use hearth_common::HearthError;

use super::{json, table_of, Output};
use crate::cli::pki::Command;

/// The diff's line, then where the key and chain went (or the chain, for a
/// CSR).
fn issued_text(i: &Issued) -> String {
    let mut t = i.to_string();
    if let Some(k) = &i.key_path {
        t.push_str(&format!("\nkey:   {k}"));
    }
    if let Some(c) = &i.chain_path {
        t.push_str(&format!("\nchain: {c}"));
    }
    if i.key_path.is_none() {
        t.push('\n');
        t.push_str(i.chain_pem.trim_end());
    }
    t
}

/// The inventory as `hearthctl pki list` shows it.
fn certificates_table(list: &[CertificateSummary]) -> String {
    if list.is_empty() {
        return "no certificates issued".to_string();
    }
    let headers = ["SERIAL", "NAMES", "PROFILE", "STATUS", "NOT AFTER"];
    table_of(headers, list, |r| {
        [
            r.serial.clone(),
            names_text(&r.names),
            r.profile.to_string(),
            r.status.to_string(),
            r.not_after.clone(),
        ]
    })
}

/// A read answer of Pki1 (a playbook's step), shown as the matching
/// command shows it.
pub fn answer(call: &str, text: &str) -> Option<String> {
    match call {
        "pki.ListCertificates" => decode::<Vec<CertificateSummary>>(call, text)
            .ok()
            .map(|l| certificates_table(&l)),
        _ => None,
    }
}

/// Runs one pki command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let pki = PkiProxy::new(conn).await?;
    match cmd {
        Command::Init => {
            let v = contract::init(&pki).await?;
            let what = if v.created {
                "created the CA"
            } else {
                "the CA already exists (nothing changed)"
            };
            let text = format!(
                "{what}\nroot SHA-256: {}\nzones: {}\nsubnets: {}",
                v.root_sha256,
                v.zones.len(),
                v.subnets.len(),
            );
            Ok(Output::ok(json(&v)?, text))
        }
        Command::Root => {
            let v = contract::info(&pki).await?;
            let text = format!("{}\n# SHA-256 {}", v.root_pem.trim_end(), v.root_sha256);
            Ok(Output::ok(json(&v)?, text))
        }
        Command::Issue {
            name,
            csr,
            profile,
            days,
        } => {
            let issued = match (name, csr) {
                (_, Some(path)) => {
                    let meta = std::fs::metadata(&path).map_err(|e| {
                        HearthError::InvalidArgument(format!("csr {}: {e}", path.display()))
                    })?;
                    if meta.len() > 1024 * 1024 {
                        return Err(HearthError::InvalidArgument(format!(
                            "csr {}: {} bytes is too large",
                            path.display(),
                            meta.len()
                        )));
                    }
                    let pem = std::fs::read_to_string(&path).map_err(|e| {
                        HearthError::InvalidArgument(format!("csr {}: {e}", path.display()))
                    })?;
                    contract::issue_from_csr(&pki, &pem, &profile, days).await?
                }
                (Some(name), None) => contract::issue_for_name(&pki, &name, &profile, days).await?,
                (None, None) => {
                    return Err(HearthError::InvalidArgument(
                        "give a name or --csr FILE".into(),
                    ))
                }
            };
            Ok(Output::ok(json(&issued)?, issued_text(&issued)))
        }
        Command::Revoke { serial_or_name } => {
            let diff = contract::revoke_certificate(&pki, &serial_or_name).await?;
            let text = format!("{diff} The CRL was republished.");
            Ok(Output::ok(json(&diff)?, text))
        }
        Command::List => {
            let list = contract::certificates(&pki).await?;
            Ok(Output::ok(json(&list)?, certificates_table(&list)))
        }
        Command::Show { serial_or_name } => {
            let shown = contract::certificate(&pki, &serial_or_name).await?;
            let text = shown
                .iter()
                .map(|r| {
                    format!(
                        "serial:     {}\nnames:      {}\nprofile:    {}\nkey:        {} ({})\nnot before: {}\nnot after:  {}\nrevoked:    {}\n{}",
                        r.serial,
                        names_text(&r.names),
                        r.profile,
                        r.key_type,
                        r.key_source,
                        r.not_before,
                        r.not_after,
                        r.revoked.as_ref().map_or("no", |x| x.at.as_str()),
                        r.certificate.trim_end()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            Ok(Output::ok(json(&shown)?, text))
        }
        Command::Crl => {
            let pem = pki.crl().await?;
            let text = pem.trim_end().to_string();
            Ok(Output::ok(json(&CrlReport { crl_pem: pem })?, text))
        }
    }
}

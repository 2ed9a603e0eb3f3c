//! `hearthctl pki`: the CA over `org.hearth.Pki1`.

use hearth_common::proxies::pki::PkiProxy;
use hearth_common::HearthError;
use serde_json::{json, Value};

use super::{table, Output};
use crate::cli::pki::Command;

fn parse(doc: &str) -> Result<Value, HearthError> {
    serde_json::from_str(doc)
        .map_err(|e| HearthError::Internal(format!("hearth-pkid sent invalid JSON: {e}")))
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn names(v: &Value) -> String {
    v["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn issued_text(v: &Value) -> String {
    let mut t = format!(
        "issued {} for {} (profile {}), valid until {}",
        s(v, "serial"),
        names(v),
        s(v, "profile"),
        s(v, "not_after")
    );
    if let Some(k) = v["key_path"].as_str() {
        t.push_str(&format!("\nkey:   {k}"));
    }
    if let Some(c) = v["chain_path"].as_str() {
        t.push_str(&format!("\nchain: {c}"));
    }
    if v["key_path"].is_null() {
        t.push('\n');
        t.push_str(v["chain_pem"].as_str().unwrap_or_default().trim_end());
    }
    t
}

/// Runs one pki command.
pub async fn run(cmd: Command, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let pki = PkiProxy::new(conn).await?;
    match cmd {
        Command::Init => {
            let v = parse(&pki.init().await?)?;
            let what = if v["created"].as_bool() == Some(true) {
                "created the CA"
            } else {
                "the CA already exists (nothing changed)"
            };
            let text = format!(
                "{what}\nroot SHA-256: {}\nzones: {}\nsubnets: {}",
                s(&v, "root_sha256"),
                v["zones"].as_array().map(|a| a.len()).unwrap_or(0),
                v["subnets"].as_array().map(|a| a.len()).unwrap_or(0),
            );
            Ok(Output::ok(v, text))
        }
        Command::Root => {
            let v = parse(&pki.info().await?)?;
            let text = format!(
                "{}\n# SHA-256 {}",
                s(&v, "root_pem").trim_end(),
                s(&v, "root_sha256")
            );
            Ok(Output::ok(
                json!({"root_pem": v["root_pem"], "root_sha256": v["root_sha256"],
                       "zones": v["zones"], "subnets": v["subnets"]}),
                text,
            ))
        }
        Command::Issue {
            name,
            csr,
            profile,
            days,
        } => {
            let doc = match (name, csr) {
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
                    pki.issue_from_csr(&pem, &profile, days).await?
                }
                (Some(name), None) => pki.issue_for_name(&name, &profile, days).await?,
                (None, None) => {
                    return Err(HearthError::InvalidArgument(
                        "give a name or --csr FILE".into(),
                    ))
                }
            };
            let v = parse(&doc)?;
            let text = issued_text(&v);
            Ok(Output::ok(v, text))
        }
        Command::Revoke { serial_or_name } => {
            let v = parse(&pki.revoke_certificate(&serial_or_name).await?)?;
            let serials: Vec<String> = v["revoked"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let text = format!("revoked {}; the CRL was republished", serials.join(", "));
            Ok(Output::ok(v, text))
        }
        Command::List => {
            let v = parse(&pki.list_certificates().await?)?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            vec![
                                s(r, "serial"),
                                names(r),
                                s(r, "profile"),
                                s(r, "status"),
                                s(r, "not_after"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = if rows.is_empty() {
                "no certificates issued".to_string()
            } else {
                table(
                    &["SERIAL", "NAMES", "PROFILE", "STATUS", "NOT AFTER"],
                    &rows,
                )
            };
            Ok(Output::ok(v, text))
        }
        Command::Show { serial_or_name } => {
            let v = parse(&pki.show_certificate(&serial_or_name).await?)?;
            let text = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            format!(
                                "serial:     {}\nnames:      {}\nprofile:    {}\nkey:        {} ({})\nnot before: {}\nnot after:  {}\nrevoked:    {}\n{}",
                                s(r, "serial"),
                                names(r),
                                s(r, "profile"),
                                s(r, "key_type"),
                                s(r, "key_source"),
                                s(r, "not_before"),
                                s(r, "not_after"),
                                r["revoked"]["at"].as_str().unwrap_or("no"),
                                s(r, "certificate").trim_end()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n\n")
                })
                .unwrap_or_default();
            Ok(Output::ok(v, text))
        }
        Command::Crl => {
            let pem = pki.crl().await?;
            let text = pem.trim_end().to_string();
            Ok(Output::ok(json!({ "crl_pem": pem }), text))
        }
    }
}

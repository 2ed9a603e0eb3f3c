//! Running calls: the [`Executor`] trait and its D-Bus implementation, and
//! the [`Measurer`] that measures executed actions into the TPM through
//! hearth-attestd.
//!
//! The D-Bus executor can call only [`hearth_playbook::methods::METHODS`]:
//! a [`Call`] is built from that table by rendering a verified playbook, and
//! its destination, path, interface and member all come from the table.

use std::future::Future;

use hearth_common::catalog::Context;
use hearth_common::contract::{self, network::Domain as NetDomain};
use hearth_common::names;
use hearth_playbook::{ArgValue, Call};
use serde_json::Value;

/// A call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ExecError {
    /// The D-Bus error name (`org.hearth.Error.Conflict`, …) or a local kind.
    pub name: String,
    /// Its message.
    pub message: String,
}

impl ExecError {
    /// True when no daemon answered (not on the bus, no reply, the
    /// connection failed): the call was never judged, so this says nothing
    /// about whether it would succeed later.
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self.name.as_str(),
            "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
                | "org.freedesktop.DBus.Error.NoReply"
                | "org.freedesktop.DBus.Error.Timeout"
                | "org.freedesktop.DBus.Error.TimedOut"
                | "org.freedesktop.DBus.Error.Disconnected"
                | "org.hearth.Error.ZBus"
        )
    }
}

/// Something that runs allow-listed calls.
pub trait Executor: Send + Sync + 'static {
    /// Makes the call; returns the method's string result.
    fn call(&self, call: &Call) -> impl Future<Output = Result<String, ExecError>> + Send;

    /// The change a call would make, when its daemon offers a preview
    /// (`None` when it offers none); `Err` is the daemon's refusal of the
    /// dry run, which the real call would meet too.
    fn preview(
        &self,
        call: &Call,
    ) -> impl Future<Output = Option<Result<String, ExecError>>> + Send;

    /// What validation needs: the existing domains (from hearth-netd).
    fn context(&self) -> impl Future<Output = Result<Context, ExecError>> + Send;
}

/// Measures the digest of an executed action's audit record.
pub trait Measurer: Send + Sync + 'static {
    /// `org.hearth.Attestation1.Measure(kind, name, sha256)`.
    fn measure(
        &self,
        kind: &str,
        name: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;
}

/// What validation needs out of hearth-netd's `ListDomains` answer
/// ([`hearth_common::contract::network::Domain`]): every domain, and those
/// marked as the admin domain, which the interpreter never proposes to
/// delete or cut off.
pub fn context_from_domains(text: &str) -> Result<Context, ExecError> {
    let list: Vec<NetDomain> =
        contract::decode("org.hearth.Network1.ListDomains", text).map_err(|e| ExecError {
            name: "org.hearth.Error.Internal".into(),
            message: e.message(),
        })?;
    Ok(Context {
        domains: list.iter().map(|d| d.name.clone()).collect(),
        protected: list
            .iter()
            .filter(|d| d.admin)
            .map(|d| d.name.clone())
            .collect(),
    })
}

/// Calls the daemons over D-Bus.
#[derive(Debug, Clone)]
pub struct DbusExecutor {
    conn: zbus::Connection,
}

impl DbusExecutor {
    /// Uses an open bus connection.
    pub fn new(conn: zbus::Connection) -> Self {
        DbusExecutor { conn }
    }

    /// Calls `method` with `args`; a dry-run method gets the trailing
    /// `dry_run` flag.
    async fn raw(
        &self,
        method: &hearth_playbook::methods::Method,
        args: &[ArgValue],
        dry_run: bool,
    ) -> Result<String, ExecError> {
        let member = method.member;
        let types = method.args;
        let svc = method.service;
        let reply = if args.is_empty() && !method.dry_run {
            self.conn
                .call_method(
                    Some(svc.bus_name),
                    svc.path,
                    Some(svc.bus_name),
                    member,
                    &(),
                )
                .await
        } else {
            let mut b = zbus::zvariant::StructureBuilder::new();
            for (a, v) in types.iter().zip(args) {
                use hearth_playbook::methods::ArgType;
                b = match (a.ty, v) {
                    (ArgType::Str, ArgValue::Str(s)) => b.add_field(s.clone()),
                    (ArgType::U16, ArgValue::Num(n)) => b.add_field(
                        u16::try_from(*n)
                            .map_err(|_| local("render", format!("{} {n} exceeds u16", a.name)))?,
                    ),
                    (ArgType::U32, ArgValue::Num(n)) => b.add_field(
                        u32::try_from(*n)
                            .map_err(|_| local("render", format!("{} {n} exceeds u32", a.name)))?,
                    ),
                    _ => {
                        return Err(local(
                            "render",
                            format!("{}: argument {} has the wrong type", method.key, a.name),
                        ))
                    }
                };
            }
            if method.dry_run {
                b = b.add_field(dry_run);
            }
            let body = b.build().map_err(|e| local("render", e.to_string()))?;
            self.conn
                .call_method(
                    Some(svc.bus_name),
                    svc.path,
                    Some(svc.bus_name),
                    member,
                    &body,
                )
                .await
        };
        let msg = reply.map_err(zbus_error)?;
        reply_text(&msg).map_err(|e| local("reply", format!("{}: {e}", method.key)))
    }
}

/// A reply as text: a string as it is, no value as `""`, a number or
/// boolean as its decimal or `true`/`false`, a string list as a JSON list.
fn reply_text(msg: &zbus::Message) -> Result<String, String> {
    let body = msg.body();
    let sig = body.signature().to_string();
    match sig.as_str() {
        "" => Ok(String::new()),
        "s" => body.deserialize::<String>().map_err(|e| e.to_string()),
        "b" => body
            .deserialize::<bool>()
            .map(|b| b.to_string())
            .map_err(|e| e.to_string()),
        "t" => body
            .deserialize::<u64>()
            .map(|n| n.to_string())
            .map_err(|e| e.to_string()),
        "u" => body
            .deserialize::<u32>()
            .map(|n| n.to_string())
            .map_err(|e| e.to_string()),
        "as" => body
            .deserialize::<Vec<String>>()
            .map(|v| Value::from(v).to_string())
            .map_err(|e| e.to_string()),
        other => Err(format!("unexpected reply signature {other:?}")),
    }
}

fn local(kind: &str, message: String) -> ExecError {
    ExecError {
        name: format!("org.hearth.Intent.{kind}"),
        message,
    }
}

fn zbus_error(e: zbus::Error) -> ExecError {
    match e {
        zbus::Error::MethodError(name, msg, _) => ExecError {
            name: name.to_string(),
            message: msg.unwrap_or_default(),
        },
        other => ExecError {
            name: "org.hearth.Error.ZBus".into(),
            message: other.to_string(),
        },
    }
}

impl Executor for DbusExecutor {
    async fn call(&self, call: &Call) -> Result<String, ExecError> {
        self.raw(call.method, &call.args, false).await
    }

    async fn preview(&self, call: &Call) -> Option<Result<String, ExecError>> {
        if !call.method.dry_run {
            return None;
        }
        Some(self.raw(call.method, &call.args, true).await)
    }

    async fn context(&self) -> Result<Context, ExecError> {
        let m = hearth_playbook::methods::lookup("net.ListDomains")
            .ok_or_else(|| local("config", "net.ListDomains is not allow-listed".into()))?;
        let text = self.raw(m, &[], false).await?;
        context_from_domains(&text)
    }
}

/// Measures through hearth-attestd over D-Bus.
#[derive(Debug, Clone)]
pub struct DbusMeasurer {
    conn: zbus::Connection,
}

impl DbusMeasurer {
    /// Uses an open bus connection.
    pub fn new(conn: zbus::Connection) -> Self {
        DbusMeasurer { conn }
    }
}

/// How long a Measure may take before the action is refused as unmeasured.
pub const MEASURE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Measurer for DbusMeasurer {
    async fn measure(&self, kind: &str, name: &str, sha256: &str) -> Result<(), ExecError> {
        let svc = names::ATTESTATION;
        let args = (kind, name, sha256);
        let call = self.conn.call_method(
            Some(svc.bus_name),
            svc.path,
            Some(svc.bus_name),
            "Measure",
            &args,
        );
        let reply = tokio::time::timeout(MEASURE_TIMEOUT, call)
            .await
            .map_err(|_| {
                local(
                    "timeout",
                    format!(
                        "org.hearth.Attestation1.Measure gave no answer in {} s",
                        MEASURE_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(zbus_error)?;
        // Whatever Measure returns (nothing or a JSON string) is not needed.
        drop(reply);
        Ok(())
    }
}

/// Measures, through hearth-attestd, what the gate trusts besides the
/// models: every playbook envelope in the catalog directory (kind
/// `playbook-catalog`) and the configuration file holding the approval
/// policy (kind `policy`). An attestation daemon that cannot be reached is
/// logged, not fatal: a remote verifier then sees the measurements missing.
pub async fn measure_trusted_inputs(
    measurer: &impl Measurer,
    catalog_dir: &std::path::Path,
    config: &std::path::Path,
) {
    use sha2::{Digest, Sha256};
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(catalog_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".dsse.json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut inputs: Vec<(&str, String, std::path::PathBuf)> = files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ("playbook-catalog", name, p)
        })
        .collect();
    inputs.push(("policy", config.display().to_string(), config.to_path_buf()));
    for (kind, name, path) in inputs {
        let digest = match std::fs::read(&path) {
            Ok(bytes) => hex::encode(Sha256::digest(&bytes)),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot read for measurement: {e}");
                continue;
            }
        };
        if let Err(e) = measurer.measure(kind, &name, &digest).await {
            tracing::warn!(kind, name, "not measured: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_is_read_from_the_typed_domain_list() {
        use hearth_common::types::DomainId;
        let id = |d: &str| DomainId::parse(d).unwrap();
        let text = r#"[{"name":"admin","bridge":"hb-admin","subnet":"10.77.0.0/24","gateway":"10.77.0.1","ula":null,"vlan":null,"services":["dns"],"admin":true},
                       {"name":"lan","bridge":"hb-lan","subnet":"10.77.1.0/24","gateway":"10.77.1.1","ula":null,"vlan":null,"services":[],"admin":false}]"#;
        let c = context_from_domains(text).unwrap();
        assert_eq!(c.domains, vec![id("admin"), id("lan")]);
        assert_eq!(c.protected, vec![id("admin")]);
        // The old guessed shapes are refused, naming the method.
        for bad in [
            r#"["lan","iot"]"#,
            r#"{"domains":[{"id":"lan"}]}"#,
            "not json",
        ] {
            let e = context_from_domains(bad).unwrap_err();
            assert!(e.message.contains("ListDomains"), "{e}");
        }
    }
}

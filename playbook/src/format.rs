//! The playbook file: its spec (common::catalog) plus steps and their undo,
//! parsed strictly and rendered into concrete calls.
//!
//! ```toml
//! [[steps]]
//! call = "dns.AddRecord"                 # a key of methods::METHODS
//! args = { name = "{name}", address = "{address}" }
//! undo = { call = "dns.RemoveRecord", args = { name = "{name}", value = "{address}" } }
//! ```
//!
//! An argument is a template: a TOML string where `{param}` is replaced by a
//! validated parameter (`{{` and `}}` are literal braces), or a TOML integer
//! for a number argument. A number argument's template is exactly one
//! reference. An undo may also use `{result}` (what the step returned) and
//! `{result.<field>}` (a field of that JSON object). A step that changes
//! state has an undo, or says `irreversible = true` and is then the last step.

use std::collections::{BTreeMap, BTreeSet};

use hearth_common::spec::{Context, ParamSpec, Params, PlaybookSpec, Risk};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::methods::{self, ArgType, Method};

/// Why a playbook file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not valid TOML or an unknown key.
    #[error("{0}")]
    Toml(String),
    /// A rule of the format is broken.
    #[error("{0}")]
    Invalid(String),
}

/// The file as written, unknown keys refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybookFile {
    id: String,
    version: u64,
    description: String,
    #[serde(default)]
    examples: Vec<String>,
    risk: Risk,
    #[serde(default)]
    params: Vec<ParamSpec>,
    #[serde(default)]
    language: hearth_common::spec::Language,
    #[serde(default)]
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    call: String,
    #[serde(default)]
    args: BTreeMap<String, toml::Value>,
    #[serde(default)]
    undo: Option<CallFile>,
    #[serde(default)]
    irreversible: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFile {
    call: String,
    #[serde(default)]
    args: BTreeMap<String, toml::Value>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// A parameter's value.
    Param(String),
    /// The step's result (`None`) or one field of it.
    Result(Option<String>),
}

/// A parsed argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                                name.push(c)
                            }
                            _ => return Err(format!("bad reference in template {text:?}")),
                        }
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(if name == "result" {
                        Piece::Result(None)
                    } else if let Some(field) = name.strip_prefix("result.") {
                        if field.is_empty() || field.contains('.') {
                            return Err(format!("bad result field in template {text:?}"));
                        }
                        Piece::Result(Some(field.to_string()))
                    } else if name.is_empty() || name.contains('.') {
                        return Err(format!("bad reference {{{name}}} in template {text:?}"));
                    } else {
                        Piece::Param(name)
                    });
                }
                '}' => return Err(format!("unmatched '}}' in template {text:?}")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template(pieces))
    }

    /// The template as written back (for plans and `playbook show`).
    pub fn source(&self) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.replace('{', "{{").replace('}', "}}"),
                Piece::Param(n) => format!("{{{n}}}"),
                Piece::Result(None) => "{result}".into(),
                Piece::Result(Some(f)) => format!("{{result.{f}}}"),
            })
            .collect()
    }

    fn uses_result(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Result(_)))
    }
}

/// A call template: an allow-listed method and one template per argument.
#[derive(Debug, Clone)]
pub struct CallTemplate {
    /// The method.
    pub method: &'static Method,
    /// One template per argument, in the method's order.
    pub args: Vec<Template>,
}

/// One step of a playbook.
#[derive(Debug, Clone)]
pub struct Step {
    /// What it calls.
    pub call: CallTemplate,
    /// What reverts it (None for reads and irreversible steps).
    pub undo: Option<CallTemplate>,
    /// Changes state and cannot be reverted (must be the last step).
    pub irreversible: bool,
}

/// A parsed, checked playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// Id, version, description, examples, risk and parameters.
    pub spec: PlaybookSpec,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// SHA-256 of the file's bytes, hex.
    pub digest: String,
}

/// A concrete argument value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgValue {
    /// A number (`q` or `u`).
    Num(u64),
    /// A string (`s`).
    Str(String),
}

/// A concrete call: method and argument values in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The method.
    pub method: &'static Method,
    /// The values, in the method's argument order.
    pub args: Vec<ArgValue>,
}

impl Serialize for Call {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            call: &'a str,
            args: BTreeMap<&'a str, &'a ArgValue>,
        }
        View {
            call: self.method.key,
            args: self
                .method
                .args
                .iter()
                .map(|a| a.name)
                .zip(self.args.iter())
                .collect(),
        }
        .serialize(s)
    }
}

/// An undo call whose parameters are filled in; `{result…}` pieces wait for
/// the step's result.
#[derive(Debug, Clone)]
pub struct PendingUndo {
    method: &'static Method,
    args: Vec<Template>,
}

impl Serialize for PendingUndo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            call: &'a str,
            args: BTreeMap<&'a str, String>,
        }
        View {
            call: self.method.key,
            args: self
                .method
                .args
                .iter()
                .map(|a| a.name)
                .zip(self.args.iter().map(|t| t.source()))
                .collect(),
        }
        .serialize(s)
    }
}

/// A step rendered for a plan: its concrete call and its pending undo.
#[derive(Debug, Clone, Serialize)]
pub struct RenderedStep {
    /// The call to make.
    #[serde(flatten)]
    pub call: Call,
    /// What reverts it, once its result is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<PendingUndo>,
    /// True when it cannot be reverted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub irreversible: bool,
}

/// Rendering failed (a value does not fit its argument's type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method} argument {arg}: {reason}")]
pub struct RenderError {
    /// The method key.
    pub method: String,
    /// The argument name.
    pub arg: String,
    /// What is wrong.
    pub reason: String,
}

fn invalid(msg: String) -> FormatError {
    FormatError::Invalid(msg)
}

impl Playbook {
    /// Parses and checks a playbook file. `bytes` is the whole file.
    pub fn parse(bytes: &[u8]) -> Result<Playbook, FormatError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| invalid("a playbook is UTF-8 text".into()))?;
        let file: PlaybookFile =
            toml::from_str(text).map_err(|e| FormatError::Toml(e.message().trim().to_string()))?;
        let digest = hex::encode(Sha256::digest(bytes));
        let spec = PlaybookSpec {
            id: file.id,
            version: file.version,
            description: file.description,
            examples: file.examples,
            risk: file.risk,
            params: file.params,
            language: file.language,
        };
        check_spec(&spec)?;
        let id = spec.id.clone();
        if file.steps.is_empty() {
            return Err(invalid(format!("{id}: a playbook has at least one step")));
        }
        let params: BTreeMap<&str, &ParamSpec> =
            spec.params.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut steps = Vec::new();
        let last = file.steps.len() - 1;
        for (i, sf) in file.steps.into_iter().enumerate() {
            let at = format!("{id}: step {}", i + 1);
            let call = parse_call(&at, &sf.call, &sf.args, &params, false)?;
            let effect = call.method.effect;
            if effect > spec.risk {
                return Err(invalid(format!(
                    "{at}: {} is {} but the playbook's risk is {}",
                    call.method.key,
                    effect.as_str(),
                    spec.risk.as_str()
                )));
            }
            let undo = match sf.undo {
                None => None,
                Some(u) => {
                    if effect == Risk::Read {
                        return Err(invalid(format!(
                            "{at}: {} only reads; it has no undo",
                            call.method.key
                        )));
                    }
                    let undo = parse_call(&format!("{at} undo"), &u.call, &u.args, &params, true)?;
                    if undo.method.effect == Risk::Read {
                        return Err(invalid(format!(
                            "{at}: the undo {} changes nothing",
                            undo.method.key
                        )));
                    }
                    Some(undo)
                }
            };
            match (effect, &undo, sf.irreversible) {
                (Risk::Read, _, true) => {
                    return Err(invalid(format!("{at}: a read is not irreversible")))
                }
                (Risk::Read, ..) => {}
                (_, Some(_), true) => {
                    return Err(invalid(format!(
                        "{at}: irreversible and an undo exclude each other"
                    )))
                }
                (_, None, false) => {
                    return Err(invalid(format!(
                        "{at}: {} changes state: give its undo or mark it irreversible",
                        call.method.key
                    )))
                }
                (_, None, true) if i != last => {
                    return Err(invalid(format!(
                        "{at}: an irreversible step must be the last one"
                    )))
                }
                _ => {}
            }
            steps.push(Step {
                call,
                undo,
                irreversible: sf.irreversible,
            });
        }
        Ok(Playbook {
            spec,
            steps,
            digest,
        })
    }

    /// Validates raw parameters (see [`PlaybookSpec::validate`]) and renders
    /// the steps.
    pub fn plan(
        &self,
        raw: &BTreeMap<String, Value>,
        ctx: &Context,
    ) -> Result<(Params, Vec<RenderedStep>), PlanError> {
        let params = self.spec.validate(raw, ctx).map_err(PlanError::Param)?;
        let steps = self.render(&params).map_err(PlanError::Render)?;
        Ok((params, steps))
    }

    /// Renders every step with validated parameters. A missing optional
    /// parameter renders as `""` for a string and `0` for a number.
    pub fn render(&self, params: &Params) -> Result<Vec<RenderedStep>, RenderError> {
        self.steps
            .iter()
            .map(|st| {
                let call = render_call(&st.call, params, None)?;
                let undo = st.undo.as_ref().map(|u| PendingUndo {
                    method: u.method,
                    args: u
                        .args
                        .iter()
                        .map(|t| substitute_params(t, params))
                        .collect(),
                });
                Ok(RenderedStep {
                    call,
                    undo,
                    irreversible: st.irreversible,
                })
            })
            .collect()
    }
}

/// Why a plan could not be made from parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A parameter is missing, unknown or invalid.
    #[error(transparent)]
    Param(#[from] hearth_common::types::ParseError),
    /// A value does not fit a method argument.
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl PendingUndo {
    /// The undo's method.
    pub fn method(&self) -> &'static Method {
        self.method
    }

    /// Fills in the step's result and returns the concrete undo call.
    pub fn finish(&self, result: &str) -> Result<Call, RenderError> {
        let t = CallTemplate {
            method: self.method,
            args: self.args.clone(),
        };
        render_call(&t, &Params::new(), Some(result))
    }
}

fn check_spec(spec: &PlaybookSpec) -> Result<(), FormatError> {
    let id = &spec.id;
    let ok_id = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    if !ok_id {
        return Err(invalid(format!(
            "playbook id {id:?}: use a-z, 0-9, '.' and '_' (at most 64)"
        )));
    }
    hearth_common::spec::check_templates(spec).map_err(invalid)?;
    let mut seen = BTreeSet::new();
    for p in &spec.params {
        let ok = !p.name.is_empty()
            && p.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && p.name != "result";
        if !ok {
            return Err(invalid(format!("{id}: bad parameter name {:?}", p.name)));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(invalid(format!("{id}: parameter {} twice", p.name)));
        }
        if p.required && p.default.is_some() {
            return Err(invalid(format!(
                "{id}: parameter {} is required and has a default",
                p.name
            )));
        }
        if let Some(other) = &p.default_if {
            if !spec
                .params
                .iter()
                .any(|o| &o.name == other && o.name != p.name)
            {
                return Err(invalid(format!(
                    "{id}: parameter {} has default_if {other}, which is no other parameter",
                    p.name
                )));
            }
        }
        if let Some(other) = &p.differs_from {
            if !spec
                .params
                .iter()
                .any(|o| &o.name == other && o.name != p.name && o.kind == p.kind)
            {
                return Err(invalid(format!(
                    "{id}: parameter {} differs_from {other}, which is no other parameter of its type",
                    p.name
                )));
            }
        }
        if let Some(d) = &p.default {
            let needs_state = matches!(
                p.kind,
                hearth_common::spec::ParamKind::ExistingDomain
                    | hearth_common::spec::ParamKind::NewDomain
            );
            if !needs_state {
                p.validate(d, &Context::default())
                    .map_err(|e| invalid(format!("{id}: default of {}: {e}", p.name)))?;
            }
        }
    }
    Ok(())
}

fn parse_call(
    at: &str,
    key: &str,
    args: &BTreeMap<String, toml::Value>,
    params: &BTreeMap<&str, &ParamSpec>,
    is_undo: bool,
) -> Result<CallTemplate, FormatError> {
    let method = methods::lookup(key).ok_or_else(|| {
        invalid(format!(
            "{at}: {key:?} is not an allow-listed method (see the allow-list in hearth-playbook)"
        ))
    })?;
    for name in args.keys() {
        if method.arg(name).is_none() {
            return Err(invalid(format!(
                "{at}: {key} takes no argument {name:?} (it takes {})",
                method
                    .args
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for a in method.args {
        let at = format!("{at}: {key} argument {}", a.name);
        let raw = args
            .get(a.name)
            .ok_or_else(|| invalid(format!("{at} is missing")))?;
        let t = match raw {
            toml::Value::String(s) => {
                Template::parse(s).map_err(|e| invalid(format!("{at}: {e}")))?
            }
            toml::Value::Integer(n) if a.ty.is_numeric() => {
                if *n < 0 || (*n as u64) > a.ty.max() {
                    return Err(invalid(format!("{at}: {n} is out of range")));
                }
                Template(vec![Piece::Lit(n.to_string())])
            }
            other => {
                return Err(invalid(format!(
                    "{at}: expected a template string, found {}",
                    other.type_str()
                )))
            }
        };
        for p in &t.0 {
            match p {
                Piece::Param(n) => {
                    let spec = params.get(n.as_str()).ok_or_else(|| {
                        invalid(format!("{at}: {{{n}}} is not a parameter of this playbook"))
                    })?;
                    if a.ty.is_numeric() && !spec.kind.is_numeric() {
                        return Err(invalid(format!(
                            "{at}: a number argument cannot take {{{n}}}, a {}",
                            spec.kind.describe()
                        )));
                    }
                }
                Piece::Result(_) if !is_undo => {
                    return Err(invalid(format!(
                        "{at}: only an undo can use the step's result"
                    )))
                }
                _ => {}
            }
        }
        if a.ty.is_numeric() {
            let single = match t.0.as_slice() {
                [Piece::Lit(l)] => l.parse::<u64>().is_ok(),
                [Piece::Param(_)] | [Piece::Result(Some(_))] => true,
                _ => false,
            };
            if !single {
                return Err(invalid(format!(
                    "{at}: a number argument is one integer or one reference"
                )));
            }
        }
        debug_assert!(is_undo || !t.uses_result());
        out.push(t);
    }
    Ok(CallTemplate { method, args: out })
}

fn substitute_params(t: &Template, params: &Params) -> Template {
    // Parameters become literal text; result references stay.
    let mut pieces: Vec<Piece> = Vec::new();
    for p in &t.0 {
        match p {
            Piece::Param(n) => {
                let v = params.get(n);
                pieces.push(Piece::Lit(value_text(v)));
            }
            other => pieces.push(other.clone()),
        }
    }
    Template(pieces)
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn render_call(
    t: &CallTemplate,
    params: &Params,
    result: Option<&str>,
) -> Result<Call, RenderError> {
    let parsed_result: Option<Value> = result.and_then(|r| serde_json::from_str(r).ok());
    let mut args = Vec::new();
    for (a, tpl) in t.method.args.iter().zip(&t.args) {
        let err = |reason: String| RenderError {
            method: t.method.key.into(),
            arg: a.name.into(),
            reason,
        };
        let mut text = String::new();
        let mut missing_optional = false;
        for p in &tpl.0 {
            match p {
                Piece::Lit(s) => text.push_str(s),
                Piece::Param(n) => match params.get(n) {
                    Some(v) => text.push_str(&value_text(Some(v))),
                    None => missing_optional = true,
                },
                Piece::Result(None) => match result {
                    Some(r) => text.push_str(r),
                    None => return Err(err("the step's result is not known yet".into())),
                },
                Piece::Result(Some(f)) => {
                    let field = parsed_result
                        .as_ref()
                        .and_then(|v| v.get(f))
                        .ok_or_else(|| err(format!("the step's result has no field {f:?}")))?;
                    text.push_str(&value_text(Some(field)));
                }
            }
        }
        args.push(match a.ty {
            ArgType::Str => ArgValue::Str(text),
            ArgType::U16 | ArgType::U32 => {
                if missing_optional && text.is_empty() {
                    ArgValue::Num(0)
                } else {
                    let n: u64 = text
                        .parse()
                        .map_err(|_| err(format!("{text:?} is not a whole number")))?;
                    if n > a.ty.max() {
                        return Err(err(format!("{n} is larger than {}", a.ty.max())));
                    }
                    ArgValue::Num(n)
                }
            }
        });
    }
    Ok(Call {
        method: t.method,
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_common::types::DomainId;
    use serde_json::json;

    const ALLOW: &str = r#"
id = "net.allow"
version = 1
description = "Allow"
risk = "change"
[[params]]
name = "from"
type = "existing-domain"
[[params]]
name = "to"
type = "existing-domain"
[[params]]
name = "port"
type = "port"
required = false
[[params]]
name = "protocol"
type = "protocol"
required = false
default = "tcp"
default_if = "port"

[[steps]]
call = "net.Allow"
args = { from = "{from}", to = "{to}", port = "{port}", protocol = "{protocol}" }
undo = { call = "net.Revoke", args = { from = "{from}", to = "{to}" } }
"#;

    fn ctx() -> Context {
        Context {
            domains: ["lan", "iot"]
                .iter()
                .map(|d| DomainId::parse(d).unwrap())
                .collect(),
            ..Context::default()
        }
    }

    fn raw(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn renders_typed_arguments_and_empty_optionals() {
        let pb = Playbook::parse(ALLOW.as_bytes()).unwrap();
        let (_, steps) = pb
            .plan(
                &raw(json!({"from": "iot", "to": "lan", "port": 443})),
                &ctx(),
            )
            .unwrap();
        assert_eq!(
            steps[0].call.args,
            vec![
                ArgValue::Str("iot".into()),
                ArgValue::Str("lan".into()),
                ArgValue::Num(443),
                ArgValue::Str("tcp".into())
            ]
        );
        let (_, steps) = pb
            .plan(&raw(json!({"from": "iot", "to": "lan"})), &ctx())
            .unwrap();
        assert_eq!(steps[0].call.args[2], ArgValue::Num(0));
        assert_eq!(steps[0].call.args[3], ArgValue::Str(String::new()));
        let undo = steps[0].undo.as_ref().unwrap().finish("[]").unwrap();
        assert_eq!(undo.method.key, "net.Revoke");
        assert_eq!(
            undo.args,
            vec![ArgValue::Str("iot".into()), ArgValue::Str("lan".into())]
        );
        assert_eq!(
            serde_json::to_value(&steps[0]).unwrap()["call"],
            json!("net.Allow")
        );
    }

    #[test]
    fn unknown_methods_are_refused() {
        let bad = ALLOW.replace("call = \"net.Allow\"", "call = \"sh.Run\"");
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("not an allow-listed method"), "{e}");
    }

    /// An `incomplete` template must leave out a required value (else it
    /// is a whole request, and the trainer would teach a refusal of it).
    #[test]
    fn an_incomplete_template_leaves_out_a_required_value() {
        let ok = format!("{ALLOW}[language]\nincomplete = [\"let {{from}} reach one more domain\", \"open {{to}} on {{port}}\"]\n");
        Playbook::parse(ok.as_bytes()).unwrap();
        let whole = format!("{ALLOW}[language]\nincomplete = [\"let {{from}} reach {{to}}\"]\n");
        let e = Playbook::parse(whole.as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("names every required parameter"),
            "{e}"
        );
        let unknown = format!("{ALLOW}[language]\nincomplete = [\"let {{who}} in\"]\n");
        let e = Playbook::parse(unknown.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("{who}"), "{e}");
    }

    #[test]
    fn unknown_params_in_templates_are_refused() {
        let bad = ALLOW.replacen("from = \"{from}\"", "from = \"{source}\"", 1);
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("{source} is not a parameter"), "{e}");
    }

    #[test]
    fn unknown_keys_and_arguments_are_refused() {
        let bad = ALLOW.replace("[[steps]]\n", "[[steps]]\nshell = \"rm -rf /\"\n");
        assert!(matches!(
            Playbook::parse(bad.as_bytes()),
            Err(FormatError::Toml(_))
        ));
        let bad = ALLOW.replacen("port = \"{port}\"", "port = \"{port}\", cmd = \"x\"", 1);
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("takes no argument \"cmd\""), "{e}");
        let bad = ALLOW.replacen("port = \"{port}\", ", "", 1);
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("argument port is missing"), "{e}");
    }

    #[test]
    fn numbers_take_only_numeric_parameters() {
        let bad = ALLOW.replacen("port = \"{port}\"", "port = \"{from}\"", 1);
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("number argument cannot take"), "{e}");
        let bad = ALLOW.replacen("port = \"{port}\"", "port = \"8{port}\"", 1);
        assert!(Playbook::parse(bad.as_bytes()).is_err());
        let ok = ALLOW.replacen("port = \"{port}\"", "port = 22", 1);
        assert!(Playbook::parse(ok.as_bytes()).is_ok());
    }

    #[test]
    fn change_steps_need_an_undo_and_risk_covers_steps() {
        let bad = ALLOW.replace("undo = {", "#undo = {");
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("give its undo"), "{e}");
        let bad = ALLOW.replace("risk = \"change\"", "risk = \"read\"");
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("risk is read"), "{e}");
        let bad = ALLOW.replace("{protocol}\" }\nundo", "{result}\" }\nundo");
        let e = Playbook::parse(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("only an undo"), "{e}");
    }

    #[test]
    fn undo_uses_the_result() {
        let text = r#"
id = "pki.issue_certificate"
version = 1
description = "x"
risk = "change"
[[params]]
name = "name"
type = "dns-name"
[[steps]]
call = "pki.IssueCertificate"
args = { name = "{name}", days = 90 }
undo = { call = "pki.RevokeCertificate", args = { serial_or_name = "{result.serial}" } }
"#;
        let pb = Playbook::parse(text.as_bytes()).unwrap();
        let (_, steps) = pb
            .plan(&raw(json!({"name": "NAS.home.arpa."})), &ctx())
            .unwrap();
        assert_eq!(
            steps[0].call.args,
            vec![ArgValue::Str("nas.home.arpa".into()), ArgValue::Num(90)]
        );
        let u = steps[0].undo.as_ref().unwrap();
        assert_eq!(
            serde_json::to_value(u).unwrap(),
            json!({"call": "pki.RevokeCertificate", "args": {"serial_or_name": "{result.serial}"}})
        );
        let done = u
            .finish(r#"{"serial":"0a1b","names":["nas.home.arpa"]}"#)
            .unwrap();
        assert_eq!(done.args, vec![ArgValue::Str("0a1b".into())]);
        assert!(u.finish("not json").is_err(), "a missing field is an error");
        // The whole result, as it is.
        let whole = text.replace("{result.serial}", "{result}");
        let pb = Playbook::parse(whole.as_bytes()).unwrap();
        let (_, steps) = pb
            .plan(&raw(json!({"name": "nas.home.arpa"})), &ctx())
            .unwrap();
        let done = steps[0].undo.as_ref().unwrap().finish("0a1b").unwrap();
        assert_eq!(done.args, vec![ArgValue::Str("0a1b".into())]);
    }

    #[test]
    fn templates_escape_braces_and_reject_bad_references() {
        assert_eq!(
            Template::parse("a{{b}}{x}").unwrap().0,
            vec![Piece::Lit("a{b}".into()), Piece::Param("x".into())]
        );
        assert!(Template::parse("{x").is_err());
        assert!(Template::parse("{x y}").is_err());
        assert!(Template::parse("}").is_err());
        assert!(Template::parse("{a.b}").is_err());
    }

    #[test]
    fn differs_from_names_another_parameter_of_its_type() {
        let ok = ALLOW.replace(
            "name = \"to\"\ntype = \"existing-domain\"",
            "name = \"to\"\ntype = \"existing-domain\"\ndiffers_from = \"from\"",
        );
        assert_ne!(ok, ALLOW, "the fixture names to as an existing-domain");
        Playbook::parse(ok.as_bytes()).unwrap();
        for other in ["to", "port", "nobody"] {
            let bad = ALLOW.replace(
                "name = \"to\"\ntype = \"existing-domain\"",
                &format!("name = \"to\"\ntype = \"existing-domain\"\ndiffers_from = \"{other}\""),
            );
            let e = Playbook::parse(bad.as_bytes())
                .expect_err(other)
                .to_string();
            assert!(e.contains("differs_from"), "{other}: {e}");
        }
    }

    #[test]
    fn the_shipped_catalog_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|x| x.to_str()) != Some("toml") {
                continue;
            }
            let pb = Playbook::parse(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(
                p.file_stem().unwrap().to_str().unwrap(),
                pb.spec.id,
                "file name is the id"
            );
            n += 1;
        }
        // The default catalog: dns (5), net (5), pki (3), attest (1),
        // device/dhcp (3).
        assert_eq!(n, 17);
    }
}

//! What a playbook asks for: its identity, risk and typed parameters.
//!
//! The full playbook (steps, undo, signature) belongs to the gate; this is the
//! part that the gate, the inference pipeline, the evaluation and the CLI all
//! read, so that a parameter's type and its validation are written once.
//! [`ParamSpec::validate`] turns a raw value (from a model, a script or the
//! command line) into its canonical JSON form or names what is wrong.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mac::MacAddr;
use crate::types::{Address, Cidr, DnsName, DomainId, Ipv4, Ipv6, ParseError, Port, Protocol};

/// How much a playbook may change, which decides the approval it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reads state only: runs at once.
    Read,
    /// Changes state: needs the requester's confirmation.
    Change,
    /// Removes state: needs a member of hearth-admins.
    Destructive,
}

impl Risk {
    /// `read`, `change` or `destructive`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Change => "change",
            Risk::Destructive => "destructive",
        }
    }
}

/// The type of a playbook parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ParamKind {
    /// A DNS name ([`DnsName`]).
    DnsName,
    /// A device the inventory may know: its MAC address ([`MacAddr`]) or
    /// its host name ([`DnsName`]).
    Device,
    /// An IPv4 or IPv6 address ([`Address`]).
    IpAddress,
    /// An IPv4 address.
    Ipv4Address,
    /// An IPv6 address.
    Ipv6Address,
    /// An IPv4 network in CIDR notation.
    Ipv4Cidr,
    /// A port, 1 to 65535.
    Port,
    /// tcp or udp.
    Protocol,
    /// A domain identifier that must not exist yet.
    NewDomain,
    /// A domain identifier that must exist (values come from hearth-netd).
    ExistingDomain,
    /// A whole number within bounds.
    Integer {
        /// Smallest value allowed.
        min: i64,
        /// Largest value allowed.
        max: i64,
    },
    /// One of a fixed list of strings.
    Enum {
        /// The allowed values, lower-case.
        values: Vec<String>,
    },
}

impl ParamKind {
    /// A short human name of the type, for prompts and errors.
    pub fn describe(&self) -> String {
        match self {
            ParamKind::DnsName => "DNS name".into(),
            ParamKind::Device => "device (host name or MAC address)".into(),
            ParamKind::IpAddress => "IP address".into(),
            ParamKind::Ipv4Address => "IPv4 address".into(),
            ParamKind::Ipv6Address => "IPv6 address".into(),
            ParamKind::Ipv4Cidr => "IPv4 network (CIDR)".into(),
            ParamKind::Port => "port".into(),
            ParamKind::Protocol => "protocol (tcp or udp)".into(),
            ParamKind::NewDomain => "new domain name".into(),
            ParamKind::ExistingDomain => "existing domain".into(),
            ParamKind::Integer { min, max } => format!("number from {min} to {max}"),
            ParamKind::Enum { values } => format!("one of {}", values.join(", ")),
        }
    }

    /// True when the value is a number rather than a string.
    pub fn is_numeric(&self) -> bool {
        matches!(self, ParamKind::Port | ParamKind::Integer { .. })
    }
}

/// One typed parameter of a playbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawParamSpec")]
pub struct ParamSpec {
    /// The parameter's name, as used in templates and structured intents.
    pub name: String,
    /// Its type.
    #[serde(flatten)]
    pub kind: ParamKind,
    /// What it means, for people and for the model's prompt.
    #[serde(default)]
    pub description: String,
    /// False when the parameter may be left out.
    #[serde(default = "yes")]
    pub required: bool,
    /// The value used when an optional parameter is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// The default applies only when this other parameter is present
    /// (net.allow: protocol is tcp by default only when a port is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_if: Option<String>,
    /// The unit a number is counted in (`days`): a request may give the
    /// value in another unit of the same kind ("two weeks"), which the
    /// interpreter converts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Another parameter this one may never equal (net.allow: a domain is
    /// not allowed to reach itself): a plan giving both the same value is
    /// invalid, so the interpreter never offers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differs_from: Option<String>,
}

fn yes() -> bool {
    true
}

/// The file form of [`ParamSpec`], flat so that unknown keys are refused
/// (serde cannot deny unknown fields through a flattened enum).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamSpec {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    default_if: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    differs_from: Option<String>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    values: Option<Vec<String>>,
}

impl TryFrom<RawParamSpec> for ParamSpec {
    type Error = String;
    fn try_from(r: RawParamSpec) -> Result<Self, String> {
        let name = &r.name;
        if let Some(u) = &r.unit {
            if r.kind != "integer" || u != "days" {
                return Err(format!(
                    "parameter {name}: unit {u:?} is not known (an integer may be counted in \"days\")"
                ));
            }
        }
        let kind = match (r.kind.as_str(), r.min, r.max, r.values) {
            ("integer", Some(min), Some(max), None) if min <= max => {
                ParamKind::Integer { min, max }
            }
            ("integer", ..) => {
                return Err(format!(
                    "parameter {name}: an integer needs min <= max and no values"
                ))
            }
            ("enum", None, None, Some(values)) if !values.is_empty() => ParamKind::Enum {
                values: values.into_iter().map(|v| v.to_ascii_lowercase()).collect(),
            },
            ("enum", ..) => {
                return Err(format!(
                    "parameter {name}: an enum needs a non-empty values list"
                ))
            }
            (_, Some(_), ..) | (_, _, Some(_), _) | (_, _, _, Some(_)) => {
                return Err(format!(
                    "parameter {name}: min, max and values belong to integer and enum types"
                ))
            }
            ("dns-name", ..) => ParamKind::DnsName,
            ("device", ..) => ParamKind::Device,
            ("ip-address", ..) => ParamKind::IpAddress,
            ("ipv4-address", ..) => ParamKind::Ipv4Address,
            ("ipv6-address", ..) => ParamKind::Ipv6Address,
            ("ipv4-cidr", ..) => ParamKind::Ipv4Cidr,
            ("port", ..) => ParamKind::Port,
            ("protocol", ..) => ParamKind::Protocol,
            ("new-domain", ..) => ParamKind::NewDomain,
            ("existing-domain", ..) => ParamKind::ExistingDomain,
            (other, ..) => return Err(format!("parameter {name}: unknown type {other:?}")),
        };
        Ok(ParamSpec {
            name: r.name,
            kind,
            description: r.description,
            required: r.required,
            default: r.default,
            default_if: r.default_if,
            unit: r.unit,
            differs_from: r.differs_from,
        })
    }
}

/// What validation needs to know about the appliance's current state.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The domains that exist now.
    pub domains: Vec<DomainId>,
    /// The domains that can be neither deleted nor cut off (the admin
    /// domain), as hearth-netd reports them.
    pub protected: Vec<DomainId>,
}

impl ParamSpec {
    /// Validates one raw value and returns its canonical JSON form: strings
    /// for names and addresses (lower-case, no trailing dot), numbers for
    /// ports and integers.
    pub fn validate(&self, raw: &Value, ctx: &Context) -> Result<Value, ParseError> {
        let field = self.name.as_str();
        let text = match raw {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(ParseError {
                    field: field.into(),
                    value: other.to_string(),
                    reason: format!("expected a {}", self.kind.describe()),
                })
            }
        };
        let bad = |reason: String| ParseError {
            field: field.into(),
            value: text.clone(),
            reason,
        };
        Ok(match &self.kind {
            ParamKind::DnsName => Value::String(DnsName::parse_field(field, &text)?.to_string()),
            ParamKind::Device => match MacAddr::parse_field(field, &text) {
                Ok(mac) => Value::String(mac.to_string()),
                // Six colon-separated parts is a MAC written wrong, not a name.
                Err(e) if text.contains(':') => return Err(e),
                Err(_) => Value::String(DnsName::parse_field(field, &text)?.to_string()),
            },
            ParamKind::IpAddress => Value::String(Address::parse_field(field, &text)?.to_string()),
            ParamKind::Ipv4Address => Value::String(Ipv4::parse_field(field, &text)?.to_string()),
            ParamKind::Ipv6Address => Value::String(Ipv6::parse_field(field, &text)?.to_string()),
            ParamKind::Ipv4Cidr => Value::String(Cidr::parse_v4_field(field, &text)?.to_string()),
            ParamKind::Port => Value::from(Port::parse_field(field, &text)?.get()),
            ParamKind::Protocol => {
                Value::String(Protocol::parse_field(field, &text)?.as_str().into())
            }
            ParamKind::NewDomain => {
                let d = DomainId::parse_field(field, &text.to_ascii_lowercase())?;
                if ctx.domains.contains(&d) {
                    return Err(bad(format!("the domain {d} already exists")));
                }
                Value::String(d.to_string())
            }
            ParamKind::ExistingDomain => {
                let d = DomainId::parse_field(field, &text.to_ascii_lowercase())?;
                if !ctx.domains.contains(&d) {
                    return Err(bad(format!(
                        "no domain {d}; the domains are {}",
                        ctx.domains
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Value::String(d.to_string())
            }
            ParamKind::Integer { min, max } => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| bad(format!("expected a whole number from {min} to {max}")))?;
                if n < *min || n > *max {
                    return Err(bad(format!("expected a whole number from {min} to {max}")));
                }
                Value::from(n)
            }
            ParamKind::Enum { values } => {
                let lower = text.to_ascii_lowercase();
                if !values.contains(&lower) {
                    return Err(bad(format!("expected one of {}", values.join(", "))));
                }
                Value::String(lower)
            }
        })
    }
}

/// The part of a playbook that describes what it does and asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaybookSpec {
    /// Stable identifier, e.g. `dns.add_record`.
    pub id: String,
    /// Monotonic version, for anti-rollback.
    pub version: u64,
    /// One sentence saying what it does.
    pub description: String,
    /// Example requests in plain language.
    #[serde(default)]
    pub examples: Vec<String>,
    /// How much it may change.
    pub risk: Risk,
    /// Its parameters, in order.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// How owners ask for it: what the interpreter is trained from.
    #[serde(default, skip_serializing_if = "Language::is_empty")]
    pub language: Language,
}

/// How owners ask for a playbook, as templates whose slots name a parameter
/// (`"let {from} reach {to} on port {port}"`). The interpreter's training
/// data is generated from these and the generic language file; nothing
/// about a playbook's wording lives in code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// Requests that start with the verb ("allow {from} to reach {to}"):
    /// the generator also wraps them (politely, negated, as a question).
    #[serde(default)]
    pub utterances: Vec<String>,
    /// Other ways to ask for it ("{to} should accept connections from
    /// {from}"), used as they are.
    #[serde(default)]
    pub statements: Vec<String>,
    /// Questions about the state this playbook changes ("can {from} reach
    /// {to}?"): they are answered by `answered_by` and become this playbook
    /// only when followed by a request to fix it.
    #[serde(default)]
    pub questions: Vec<String>,
    /// Requests for it that leave out a value it needs ("reserve an
    /// address for {device}", "create a domain"): the interpreter learns
    /// the playbook from them and, finding no value, says what is missing
    /// instead of planning another playbook that needs no such value.
    /// Each must leave out a required parameter that has no default.
    #[serde(default)]
    pub incomplete: Vec<String>,
    /// Reports of a problem this playbook would mend, with no request
    /// ("{from} can't reach {to}", "the key of {name} may have leaked"):
    /// the interpreter learns them as asking about the change, so it
    /// offers the plan in a clarifying question and never plans it; only
    /// followed by a request ("…, fix it") are they a request for it.
    #[serde(default)]
    pub reports: Vec<String>,
    /// The read playbook that answers `questions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The interpreter never proposes this playbook for a protected domain
    /// (the admin domain cannot be deleted or cut off; hearth-netd refuses
    /// it too, the interpreter knows it from the context).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refuse_protected: bool,
    /// The playbook that does the opposite (allow / revoke): when the
    /// interpreter finds it at all likely, it asks instead of proposing
    /// either (the worst failure is doing the opposite of what was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opposite: Option<String>,
    /// Ways to say that this change was made, as clauses ("you revoked
    /// {from}'s access to {to}", "{domain} was deleted"), whose slots name
    /// parameters of `opposite` (the values they are filled with). The
    /// generator wraps them in the language file's requests to undo a
    /// change ("…, please undo that") or to keep it, and the interpreter
    /// learns those as *none of them*: a request to undo is refused, never
    /// planned as the change it names (decision 070).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// The same change named as a thing ("the revocation of {from}'s
    /// access to {to}", "the deletion of {domain}"), for the language
    /// file's requests to undo a named change ("reverse {}"); slots as in
    /// `done`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done_nouns: Vec<String>,
    /// This change as something that goes on, in the form that follows
    /// "stop" ("blocking {from} from {to}", "letting {from} reach {to}");
    /// slots name parameters of this playbook that `opposite` has too.
    /// The generator wraps them in the language file's requests to stop
    /// ("quit {}"), learned as a request for `opposite` (to stop blocking
    /// is to allow), and in its requests to go on ("keep {}"), learned as
    /// *none of them* (decision 070).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ongoing: Vec<String>,
}

impl Language {
    /// True when no template is given.
    pub fn is_empty(&self) -> bool {
        self.utterances.is_empty()
            && self.statements.is_empty()
            && self.questions.is_empty()
            && self.incomplete.is_empty()
            && self.reports.is_empty()
    }

    /// Every template, with the slots it names.
    pub fn templates(&self) -> impl Iterator<Item = &String> {
        self.utterances
            .iter()
            .chain(&self.statements)
            .chain(&self.questions)
            .chain(&self.incomplete)
            .chain(&self.reports)
    }
}

/// Slots a template may hold that are not parameters: words of context the
/// trainer fills and never tags as values of the plan (`{purpose}`: what a
/// network is for, from `pools.purposes`; `{old_address}`: the address a
/// record had before, "nas moved from {old_address} to {address}").
pub const CONTEXT_SLOTS: &[&str] = &["purpose", "old_address"];

/// True when a template of `spec` may name `{slot}`: one of its
/// parameters, or a context slot it has no parameter for.
pub fn slot_allowed(spec: &PlaybookSpec, slot: &str) -> bool {
    spec.params.iter().any(|p| p.name == slot) || CONTEXT_SLOTS.contains(&slot)
}

/// Checks a playbook's templates: every slot names one of its parameters
/// or a context slot, every `incomplete` template leaves out a required
/// parameter that has no default, and only a change has `reports`.
pub fn check_templates(spec: &PlaybookSpec) -> Result<(), String> {
    let id = &spec.id;
    for t in spec.language.templates() {
        let slots = template_slots(t).map_err(|e| format!("{id}: {e}"))?;
        if let Some(s) = slots.iter().find(|s| !slot_allowed(spec, s)) {
            return Err(format!(
                "{id}: template {t:?} names {{{s}}}, which is not a parameter"
            ));
        }
    }
    if spec.risk == Risk::Read && !spec.language.reports.is_empty() {
        return Err(format!(
            "{id}: a read playbook mends nothing: reports are for changes"
        ));
    }
    for t in &spec.language.incomplete {
        let slots = template_slots(t).map_err(|e| format!("{id}: {e}"))?;
        let leaves_out = spec
            .params
            .iter()
            .any(|p| p.required && p.default.is_none() && !slots.contains(&p.name));
        if !leaves_out {
            return Err(format!(
                "{id}: incomplete template {t:?} names every required parameter"
            ));
        }
    }
    Ok(())
}

/// The parameter names a template's `{slots}` name, in order.
pub fn template_slots(template: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("template {template:?}: an unclosed {{"))?;
        let name = &after[..j];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!("template {template:?}: bad slot {{{name}}}"));
        }
        out.push(name.to_string());
        rest = &after[j + 1..];
    }
    Ok(out)
}

/// Canonical parameters after validation and defaults.
pub type Params = BTreeMap<String, Value>;

impl PlaybookSpec {
    /// Validates a whole parameter set: every required parameter present,
    /// no unknown parameter, every value valid; then applies the defaults.
    pub fn validate(
        &self,
        raw: &BTreeMap<String, Value>,
        ctx: &Context,
    ) -> Result<Params, ParseError> {
        for key in raw.keys() {
            if !self.params.iter().any(|p| &p.name == key) {
                return Err(ParseError {
                    field: key.clone(),
                    value: raw[key].to_string(),
                    reason: format!("{} takes no parameter {key}", self.id),
                });
            }
        }
        let mut out = Params::new();
        for p in &self.params {
            match raw.get(&p.name).filter(|v| !v.is_null()) {
                Some(v) => {
                    out.insert(p.name.clone(), p.validate(v, ctx)?);
                }
                None if p.required => {
                    return Err(ParseError {
                        field: p.name.clone(),
                        value: String::new(),
                        reason: format!(
                            "{} needs a value for {} ({})",
                            self.id,
                            p.name,
                            p.kind.describe()
                        ),
                    })
                }
                None => {}
            }
        }
        for p in &self.params {
            if out.contains_key(&p.name) {
                continue;
            }
            let applies = p
                .default_if
                .as_ref()
                .is_none_or(|other| out.contains_key(other));
            if let (Some(d), true) = (&p.default, applies) {
                out.insert(p.name.clone(), p.validate(d, ctx)?);
            }
        }
        self.check_relations(&out)?;
        Ok(out)
    }

    /// The rules between valid values: a parameter with `differs_from`
    /// never equals that other parameter.
    pub fn check_relations(&self, params: &Params) -> Result<(), ParseError> {
        for p in &self.params {
            let Some(other) = &p.differs_from else {
                continue;
            };
            if let (Some(a), Some(b)) = (params.get(&p.name), params.get(other)) {
                if a == b {
                    return Err(ParseError {
                        field: p.name.clone(),
                        value: a.as_str().map_or_else(|| a.to_string(), str::to_string),
                        reason: format!("{} cannot be {other} as well", p.name),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allow() -> PlaybookSpec {
        toml::from_str(
            r#"
            id = "net.allow"
            version = 1
            description = "Let one domain reach another"
            risk = "change"
            [[params]]
            name = "from"
            type = "existing-domain"
            [[params]]
            name = "to"
            type = "existing-domain"
            differs_from = "from"
            [[params]]
            name = "port"
            type = "port"
            required = false
            [[params]]
            name = "protocol"
            type = "enum"
            values = ["tcp", "udp"]
            required = false
            default = "tcp"
            default_if = "port"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn only_a_change_has_reports_of_a_problem() {
        let mut spec = allow();
        spec.language.reports = vec!["{from} can't reach {to}".into()];
        check_templates(&spec).unwrap();
        spec.risk = Risk::Read;
        let e = check_templates(&spec).unwrap_err();
        assert!(e.contains("reports are for changes"), "{e}");
        spec.risk = Risk::Change;
        spec.language.reports = vec!["{who} can't reach {to}".into()];
        let e = check_templates(&spec).unwrap_err();
        assert!(e.contains("{who}"), "{e}");
    }

    fn ctx() -> Context {
        Context {
            domains: ["admin", "lan", "iot"]
                .iter()
                .map(|d| DomainId::parse(d).unwrap())
                .collect(),
            ..Context::default()
        }
    }

    fn map(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn conditional_default_applies_only_with_its_parameter() {
        let p = allow();
        let with_port = p
            .validate(
                &map(json!({"from": "iot", "to": "LAN", "port": "443"})),
                &ctx(),
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(&with_port).unwrap(),
            json!({"from": "iot", "to": "lan", "port": 443, "protocol": "tcp"})
        );
        let without = p
            .validate(&map(json!({"from": "iot", "to": "lan"})), &ctx())
            .unwrap();
        assert_eq!(
            serde_json::to_value(&without).unwrap(),
            json!({"from": "iot", "to": "lan"})
        );
    }

    #[test]
    fn a_parameter_never_equals_the_one_it_differs_from() {
        let p = allow();
        let e = p
            .validate(&map(json!({"from": "iot", "to": "IOT"})), &ctx())
            .unwrap_err();
        assert_eq!(e.field, "to");
        assert_eq!(
            e.to_string(),
            "invalid to \"iot\": to cannot be from as well"
        );
        p.validate(&map(json!({"from": "iot", "to": "lan"})), &ctx())
            .unwrap();
        // Values are compared once each is valid: a bad one is named first.
        let e = p
            .validate(&map(json!({"from": "guest", "to": "guest"})), &ctx())
            .unwrap_err();
        assert!(e.reason.contains("no domain guest"), "{e}");
    }

    #[test]
    fn refusals_name_the_parameter() {
        let p = allow();
        let e = p
            .validate(&map(json!({"from": "iot"})), &ctx())
            .unwrap_err();
        assert_eq!(e.field, "to");
        assert_eq!(
            e.to_string(),
            format!(
                "missing to: {} needs a value for to (existing domain)",
                p.id
            )
        );
        let e = p
            .validate(&map(json!({"from": "iot", "to": "guest"})), &ctx())
            .unwrap_err();
        assert_eq!(e.field, "to");
        assert!(e.reason.contains("no domain guest"));
        let e = p
            .validate(&map(json!({"from": "iot", "to": "lan", "port": 0})), &ctx())
            .unwrap_err();
        assert_eq!(e.field, "port");
        let e = p
            .validate(
                &map(json!({"from": "iot", "to": "lan", "colour": "red"})),
                &ctx(),
            )
            .unwrap_err();
        assert_eq!(e.field, "colour");
    }

    #[test]
    fn unknown_keys_and_types_are_refused() {
        let bad = r#"
            id = "x"
            version = 1
            description = "x"
            risk = "read"
            [[params]]
            name = "a"
            type = "dns-name"
            colour = "red"
        "#;
        assert!(toml::from_str::<PlaybookSpec>(bad).is_err());
        let bad = bad
            .replace("colour = \"red\"", "")
            .replace("dns-name", "shell");
        assert!(toml::from_str::<PlaybookSpec>(&bad).is_err());
    }

    #[test]
    fn integer_bounds_and_new_domains() {
        let days = ParamSpec {
            name: "days".into(),
            kind: ParamKind::Integer { min: 1, max: 398 },
            description: String::new(),
            required: false,
            default: Some(json!(90)),
            default_if: None,
            unit: None,
            differs_from: None,
        };
        assert_eq!(days.validate(&json!(398), &ctx()).unwrap(), json!(398));
        assert!(days.validate(&json!(399), &ctx()).is_err());
        assert!(days.validate(&json!("ten"), &ctx()).is_err());
        let newd = ParamSpec {
            name: "domain".into(),
            kind: ParamKind::NewDomain,
            description: String::new(),
            required: true,
            default: None,
            default_if: None,
            unit: None,
            differs_from: None,
        };
        assert_eq!(
            newd.validate(&json!("Cams"), &ctx()).unwrap(),
            json!("cams")
        );
        assert!(newd.validate(&json!("lan"), &ctx()).is_err());
    }

    #[test]
    fn a_device_is_a_mac_or_a_host_name() {
        let dev = ParamSpec {
            name: "device".into(),
            kind: ParamKind::Device,
            description: String::new(),
            required: true,
            default: None,
            default_if: None,
            unit: None,
            differs_from: None,
        };
        let ok = |v: &str| dev.validate(&json!(v), &ctx()).unwrap();
        assert_eq!(ok("AA-BB-CC-00-11-22"), json!("aa:bb:cc:00:11:22"));
        assert_eq!(ok("aa:bb:cc:00:11:22"), json!("aa:bb:cc:00:11:22"));
        assert_eq!(ok("Printer"), json!("printer"));
        assert_eq!(ok("nas.lan.home.arpa."), json!("nas.lan.home.arpa"));
        for bad in ["aa:bb:cc:00:11", "aa:bb:cc:00:11:zz", "rm -rf", "a;b", ""] {
            let e = dev.validate(&json!(bad), &ctx()).unwrap_err();
            assert_eq!(e.field, "device", "{bad}");
        }
    }
}

//! The engine: the frozen encoder, the trained heads and the catalog, and
//! the deterministic decision procedure that turns what the heads say into
//! a plan, a clarifying question or a refusal (see the crate docs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{Device, D};
use hearth_common::catalog::{Context, ParamKind, ParamSpec, PlaybookSpec, Risk};
use hearth_common::types::{Address, Cidr, DnsName};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::embed::Embedder;
use crate::gen::{Labels, ASKS, DO_NOT};
use crate::heads::Heads;
use crate::lexicon::Lexicon;
use crate::train::{Meta, HEADS_DIR, HEADS_FILE, META_FILE, RECIPE};

/// Longest request accepted, in characters.
pub const MAX_REQUEST_CHARS: usize = 512;

/// The embedding model's directory under the models directory.
pub const EMBED_DIR: &str = "all-MiniLM-L6-v2";

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePreference {
    /// CUDA when built with the `cuda` feature and a GPU is there, else CPU.
    Auto,
    /// Always the CPU.
    Cpu,
}

/// The sha256 of one model file the engine loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ModelDigest {
    /// The file's name relative to the models directory
    /// (`all-MiniLM-L6-v2/model.safetensors`).
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Lower-case hex sha256 of its bytes as loaded.
    pub sha256: String,
}

/// A playbook and how likely the interpreter finds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Playbook id.
    pub id: String,
    /// The interpreter's probability for it, 0 to 1.
    pub score: f32,
}

/// A plan offered in a clarifying question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposal {
    /// Playbook id.
    pub playbook: String,
    /// Canonical parameters after [`PlaybookSpec::validate`].
    pub params: BTreeMap<String, Value>,
    /// The plan in plain words.
    pub summary: String,
}

/// What the engine makes of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Interpretation {
    /// One playbook with validated, canonical parameters.
    Plan {
        /// Playbook id.
        playbook: String,
        /// Canonical parameters after [`PlaybookSpec::validate`].
        params: BTreeMap<String, Value>,
        /// Confidence of the choice, 0 to 1.
        confidence: f32,
        /// The likeliest playbooks, best first.
        candidates: Vec<Candidate>,
    },
    /// Not sure: a question and the plans it could mean. Nothing runs
    /// until the owner picks one (it is then asked for as a structured
    /// intent, validated and approved like any other).
    Clarify {
        /// The question for the owner.
        question: String,
        /// Two or three plans, likeliest first (at least one).
        options: Vec<Proposal>,
        /// The likeliest playbooks, best first.
        candidates: Vec<Candidate>,
    },
    /// No plan: why, and the likeliest playbooks.
    Refusal {
        /// Why no plan was made, for the owner.
        reason: String,
        /// The likeliest playbooks, best first.
        candidates: Vec<Candidate>,
    },
}

/// Thresholds of the decision procedure; the defaults are what the
/// benchmarks measured.
#[derive(Debug, Clone)]
pub struct Options {
    /// Refuse when the request is this likely to say NOT to do it.
    pub max_negation: f32,
    /// A change is only offered as a question when the request is this
    /// likely to only ask about it.
    pub max_asks: f32,
    /// Below this probability of the best playbook, ask which one was
    /// meant (or refuse when no second one is likely).
    pub min_confidence: f32,
    /// A second playbook at least this likely is offered in a clarifying
    /// question.
    pub min_alternative: f32,
    /// Below this probability of its tag, a token is not trusted as a
    /// value, and a value-like token left untagged is not trusted as
    /// context.
    pub min_tag: f32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_negation: 0.3,
            max_asks: 0.5,
            min_confidence: 0.75,
            min_alternative: 0.08,
            min_tag: 0.5,
        }
    }
}

/// What one interpretation cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stats {
    /// Milliseconds in the encoder.
    pub encode_ms: f64,
    /// Milliseconds in the trained heads.
    pub heads_ms: f64,
    /// Tokens of the request.
    pub tokens: usize,
}

/// The loaded models and the current catalog.
pub struct Engine {
    embedder: Embedder,
    heads: Heads,
    meta: Meta,
    digests: Vec<ModelDigest>,
    device: Device,
    catalog: BTreeMap<String, PlaybookSpec>,
    /// Thresholds (public for benchmarks and ablations).
    pub options: Options,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", &self.device)
            .field("playbooks", &self.catalog.len())
            .finish()
    }
}

fn read_digested(root: &Path, path: &Path, digests: &mut Vec<ModelDigest>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    digests.push(ModelDigest {
        name: path
            .strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned(),
        path: path.to_path_buf(),
        sha256: hex::encode(Sha256::digest(&bytes)),
    });
    Ok(bytes)
}

fn pick_device(pref: DevicePreference) -> Device {
    match pref {
        DevicePreference::Cpu => Device::Cpu,
        DevicePreference::Auto => {
            #[cfg(feature = "cuda")]
            {
                match Device::cuda_if_available(0) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!("CUDA unavailable ({e}), using the CPU");
                        Device::Cpu
                    }
                }
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cpu
        }
    }
}

/// A value span the heads found: its role, where it is, how sure.
#[derive(Debug, Clone)]
struct Found {
    role: usize,
    start: usize,
    end: usize,
    prob: f32,
}

/// What the heads say about one request.
struct Reading {
    intent: Vec<f32>,
    polarity: Vec<f32>,
    found: Vec<Found>,
}

fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

impl Engine {
    /// Loads the encoder (`all-MiniLM-L6-v2/`) and the trained heads
    /// (`hearth-intent/`) from `models_dir`, on the device chosen by `pref`
    /// (logged). [`Engine::digests`] then lists the sha256 of every model
    /// file read.
    pub fn load(models_dir: &Path, pref: DevicePreference) -> Result<Engine> {
        let device = pick_device(pref);
        tracing::info!(
            device = if device.is_cuda() { "cuda" } else { "cpu" },
            "inference device chosen"
        );
        let mut digests = Vec::new();
        let embed_dir = models_dir.join(EMBED_DIR);
        let weights = read_digested(
            models_dir,
            &embed_dir.join("model.safetensors"),
            &mut digests,
        )?;
        for f in ["tokenizer.json", "config.json"] {
            read_digested(models_dir, &embed_dir.join(f), &mut digests)?;
        }
        let embedder = Embedder::load(&embed_dir, weights, &device)?;
        let heads_dir = models_dir.join(HEADS_DIR);
        let meta_bytes = read_digested(models_dir, &heads_dir.join(META_FILE), &mut digests)
            .context("the interpreter is not trained: run scripts/train-intent")?;
        let meta: Meta = serde_json::from_slice(&meta_bytes)
            .with_context(|| format!("parsing {}", heads_dir.join(META_FILE).display()))?;
        anyhow::ensure!(
            meta.format == RECIPE,
            "{} was made by {}, this build reads {RECIPE}: run scripts/train-intent",
            heads_dir.join(META_FILE).display(),
            meta.format
        );
        let bytes = read_digested(models_dir, &heads_dir.join(HEADS_FILE), &mut digests)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        anyhow::ensure!(
            sha == meta.weights_sha256,
            "{} has sha256 {sha}, but {} names {}",
            heads_dir.join(HEADS_FILE).display(),
            META_FILE,
            meta.weights_sha256
        );
        let heads = Heads::load(meta.dims, &bytes, &device)?;
        Ok(Engine {
            embedder,
            heads,
            meta,
            digests,
            device,
            catalog: BTreeMap::new(),
            options: Options::default(),
        })
    }

    /// The sha256 digests of the model files loaded.
    pub fn digests(&self) -> &[ModelDigest] {
        &self.digests
    }

    /// True when inference runs on a CUDA device.
    pub fn is_cuda(&self) -> bool {
        self.device.is_cuda()
    }

    /// True when the playbook only reads (unknown ids count as changes).
    pub fn is_read(&self, id: &str) -> bool {
        self.catalog.get(id).is_some_and(|s| s.risk == Risk::Read)
    }

    /// What the trained heads' outputs mean.
    pub fn labels(&self) -> &Labels {
        &self.meta.labels
    }

    /// The language resources the heads were trained with.
    pub fn lexicon(&self) -> &Lexicon {
        &self.meta.lexicon
    }

    /// Installs the catalog. A playbook the heads were not trained on can
    /// only be run as a structured intent until the interpreter is trained
    /// again (logged).
    pub fn set_catalog(&mut self, specs: &[PlaybookSpec]) -> Result<()> {
        for s in specs {
            if !self.meta.labels.intents.contains(&s.id) {
                tracing::warn!(
                    playbook = %s.id,
                    "the interpreter was not trained on this playbook; it is reachable as a structured intent only until scripts/train-intent runs again"
                );
            }
        }
        self.catalog = specs.iter().map(|s| (s.id.clone(), s.clone())).collect();
        Ok(())
    }

    /// Nothing to warm: kept for the daemon's start-up sequence.
    pub fn warm(&self) -> Result<()> {
        Ok(())
    }

    /// Interprets one request against the catalog and the current domains.
    pub fn interpret(&self, text: &str, ctx: &Context) -> Interpretation {
        self.interpret_with_stats(text, ctx).0
    }

    fn read(&self, text: &str, stats: &mut Stats) -> Result<Reading> {
        let t0 = Instant::now();
        let (hidden, mask, encs) = self.embedder.token_states(&[text])?;
        stats.encode_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let out = self.heads.forward(&hidden, &mask, None)?;
        let intent = softmax(&out.intent.get(0)?.to_vec1::<f32>()?);
        let polarity = softmax(&out.polarity.get(0)?.to_vec1::<f32>()?);
        let tags = candle_nn::ops::softmax(&out.tags.get(0)?, D::Minus1)?;
        let tags: Vec<Vec<f32>> = tags.to_vec2()?;
        stats.heads_ms = t1.elapsed().as_secs_f64() * 1e3;
        let enc = &encs[0];
        let offsets = enc.get_offsets();
        let special = enc.get_special_tokens_mask();
        stats.tokens = offsets.len();
        let mut found: Vec<Found> = Vec::new();
        let mut prev_in: Option<usize> = None;
        for (i, p) in tags.iter().enumerate() {
            let (s, e) = offsets[i];
            if special[i] == 1 || e <= s {
                prev_in = None;
                continue;
            }
            let (best, prob) = p
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |a, (j, &v)| if v > a.1 { (j, v) } else { a });
            if best == 0 {
                prev_in = None;
                continue;
            }
            let role = (best - 1) / 2;
            let begins = (best - 1) % 2 == 0;
            // A token that continues the value before it (same role, no
            // begin tag, next to it) extends it; anything else starts one.
            // Pieces of one word (no space between them) always continue.
            let glued = found.last().is_some_and(|f| f.end == s && f.role == role);
            match (prev_in, found.last_mut()) {
                (Some(r), Some(f)) if r == role && (!begins || glued) => {
                    f.end = e;
                    f.prob = f.prob.min(prob);
                }
                _ => found.push(Found {
                    role,
                    start: s,
                    end: e,
                    prob,
                }),
            }
            prev_in = Some(role);
        }
        Ok(Reading {
            intent,
            polarity,
            found,
        })
    }

    /// [`Engine::interpret`], also returning what it cost.
    pub fn interpret_with_stats(&self, text: &str, ctx: &Context) -> (Interpretation, Stats) {
        let mut stats = Stats::default();
        let refuse = |reason: String, candidates: Vec<Candidate>| Interpretation::Refusal {
            reason,
            candidates,
        };
        if text.trim().is_empty() {
            return (refuse("the request is empty".into(), vec![]), stats);
        }
        if text.chars().count() > MAX_REQUEST_CHARS {
            return (
                refuse(
                    format!("the request is longer than {MAX_REQUEST_CHARS} characters"),
                    vec![],
                ),
                stats,
            );
        }
        if self.catalog.is_empty() {
            return (
                refuse("no playbook catalog is installed".into(), vec![]),
                stats,
            );
        }
        let reading = match self.read(text, &mut stats) {
            Ok(r) => r,
            Err(e) => return (refuse(format!("inference failed: {e:#}"), vec![]), stats),
        };
        (self.decide(text, ctx, &reading), stats)
    }

    /// The playbooks by probability, best first (installed ones only).
    fn ranked(&self, r: &Reading) -> Vec<Candidate> {
        let labels = &self.meta.labels;
        let mut c: Vec<Candidate> = labels
            .intents
            .iter()
            .zip(&r.intent)
            .enumerate()
            .filter(|(i, (id, _))| *i != labels.none() && self.catalog.contains_key(*id))
            .map(|(_, (id, &p))| Candidate {
                id: id.clone(),
                score: p,
            })
            .collect();
        c.sort_by(|a, b| b.score.total_cmp(&a.score));
        c
    }

    fn decide(&self, text: &str, ctx: &Context, r: &Reading) -> Interpretation {
        let o = &self.options;
        let labels = &self.meta.labels;
        let ranked = self.ranked(r);
        let shown: Vec<Candidate> = ranked.iter().take(3).cloned().collect();
        let refuse = |reason: String| Interpretation::Refusal {
            reason,
            candidates: shown.clone(),
        };
        let best = r
            .intent
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, &p)| if p > a.1 { (i, p) } else { a });
        let p_none = r.intent[labels.none()];
        if best.0 == labels.none() {
            return refuse(format!(
                "no playbook of the catalog does what the request asks (confidence {:.0}%)",
                p_none * 100.0
            ));
        }
        let id = &labels.intents[best.0];
        let Some(spec) = self.catalog.get(id) else {
            return refuse(format!("the playbook {id} is not installed"));
        };
        if r.polarity[DO_NOT] >= o.max_negation {
            return refuse(format!(
                "the request says not to do this ({}): nothing will be done",
                lower_first(&spec.description)
            ));
        }
        let fill = |s: &PlaybookSpec| self.fill(text, ctx, s, r);
        if r.polarity[ASKS] >= o.max_asks && spec.risk != Risk::Read {
            return match fill(spec) {
                Ok(params) => Interpretation::Clarify {
                    question: "The request asks about this change; should it be made?".into(),
                    options: vec![self.proposal(spec, params)],
                    candidates: shown,
                },
                Err(why) => refuse(format!(
                    "the request asks about a change rather than for one, and {why}"
                )),
            };
        }
        if best.1 < o.min_confidence {
            let options: Vec<Proposal> = ranked
                .iter()
                .take(3)
                .filter(|c| c.score >= o.min_alternative)
                .filter_map(|c| {
                    let s = self.catalog.get(&c.id)?;
                    fill(s).ok().map(|p| self.proposal(s, p))
                })
                .collect();
            if options.len() >= 2 || (options.len() == 1 && p_none < o.min_alternative) {
                return Interpretation::Clarify {
                    question: "Which of these did you mean?".into(),
                    options,
                    candidates: shown,
                };
            }
            return refuse(format!(
                "the request is not clear enough (best guess {id} at {:.0}%)",
                best.1 * 100.0
            ));
        }
        match fill(spec) {
            Ok(params) => Interpretation::Plan {
                playbook: id.clone(),
                params,
                confidence: best.1 * (1.0 - r.polarity[DO_NOT]),
                candidates: shown,
            },
            Err(why) => refuse(why),
        }
    }

    fn proposal(&self, spec: &PlaybookSpec, params: BTreeMap<String, Value>) -> Proposal {
        let args: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect();
        Proposal {
            playbook: spec.id.clone(),
            summary: if args.is_empty() {
                spec.description.clone()
            } else {
                format!("{} ({})", spec.description, args.join(", "))
            },
            params,
        }
    }

    /// The playbook's parameters from the value spans the heads found, each
    /// parsed and validated by its type; or why not.
    fn fill(
        &self,
        text: &str,
        ctx: &Context,
        spec: &PlaybookSpec,
        r: &Reading,
    ) -> std::result::Result<BTreeMap<String, Value>, String> {
        let roles = &self.meta.labels.roles;
        let o = &self.options;
        let mut raw: BTreeMap<String, Value> = BTreeMap::new();
        let mut used: Vec<(usize, usize)> = Vec::new();
        for f in &r.found {
            let role = &roles[f.role];
            let span = clean(&text[f.start..f.end]);
            let Some(p) = spec.params.iter().find(|p| &p.name == role) else {
                if spec.risk == Risk::Read || f.prob < o.min_tag {
                    continue;
                }
                return Err(format!(
                    "the request gives {role} {span:?}, which {} does not take",
                    spec.id
                ));
            };
            let value = self.parse(p, span, ctx)?;
            if let Some(prev) = raw.get(&p.name) {
                if prev != &value {
                    return Err(format!(
                        "the request gives two values for {}: {} and {}",
                        p.name,
                        plain(prev),
                        plain(&value)
                    ));
                }
            }
            raw.insert(p.name.clone(), value);
            used.push((f.start, f.end));
        }
        if spec.risk != Risk::Read {
            if let Some(v) = unused_value(text, &used) {
                return Err(format!(
                    "the request mentions {v}, which this plan ({}) would not use",
                    spec.id
                ));
            }
            for p in &spec.params {
                if p.kind != ParamKind::ExistingDomain {
                    continue;
                }
                if let Some(d) = raw.get(&p.name).and_then(Value::as_str) {
                    if ctx.protected.iter().any(|x| x.as_str() == d) {
                        return Err(format!(
                            "{d} is the protected admin domain: it cannot be deleted, cut off or opened by a request"
                        ));
                    }
                }
            }
        }
        spec.validate(&raw, ctx).map_err(|e| e.to_string())
    }

    fn parse(&self, p: &ParamSpec, span: &str, ctx: &Context) -> std::result::Result<Value, String> {
        let lex = &self.meta.lexicon;
        match &p.kind {
            ParamKind::ExistingDomain => {
                let key = squash(span);
                ctx.domains
                    .iter()
                    .find(|d| squash(d.as_str()) == key)
                    .map(|d| Value::String(d.to_string()))
                    .ok_or_else(|| {
                        format!(
                            "no domain {span:?}; the domains are {}",
                            ctx.domains
                                .iter()
                                .map(|d| d.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            }
            ParamKind::NewDomain => {
                if span.split_whitespace().count() > 1 {
                    return Err(format!(
                        "a domain's name is one word (letters, digits, '-'): {span:?} is not"
                    ));
                }
                Ok(Value::String(span.to_lowercase()))
            }
            ParamKind::Integer { .. } => {
                let n = if p.unit.as_deref() == Some("days") {
                    lex.parse_days(span)
                } else {
                    lex.parse_number(span)
                };
                n.map(Value::from).ok_or_else(|| {
                    format!(
                        "{span:?} is not {} ({})",
                        p.unit.as_deref().map_or("a number".to_string(), |u| format!("a number of {u}")),
                        p.name
                    )
                })
            }
            ParamKind::Port => lex
                .parse_number(span)
                .map(Value::from)
                .ok_or_else(|| format!("{span:?} is not a port")),
            _ => Ok(Value::String(span.to_string())),
        }
    }
}

/// A value written in the request that looks like a parameter (an address,
/// a network, a DNS name) outside every span the plan uses.
fn unused_value(text: &str, used: &[(usize, usize)]) -> Option<String> {
    let mut pos = 0;
    for word in text.split_whitespace() {
        let start = text[pos..].find(word).map_or(pos, |i| pos + i);
        let end = start + word.len();
        pos = end;
        let w = clean(word);
        if w.is_empty() {
            continue;
        }
        let looks = Address::parse(w).is_ok()
            || Cidr::parse_v4_field("x", w).is_ok()
            || (w.contains('.')
                && w.chars().any(|c| c.is_ascii_alphabetic())
                && w.rsplit('.').next().is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()))
                && DnsName::parse(w).is_ok());
        if !looks {
            continue;
        }
        let covered = used.iter().any(|&(a, b)| a < end && b > start);
        if !covered {
            return Some(w.to_string());
        }
    }
    None
}

/// A span without the quotes and punctuation around it.
fn clean(s: &str) -> &str {
    s.trim()
        .trim_matches(|c: char| {
            matches!(
                c,
                '"' | '\'' | '`' | '(' | ')' | '[' | ']' | '<' | '>' | ',' | ';' | '!' | '?' | '“' | '”' | '‘' | '’'
            )
        })
        .trim_end_matches(['.', ':'])
        .trim()
}

/// Letters and digits only, lower-case: "Living Room" and "living-room"
/// both name the domain livingroom.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn lower_first(s: &str) -> String {
    let s = s.trim_end_matches('.');
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squash_joins_words_of_a_domain() {
        assert_eq!(squash("Living Room"), "livingroom");
        assert_eq!(squash("home-office"), "homeoffice");
    }

    #[test]
    fn clean_drops_quotes_and_sentence_ends() {
        assert_eq!(clean("\"nas.lan\"."), "nas.lan");
        assert_eq!(clean("(tv),"), "tv");
        assert_eq!(clean("fd00::1"), "fd00::1");
    }

    #[test]
    fn values_outside_the_used_spans_are_found() {
        let t = "add nas.lan at 10.0.0.2 and 10.0.0.3";
        let used = [(4, 11), (15, 23)];
        assert_eq!(unused_value(t, &used).as_deref(), Some("10.0.0.3"));
        assert_eq!(unused_value(t, &[(4, 11), (15, 23), (28, 36)]), None);
        assert_eq!(unused_value("we have 3 TVs", &[]), None);
    }
}

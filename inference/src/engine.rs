//! The engine: the frozen encoder, the trained heads and the catalog, and
//! the deterministic decision procedure that turns what the heads say into
//! a plan, a clarifying question or a refusal (see the crate docs).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{Device, D};
use hearth_common::mac::MacAddr;
use hearth_common::spec::{Context, ParamKind, ParamSpec, PlaybookSpec, Risk};
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

/// The most parts of a request (cut at punctuation, see `parts`) that are
/// read one by one before a change is planned.
pub const MAX_PARTS: usize = 6;

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

/// A plan offered in a clarifying question: the bus contract's
/// `ClarifyOption` (playbook id, canonical parameters after
/// [`PlaybookSpec::validate`], the plan in plain words), which `Ask`
/// answers with as it is.
pub use hearth_common::contract::intent::ClarifyOption as Proposal;

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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    /// A destructive playbook (the catalog's `risk = "destructive"`: a
    /// deletion, a revocation, a record replaced) is planned only at this
    /// probability or above; below it is asked about like any playbook
    /// below `min_confidence`.
    pub min_destructive: f32,
    /// Below this probability of its tag, a token is not trusted as a
    /// value.
    pub min_tag: f32,
    /// When the playbook's declared opposite gets at least this
    /// probability, the request becomes a clarifying question.
    pub max_opposite: f32,
    /// The same for another change that takes the same parameters (add
    /// or update a record).
    pub max_twin: f32,
    /// Any other change at least this likely beside the best one: the
    /// request may ask for both ("add nas.lan at … and give it a
    /// certificate"), so it is asked about like a best playbook below
    /// `min_confidence`, never planned.
    pub max_rival: f32,
    /// A value-like word outside every value of the plan is context (not
    /// a value the plan would drop) only when the model gives each of its
    /// pieces at least this probability of being outside every value or
    /// tagged as context.
    pub min_context: f32,
    /// Two values of one type (from and to) keep the roles the model gave
    /// them only when its odds of the other way round are below this;
    /// otherwise the request becomes "which way round?".
    pub max_swap_odds: f32,
    /// …and each value's own odds of the other role below this (one
    /// value sure of its role does not make the other one sure).
    pub max_torn: f32,
    /// Read again with the two values traded, each position must still
    /// favour its own role, the two readings together: the other role's
    /// probability there (the mean of the two readings') below this share
    /// of its own's. The re-read asks whether the roles follow the words'
    /// positions, not their identity; a position it flips, or reads as
    /// neither, asks.
    pub max_reread_odds: f32,
    /// A span tagged at least this sure…
    pub sure_tag: f32,
    /// …outweighs another of the same role tagged below this one (which
    /// is then not a value; a value-like word left so still refuses).
    pub weak_tag: f32,
    /// A required domain name that no span holds is the word the tagger
    /// gives the likeliest of its role, when that is at least this
    /// probability and the word parses (the committee still plans only a
    /// value the members that plan all read).
    pub min_pointer: f32,
    /// Read a request of several parts part by part too, and ask instead
    /// of planning when a part alone plans another change
    /// (the parts check of [`Engine::interpret`]); off only for the
    /// ablation.
    pub check_parts: bool,
    /// A plan more than half the members make stands when every other
    /// member read the same playbook and refused only over its values
    /// ([`Engine::interpret`]'s committee); off, every member must plan it.
    pub values_majority: bool,
    /// A read-only plan more than half the members make stands when every
    /// other member asked a question offering it; off, every member must
    /// plan it.
    pub read_majority: bool,
    /// Every member reads the values from the members' mean tag
    /// probabilities (one decoding, the same spans for all); each member's
    /// playbook and polarity stay its own, and a plan still needs every
    /// member's. Off, each member decodes its own tags (recipe 14's
    /// committee, before 2026-12-06); off only for the ablation.
    pub mean_tags: bool,
    /// A change asked for in a request that ends with a question mark
    /// ("maybe allow guests to media?") is offered in a clarifying
    /// question, never planned: a question never yields a change, even
    /// when the heads read it as a plain request. Off only for the
    /// ablation.
    pub question_marks_ask: bool,
    /// A plan more than half the members make stands when every other
    /// member, not sure enough of the playbook, asked a question whose
    /// only option is that plan, its own likeliest playbook, every other
    /// likely one lacking a value the request names: the owner would be
    /// offered nothing else. A question over the playbook's opposite or
    /// twin, its polarity, its roles or its values is not such a question.
    /// Off only for the ablation.
    pub lone_majority: bool,
}

impl Options {
    /// The probability a playbook of this risk needs to be planned.
    pub fn needed(&self, risk: Risk) -> f32 {
        match risk {
            Risk::Destructive => self.min_confidence.max(self.min_destructive),
            Risk::Read | Risk::Change => self.min_confidence,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_negation: 0.3,
            max_asks: 0.5,
            min_confidence: 0.75,
            min_alternative: 0.08,
            min_destructive: 0.9,
            min_tag: 0.5,
            max_opposite: 0.03,
            max_twin: 0.1,
            max_rival: 0.1,
            min_context: 0.97,
            max_swap_odds: 0.1,
            max_torn: 0.25,
            max_reread_odds: 0.3,
            sure_tag: 0.9,
            weak_tag: 0.75,
            min_pointer: 0.1,
            check_parts: true,
            values_majority: true,
            read_majority: true,
            mean_tags: true,
            question_marks_ask: true,
            lone_majority: true,
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
    /// Encoder passes over the request (or a part of it) read again with
    /// two values traded; one serves every member of the committee.
    pub rereads: usize,
}

/// The loaded models and the current catalog.
pub struct Engine {
    embedder: Embedder,
    /// The committee: heads trained alike from different seeds (and,
    /// after the first, on examples of their own).
    heads: Vec<Heads>,
    meta: Meta,
    digests: Vec<ModelDigest>,
    device: Device,
    catalog: BTreeMap<String, PlaybookSpec>,
    /// HEARTH_INFER_DEBUG set at load: every request's tag, playbook and
    /// polarity probabilities go to stderr.
    debug: bool,
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
    /// Mean probability of each role over its pieces (begin + inside).
    roles: Vec<f32>,
}

/// A playbook's parameters as read, and the other reading when the
/// direction of two same-type parameters is not sure.
struct Filled {
    params: BTreeMap<String, Value>,
    /// Another reading to offer beside `params`: the two values of a pair
    /// traded, or a value the request also writes in place of one held.
    swapped: Option<BTreeMap<String, Value>>,
    /// The question offering the two; "which way round" when none.
    ask: Option<String>,
}

/// What one member of the committee says about one request.
struct Reading {
    /// Which member.
    member: usize,
    intent: Vec<f32>,
    polarity: Vec<f32>,
    found: Vec<Found>,
    /// Every word piece group (byte range) and its probabilities: of
    /// being outside every value (index 0), of each role (1 + role).
    outside: Vec<Piece>,
    /// The request read again with two values traded, shared by the
    /// members that read it together: each traded text is read once, for
    /// every member (the encoder pass is the cost).
    rereads: Rc<Rereads>,
}

/// Traded readings already made, by the text read and the two domains
/// whose placeholders were traded: every member's reading of it.
#[derive(Default)]
struct Rereads(RefCell<Vec<(Traded, Rc<Vec<Reading>>)>>);

/// A text read again, and the two domains whose placeholders it trades.
type Traded = (String, Option<(String, String)>);

/// A word piece group's byte range and its probabilities: of being outside
/// every value (index 0), of each role (1 + role).
type Piece = (usize, usize, Vec<f32>);

impl Reading {
    /// The likeliest label (a playbook or none) and its probability.
    fn likeliest(&self) -> (usize, f32) {
        self.intent
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, &p)| if p > a.1 { (i, p) } else { a })
    }
}

/// What one member decided, and whether it stopped only over the values:
/// it read the playbook `over_values` surely, not negated, not asked about
/// and with no rival or opposite, and could not fill it (a refusal) or
/// found two values for one of its parameters (a question offering both).
struct Said {
    said: Interpretation,
    over_values: Option<String>,
    /// A question asked because the member was not sure enough of the
    /// playbook (below the bar, or a rival change beside it), offering
    /// the one plan it could fill of the likely ones: that plan
    /// (`lone_majority`).
    lone: Option<(String, BTreeMap<String, Value>)>,
}

impl From<Interpretation> for Said {
    fn from(said: Interpretation) -> Said {
        Said {
            said,
            over_values: None,
            lone: None,
        }
    }
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
        let heads = Heads::load_committee(meta.dims, meta.recipe.members, &bytes, &device)?;
        Ok(Engine {
            embedder,
            heads,
            meta,
            digests,
            device,
            catalog: BTreeMap::new(),
            debug: std::env::var_os("HEARTH_INFER_DEBUG").is_some(),
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

    /// Whether a majority plan of `id` may stand beside questions offering
    /// it ([`Options::read_majority`] and a read playbook).
    fn read_majority_of(&self, id: &str) -> bool {
        self.options.read_majority && self.is_read(id)
    }

    /// What the trained heads' outputs mean.
    pub fn labels(&self) -> &Labels {
        &self.meta.labels
    }

    /// The language resources the heads were trained with.
    pub fn lexicon(&self) -> &Lexicon {
        &self.meta.lexicon
    }

    /// Checks the signed language file's text against the lexicon the heads
    /// were trained with (the copy in `meta.json`, which the engine uses):
    /// see [`Lexicon::check_same`].
    pub fn check_language(&self, text: &str) -> Result<()> {
        self.meta.lexicon.check_same(text)
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

    /// Runs the model on the request with the existing domains it names
    /// masked (`swap`: two of them trade placeholders): the encoder once,
    /// then every member of the committee. Returns what each read, with
    /// every span in the request's own byte ranges. With `mean_tags`, the
    /// spans are decoded once from the members' mean tag probabilities and
    /// every member's reading holds those; each member's playbook and
    /// polarity stay its own.
    fn read(
        &self,
        text: &str,
        ctx: &Context,
        swap: Option<(&str, &str)>,
        stats: &mut Stats,
    ) -> Result<Vec<Reading>> {
        let masked = mask(text, ctx, &self.meta.lexicon.pools.placeholders, swap);
        let t0 = Instant::now();
        let (hidden, mask, encs) = self.embedder.token_states(&[masked.text.as_str()])?;
        stats.encode_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let enc = &encs[0];
        stats.tokens = enc.get_offsets().len();
        if self.debug {
            eprintln!("read as: {}", masked.text);
        }
        // Spans from tag probabilities, in the request's own byte ranges.
        let decode = |tags: &[Vec<f32>]| -> (Vec<Found>, Vec<Piece>) {
            let (found, outside) = decode_spans(
                &masked.text,
                enc.get_offsets(),
                enc.get_special_tokens_mask(),
                enc.get_tokens(),
                tags,
            );
            let found = found
                .into_iter()
                .map(|mut f| {
                    (f.start, f.end) = masked.original(f.start, f.end);
                    f
                })
                .collect();
            let outside = outside
                .into_iter()
                .map(|(s, e, p)| {
                    let (s, e) = masked.original(s, e);
                    (s, e, p)
                })
                .collect();
            (found, outside)
        };
        let mut heard = Vec::with_capacity(self.heads.len());
        for (member, heads) in self.heads.iter().enumerate() {
            let o = heads.forward(&hidden, &mask, None)?;
            let intent = softmax(&o.intent.get(0)?.to_vec1::<f32>()?);
            let polarity = softmax(&o.polarity.get(0)?.to_vec1::<f32>()?);
            let tags = candle_nn::ops::softmax(&o.tags.get(0)?, D::Minus1)?;
            let tags: Vec<Vec<f32>> = tags.to_vec2()?;
            if self.debug {
                eprintln!("member {member}");
                for (i, t) in enc.get_tokens().iter().enumerate() {
                    let p: Vec<String> = tags[i].iter().map(|x| format!("{x:.2}")).collect();
                    eprintln!("{t:>12} {}", p.join(" "));
                }
                eprintln!("intent {:?}\npolarity {:?}", intent, polarity);
            }
            heard.push((intent, polarity, tags));
        }
        let mean = (self.options.mean_tags && heard.len() > 1).then(|| {
            let (n, mut sum) = (heard.len() as f32, heard[0].2.clone());
            for (_, _, tags) in &heard[1..] {
                for (row, other) in sum.iter_mut().zip(tags) {
                    for (a, b) in row.iter_mut().zip(other) {
                        *a += b;
                    }
                }
            }
            for row in &mut sum {
                for a in row.iter_mut() {
                    *a /= n;
                }
            }
            decode(&sum)
        });
        let rereads = Rc::new(Rereads::default());
        let out = heard
            .into_iter()
            .enumerate()
            .map(|(member, (intent, polarity, tags))| {
                let (found, outside) = mean.clone().unwrap_or_else(|| decode(&tags));
                Reading {
                    member,
                    intent,
                    polarity,
                    found,
                    outside,
                    rereads: rereads.clone(),
                }
            })
            .collect();
        stats.heads_ms = t1.elapsed().as_secs_f64() * 1e3;
        Ok(out)
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
        let readings = match self.read(text, ctx, None, &mut stats) {
            Ok(r) => r,
            Err(e) => return (refuse(format!("inference failed: {e:#}"), vec![]), stats),
        };
        let each: Vec<Said> = readings.iter().map(|r| self.decide(text, ctx, r)).collect();
        if self.debug {
            for (k, m) in each.iter().enumerate() {
                eprintln!(
                    "member {k}: {}",
                    serde_json::to_string(&m.said).unwrap_or_default()
                );
            }
        }
        let propose = |id: String, params| {
            self.catalog
                .get(&id)
                .map(|spec| self.proposal(spec, params))
        };
        stats.rereads = readings.first().map_or(0, |r| r.rereads.0.borrow().len());
        let whole = settle(each, propose, self.options.values_majority, |id| {
            self.read_majority_of(id)
        });
        let outcome = self.check_parts(text, ctx, whole, &mut stats);
        (self.question_asks(text, outcome), stats)
    }

    /// A change planned from a request written as a question (its last
    /// character a question mark) becomes a clarifying question offering
    /// it: the owner confirms before anything changes.
    fn question_asks(&self, text: &str, outcome: Interpretation) -> Interpretation {
        let Interpretation::Plan {
            playbook,
            params,
            candidates,
            ..
        } = &outcome
        else {
            return outcome;
        };
        if !self.options.question_marks_ask
            || self.is_read(playbook)
            || !text.trim_end().ends_with(['?', '\u{ff1f}'])
        {
            return outcome;
        }
        let Some(spec) = self.catalog.get(playbook) else {
            return outcome;
        };
        Interpretation::Clarify {
            question: "The request is written as a question: is this the change you want?".into(),
            options: vec![self.proposal(spec, params.clone())],
            candidates: candidates.clone(),
        }
    }

    /// A change is planned only when the request's parts do not ask for
    /// another one, nor say not to do it. A request of several parts
    /// ([`parts`]) has each part read alone; a part that asks NOT to do the
    /// whole's playbook refuses it; when a part alone plans a different
    /// change and no part plans this one, the whole says more than one
    /// thing ("removing access isn't what I'm after, I want iot to reach
    /// lan", read whole as a revocation) and becomes a question offering
    /// the plans, never a guess between them; a part whose reading is a
    /// question whose likeliest option is another change asks for the
    /// other changes it offers too. A part that
    /// says not to do the whole's playbook and names no value refuses it
    /// unless another part alone plans it.
    fn check_parts(
        &self,
        text: &str,
        ctx: &Context,
        whole: Interpretation,
        stats: &mut Stats,
    ) -> Interpretation {
        let Interpretation::Plan {
            playbook,
            params,
            candidates,
            ..
        } = &whole
        else {
            return whole;
        };
        let spans = parts(text);
        if !self.options.check_parts || spans.len() < 2 || self.is_read(playbook) {
            return whole;
        }
        if spans.len() > MAX_PARTS {
            // Each part costs an encoder pass: a change asked for in more
            // parts than are read one by one is offered, never planned.
            let Some(spec) = self.catalog.get(playbook) else {
                return whole;
            };
            return Interpretation::Clarify {
                question: format!(
                    "The request has more than {MAX_PARTS} parts, too many to check one by one: is this what you want?"
                ),
                options: vec![self.proposal(spec, params.clone())],
                candidates: candidates.clone(),
            };
        }
        let Some(spec) = self.catalog.get(playbook) else {
            return whole;
        };
        let labels = &self.meta.labels;
        let mut others: Vec<Proposal> = Vec::new();
        let mut holds = false;
        let mut unvalued_negation = false;
        for (s, e) in spans {
            let part = &text[s..e];
            let mut cost = Stats::default();
            let Ok(readings) = self.read(part, ctx, None, &mut cost) else {
                return whole;
            };
            stats.encode_ms += cost.encode_ms;
            stats.heads_ms += cost.heads_ms;
            // A part that, for any member, asks for this very plan (the
            // playbook, and values that fill it the same) and says NOT to
            // do it negates the whole ("please don't remove the office
            // domain, we still use it": read whole, the second part
            // drowned the negation): a negated request never yields the
            // plan it negates, whichever part carries the negation. A part
            // negating the same playbook with other values ("I don't need
            // a custom subnet, just …", "keep admin, but delete lab") says
            // nothing against this plan.
            let negated = |r: &Reading| {
                labels.intents.get(r.likeliest().0) == Some(playbook)
                    && r.polarity[DO_NOT] >= self.options.max_negation
            };
            let negates = readings.iter().any(|r| {
                negated(r)
                    && self
                        .fill(part, ctx, spec, r)
                        .is_ok_and(|f| f.params == *params)
            });
            // One that says not to do it and names no value at all
            // ("revoking access is the wrong idea, lab should reach
            // studio") negates it unless another part, read alone, asks
            // for this very plan ("I don't need a custom subnet, just
            // make lab").
            unvalued_negation |= readings.iter().any(|r| negated(r) && r.found.is_empty());
            if negates {
                return Interpretation::Refusal {
                    reason: format!(
                        "a part of the request says not to do this ({}): nothing will be done",
                        lower_first(&spec.description)
                    ),
                    candidates: candidates.clone(),
                };
            }
            let each = readings.iter().map(|r| self.decide(part, ctx, r)).collect();
            stats.rereads += readings.first().map_or(0, |r| r.rereads.0.borrow().len());
            match settle(
                each,
                |id, q| self.catalog.get(&id).map(|s| self.proposal(s, q)),
                self.options.values_majority,
                |id| self.read_majority_of(id),
            ) {
                Interpretation::Plan {
                    playbook: p,
                    params: q,
                    ..
                } => {
                    if p == *playbook && q == *params {
                        holds = true;
                    } else if p != *playbook && !self.is_read(&p) {
                        if let Some(spec) = self.catalog.get(&p) {
                            others.push(self.proposal(spec, q));
                        }
                    }
                }
                // A part asking which way round, or which value, of
                // another change, or leaning to another change first
                // ("… lab should get to studio", read alone as a question
                // offering the allow before the revocation), asks for that
                // change all the same: the whole's plan, which no part
                // alone makes, is offered beside it, never carried out.
                Interpretation::Clarify { options, .. }
                    if options.first().is_some_and(|o| o.playbook != *playbook) =>
                {
                    others.extend(
                        options
                            .into_iter()
                            .filter(|o| o.playbook != *playbook && !self.is_read(&o.playbook)),
                    );
                }
                _ => {}
            }
        }
        if unvalued_negation && !holds {
            return Interpretation::Refusal {
                reason: format!(
                    "a part of the request says not to do this ({}), and no other part asks for it: nothing will be done",
                    lower_first(&spec.description)
                ),
                candidates: candidates.clone(),
            };
        }
        if holds || others.is_empty() {
            return whole;
        }
        let mut options = vec![self.proposal(spec, params.clone())];
        for o in others {
            offer(&mut options, o);
        }
        options.truncate(3);
        Interpretation::Clarify {
            question: "Parts of the request ask for different changes: which one did you mean?"
                .into(),
            options,
            candidates: candidates.clone(),
        }
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

    fn decide(&self, text: &str, ctx: &Context, r: &Reading) -> Said {
        let o = &self.options;
        let labels = &self.meta.labels;
        let ranked = self.ranked(r);
        let shown: Vec<Candidate> = ranked.iter().take(3).cloned().collect();
        let refusal = |reason: String| Interpretation::Refusal {
            reason,
            candidates: shown.clone(),
        };
        let refuse = |reason: String| Said::from(refusal(reason));
        let best = r.likeliest();
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
        // The opposite playbook, or another change taking the same
        // parameters (add or update a record), at all likely: ask, never
        // guess.
        let required = |s: &PlaybookSpec| -> Vec<String> {
            s.params
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name.clone())
                .collect()
        };
        let twin = ranked.iter().find(|c| {
            c.id != *id
                && c.score >= o.max_twin
                && self.catalog.get(&c.id).is_some_and(|s| {
                    s.risk != Risk::Read && spec.risk != Risk::Read && required(s) == required(spec)
                })
        });
        let prob = |want: &str| {
            labels
                .intents
                .iter()
                .position(|i| i == want)
                .map_or(0.0, |i| r.intent[i])
        };
        let opposite = spec
            .language
            .opposite
            .as_deref()
            .filter(|opp| prob(opp) >= o.max_opposite)
            .or(twin.map(|c| c.id.as_str()));
        if let Some(opp) = opposite {
            {
                let options: Vec<Proposal> = [Some(spec), self.catalog.get(opp)]
                    .into_iter()
                    .flatten()
                    .filter_map(|s| fill(s).ok().map(|f| (s, f)))
                    .flat_map(|(s, f)| {
                        std::iter::once(f.params)
                            .chain(f.swapped)
                            .map(move |p| self.proposal(s, p))
                    })
                    .collect();
                if options.is_empty() {
                    return refuse(format!(
                        "the request could mean {id} or its opposite {opp}, and fills neither"
                    ));
                }
                let question = match options.as_slice() {
                    [only] => format!(
                        "This could mean {id} or {opp}; the request gives the values of {} \
                         alone: is that what you meant?",
                        only.playbook
                    ),
                    _ => format!("This could mean {id} or {opp}: which one?"),
                };
                return Interpretation::Clarify {
                    question,
                    options,
                    candidates: shown,
                }
                .into();
            }
        }
        if r.polarity[ASKS] >= o.max_asks && spec.risk != Risk::Read {
            return match fill(spec) {
                Ok(f) => Interpretation::Clarify {
                    question: "The request asks about this change; should it be made?".into(),
                    options: std::iter::once(f.params)
                        .chain(f.swapped)
                        .map(|p| self.proposal(spec, p))
                        .collect(),
                    candidates: shown,
                }
                .into(),
                Err(why) => refuse(format!(
                    "the request asks about a change rather than for one, and {why}"
                )),
            };
        }
        let rival = spec.risk != Risk::Read
            && ranked.iter().any(|c| {
                c.id != *id
                    && c.score >= o.max_rival
                    && self
                        .catalog
                        .get(&c.id)
                        .is_some_and(|s| s.risk != Risk::Read)
            });
        if best.1 < o.needed(spec.risk) || rival {
            // The likely playbooks, filled or not.
            let likely: Vec<(f32, &PlaybookSpec, std::result::Result<Filled, String>)> = ranked
                .iter()
                .take(3)
                .filter(|c| c.score >= o.min_alternative)
                .filter_map(|c| self.catalog.get(&c.id).map(|s| (c.score, s, fill(s))))
                .collect();
            // Every other likely one unfilled, and with a required value
            // the tagger marked nowhere in the request: no second request
            // the owner could mean beside this one ("add nas.lan at … and
            // give it a certificate" has the certificate's name); and those
            // rivals with the playbook hold the probability the playbook
            // would need alone: the doubt is between them, not spread over
            // playbooks too unlikely to be offered.
            let lone = o.lone_majority
                && likely
                    .iter()
                    .all(|(_, s, f)| s.id == *id || (f.is_err() && self.lacks_values(s, r)))
                && likely.iter().map(|(p, ..)| p).sum::<f32>() >= o.needed(spec.risk);
            let options: Vec<Proposal> = likely
                .into_iter()
                .filter_map(|(_, s, f)| f.ok().map(|f| self.proposal(s, f.params)))
                .collect();
            if options.len() >= 2 || (options.len() == 1 && p_none < o.min_alternative) {
                let lone = match options.as_slice() {
                    [only] if lone && only.playbook == *id => {
                        Some((only.playbook.clone(), only.params.clone()))
                    }
                    _ => None,
                };
                return Said {
                    said: Interpretation::Clarify {
                        question: which_of(&options),
                        options,
                        candidates: shown,
                    },
                    over_values: None,
                    lone,
                };
            }
            return refuse(format!(
                "the request is not clear enough (best guess {id} at {:.0}%)",
                best.1 * 100.0
            ));
        }
        let protected = || {
            spec.language.refuse_protected
                && r.found.iter().any(|f| {
                    let word = squash(&text[f.start..f.end]);
                    ctx.protected.iter().any(|d| squash(d.as_str()) == word)
                })
        };
        match fill(spec) {
            Ok(Filled {
                params,
                swapped: None,
                ..
            }) => Interpretation::Plan {
                playbook: id.clone(),
                params,
                confidence: best.1 * (1.0 - r.polarity[DO_NOT]),
                candidates: shown,
            }
            .into(),
            // Every rule on the playbook passed; only its values did not
            // (two values for one parameter offered, or none that fills
            // it). A member that reads a protected domain as a value of a
            // playbook that refuses it is heard alone, whatever the others
            // read. A question over the roles ("which way round?") is not
            // over the values.
            Ok(Filled {
                params,
                swapped: Some(other),
                ask,
            }) => Said {
                over_values: (ask.is_some() && !protected()).then(|| id.clone()),
                lone: None,
                said: Interpretation::Clarify {
                    question: ask.unwrap_or_else(|| "Which way round did you mean?".into()),
                    options: vec![self.proposal(spec, params), self.proposal(spec, other)],
                    candidates: shown,
                },
            },
            Err(why) => Said {
                said: refusal(why),
                over_values: (!protected()).then(|| id.clone()),
                lone: None,
            },
        }
    }

    /// True when a required parameter of the playbook, with no default,
    /// has no value span tagged for its role in the reading.
    fn lacks_values(&self, spec: &PlaybookSpec, r: &Reading) -> bool {
        let roles = &self.meta.labels.roles;
        spec.params
            .iter()
            .filter(|p| p.required && p.default.is_none())
            .any(|p| {
                !r.found
                    .iter()
                    .any(|f| roles.get(f.role).is_some_and(|x| *x == p.name))
            })
    }

    fn proposal(&self, spec: &PlaybookSpec, params: BTreeMap<String, Value>) -> Proposal {
        let args: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
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
    ) -> std::result::Result<Filled, String> {
        let roles = &self.meta.labels.roles;
        let o = &self.options;
        let mut raw: BTreeMap<String, Value> = BTreeMap::new();
        let mut used: Vec<(usize, usize)> = Vec::new();
        let mut taken: Vec<(String, usize, usize)> = Vec::new();
        let mut strength: BTreeMap<String, f32> = BTreeMap::new();
        // A second value for a parameter held, or a value the plan would not
        // use that it could take instead: offered beside the plan (a
        // clarifying question), with the question to ask and whether the
        // tagger marked it for that parameter.
        let mut instead: Option<(String, String, Value, bool)> = None;
        let found = assign_roles(spec, roles, &r.found);
        if self.debug {
            for f in &found {
                eprintln!(
                    "span {:?} {} {:.3}",
                    &text[f.start..f.end],
                    roles[f.role],
                    f.prob
                );
            }
        }
        let unsure = self.unsure_pair(text, ctx, spec, &found, r);
        let context = self.meta.labels.context();
        for f in &found {
            // A value-like span the model reads as context only ("nas moved
            // from 10.0.0.5 …", "we have 3 TVs"), when it is sure of it:
            // not a value the plan drops. Unsure, it is left out of `used`
            // (a value-like word then asks or refuses below).
            if Some(f.role) == context {
                if self.only_context(r, f.start, f.end) {
                    used.push((f.start, f.end));
                }
                continue;
            }
            let role = &roles[f.role];
            let param = spec.params.iter().find(|p| &p.name == role);
            // A new name or a duration is the whole word it stands in:
            // "Bad_Name" is not the name "Bad", "two-year" not 2 days.
            let (start, end) = match param {
                Some(p) if p.kind == ParamKind::NewDomain || p.unit.is_some() => {
                    whole_word(text, f.start, f.end)
                }
                Some(p) if p.kind == ParamKind::Device => whole_token(text, f.start, f.end),
                _ => (f.start, f.end),
            };
            let (start, end) = match param {
                // A duration takes in the number words and units next to
                // it that the language file reads with it ("10" + "weeks").
                Some(p) if p.unit.is_some() => self.whole_duration(text, start, end),
                // An address or a DNS name has no space: of a span over
                // several words, the one word that parses as the type.
                Some(p) if typed_word(&p.kind) => self
                    .typed_word_in(p, text, start, end, ctx)
                    .unwrap_or((start, end)),
                _ => (start, end),
            };
            // A piece of a value already read for this parameter (the
            // "a month" of "a year and a month") adds nothing.
            if param.is_some_and(|p| {
                taken
                    .iter()
                    .any(|(n, a, b)| n == &p.name && *a <= start && end <= *b)
            }) {
                continue;
            }
            let span = clean(&text[start..end]);
            let Some(p) = param else {
                if spec.risk == Risk::Read || f.prob < o.min_tag {
                    continue;
                }
                return Err(format!(
                    "the request gives {role} {span:?}, which {} does not take",
                    spec.id
                ));
            };
            if p.kind == ParamKind::NewDomain {
                if let Some(q) = quoted_around(text, f.start, f.end) {
                    if q != span {
                        return Err(format!(
                            "a domain's name is one word (letters, digits, '-'): {q:?} is not"
                        ));
                    }
                }
            }
            // Another span of this role that the tagger is sure of.
            let sure_other = found.iter().any(|g| {
                g.role == f.role && (g.start, g.end) != (f.start, f.end) && g.prob >= o.sure_tag
            });
            let weak = f.prob < o.weak_tag;
            let value = match self.typed(p, span, ctx) {
                Ok(v) => v,
                // A weakly tagged word that is not an address or a name,
                // beside one the tagger is sure of: not a value. (Left out
                // of `used`, so a value-like word still refuses below.)
                Err(_) if typed_word(&p.kind) && weak && sure_other => continue,
                Err(e) => return Err(e),
            };
            if let Some(prev) = raw.get(&p.name) {
                // One DNS name written twice, bare and in full ("the
                // printer … printer.lan"): the full one, with no question.
                match (p.kind == ParamKind::DnsName)
                    .then(|| bare_and_full(prev, &value))
                    .flatten()
                {
                    // The earlier one is the full name: this adds nothing.
                    Some(false) => {
                        used.push((start, end));
                        continue;
                    }
                    // This one is: the bare one gives way (its words stay
                    // used).
                    Some(true) => {
                        taken.retain(|t| t.0 != p.name);
                        raw.insert(p.name.clone(), value);
                        strength.insert(p.name.clone(), f.prob);
                        used.push((start, end));
                        taken.push((p.name.clone(), start, end));
                        continue;
                    }
                    None => {}
                }
                if prev != &value {
                    // A weak value beside one the tagger is sure of, before
                    // or after it, is not a value (left out of `used`, so a
                    // value-like word still asks or refuses below).
                    if weak && sure_other {
                        continue;
                    }
                    if !(f.prob >= o.sure_tag
                        && strength.get(&p.name).is_some_and(|&x| x < o.weak_tag))
                    {
                        // Two values of one parameter: both are offered
                        // (once; a third refuses).
                        if instead.is_none() && unsure.is_none() {
                            instead = Some((
                                format!(
                                    "The request gives two values for {}: which did you mean?",
                                    p.name
                                ),
                                p.name.clone(),
                                value,
                                true,
                            ));
                            used.push((start, end));
                            continue;
                        }
                        return Err(format!(
                            "the request gives two values for {}: {} and {}",
                            p.name,
                            plain(prev),
                            plain(&value)
                        ));
                    }
                    // The earlier, weak one gives way.
                    if let Some(i) = taken.iter().position(|t| t.0 == p.name) {
                        let (_, a, b) = taken.remove(i);
                        used.retain(|&u| u != (a, b));
                    }
                }
            }
            raw.insert(p.name.clone(), value);
            strength.insert(p.name.clone(), f.prob);
            used.push((start, end));
            taken.push((p.name.clone(), start, end));
        }
        // A required parameter no span holds: the word likeliest to be its
        // value, if the tagger gives it some chance and it parses.
        let context = self.meta.labels.context();
        for p in &spec.params {
            // Only a domain's name: any word parses as a device, and a
            // number looks like a port (no other type is loose enough to
            // need it: an address or a DNS name is one typed word).
            let domain = matches!(p.kind, ParamKind::NewDomain | ParamKind::ExistingDomain);
            if !domain || !p.required || p.default.is_some() || raw.contains_key(&p.name) {
                continue;
            }
            let Some(role) = roles.iter().position(|r| r == &p.name) else {
                continue;
            };
            // A word the tagger reads as context more than as this value
            // (the purpose in "a network for visitors") is not pointed at.
            let best = r
                .outside
                .iter()
                .filter(|(s, e, _)| !used.iter().any(|&(a, b)| a < *e && b > *s))
                .filter_map(|(s, e, probs)| {
                    let v = *probs.get(role + 1)?;
                    let c = context.and_then(|c| probs.get(c + 1)).copied();
                    c.is_none_or(|c| v >= c).then_some((*s, *e, v))
                })
                .fold(None, |a: Option<(usize, usize, f32)>, x| match a {
                    Some(b) if b.2 >= x.2 => Some(b),
                    _ => Some(x),
                });
            let Some((s, e, prob)) = best else { continue };
            if prob < o.min_pointer {
                continue;
            }
            let (start, end) = whole_word(text, s, e);
            let word = clean(&text[start..end]);
            if word.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Ok(value) = self.typed(p, word, ctx) {
                raw.insert(p.name.clone(), value);
                used.push((start, end));
            }
        }
        // A duration the tagger did not mark: the one duration the request
        // writes, found with the language file's units and number words.
        if spec.risk != Risk::Read {
            if let Some(p) = spec
                .params
                .iter()
                .find(|p| p.unit.is_some() && !raw.contains_key(&p.name))
            {
                let mut found = self.durations(text, &used);
                if found.len() > 1 {
                    return Err(format!(
                        "the request gives {} durations; {} takes one",
                        found.len(),
                        p.name
                    ));
                }
                if let Some((start, end)) = found.pop() {
                    let value = self.parse(p, clean(&text[start..end]), ctx)?;
                    raw.insert(p.name.clone(), value);
                    used.push((start, end));
                }
            }
        }
        // A value the plan would not use, of the same type as one it holds
        // ("from 10.0.0.12 to 10.0.0.14" read with one of them): both are
        // offered, and nothing is planned (a clarifying question). Of any
        // other kind it refuses.
        if spec.risk != Risk::Read {
            for (vs, ve, v) in unused_values(text, &used) {
                // Of the held parameters the value parses as, the one the
                // tagger gives the word the most probability of (an alias's
                // name or its target).
                let held = spec
                    .params
                    .iter()
                    .filter_map(|p| {
                        raw.get(&p.name)?;
                        let value = self.typed(p, &v, ctx).ok()?;
                        // Not one that would make the plan impossible (a
                        // domain reached from itself): no such question.
                        let mut with = raw.clone();
                        with.insert(p.name.clone(), value.clone());
                        if valid_but_related(spec, &with, ctx) {
                            return None;
                        }
                        let odds = roles.iter().position(|x| x == &p.name).map_or(0.0, |i| {
                            r.outside
                                .iter()
                                .filter(|&&(s, e, _)| s < ve && e > vs)
                                .map(|(_, _, probs)| probs.get(i + 1).copied().unwrap_or(0.0))
                                .sum::<f32>()
                        });
                        Some((odds, p.name.clone(), value))
                    })
                    .fold(None, |best: Option<(f32, String, Value)>, x| match best {
                        Some(b) if b.0 >= x.0 => Some(b),
                        _ => Some(x),
                    })
                    .map(|(_, name, value)| (name, value));
                match held {
                    Some((name, value)) if instead.is_none() && unsure.is_none() => {
                        instead = Some((
                            format!("The request also mentions {v}: which {name} did you mean?"),
                            name,
                            value,
                            false,
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "the request mentions {v}, which this plan ({}) would not use",
                            spec.id
                        ))
                    }
                }
            }
            if let Some(v) = self.unused_mention(text, ctx, spec, &used, r) {
                return Err(format!(
                    "the request mentions {v}, which this plan ({}) would not use",
                    spec.id
                ));
            }
            for p in &spec.params {
                if p.kind != ParamKind::ExistingDomain || !spec.language.refuse_protected {
                    continue;
                }
                if let Some(d) = raw.get(&p.name).and_then(Value::as_str) {
                    if ctx.protected.iter().any(|x| x.as_str() == d) {
                        return Err(format!(
                            "{d} is the protected admin domain: it cannot be deleted or cut off"
                        ));
                    }
                }
            }
        }
        // Two values tagged for one parameter where one of them cannot
        // stand beside the others (a domain reached from itself: "I don't
        // want the guests on the printers, remove guest's access to
        // printers" read with `from` twice): the other one is the reading,
        // no question. A word no role was tagged on never becomes a value
        // that way: beside an impossible reading it refuses.
        if let Some((question, name, value, tagged)) = instead {
            let mut alt = raw.clone();
            alt.insert(name, value);
            let only_relation =
                |r: &BTreeMap<String, Value>| tagged && valid_but_related(spec, r, ctx);
            let (params, other) = (spec.validate(&raw, ctx), spec.validate(&alt, ctx));
            return match (params, other) {
                (Ok(params), Ok(other)) => Ok(Filled {
                    params,
                    swapped: Some(other),
                    ask: Some(question),
                }),
                (Err(_), Ok(params)) if only_relation(&raw) => Ok(Filled {
                    params,
                    swapped: None,
                    ask: None,
                }),
                (Ok(params), Err(_)) if only_relation(&alt) => Ok(Filled {
                    params,
                    swapped: None,
                    ask: None,
                }),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            };
        }
        let params = spec.validate(&raw, ctx).map_err(|e| e.to_string())?;
        let swapped = match unsure {
            Some((a, b)) => {
                let mut alt = raw.clone();
                let (va, vb) = (alt.remove(&a), alt.remove(&b));
                if let Some(v) = vb {
                    alt.insert(a, v);
                }
                if let Some(v) = va {
                    alt.insert(b, v);
                }
                Some(spec.validate(&alt, ctx).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(Filled {
            params,
            swapped,
            ask: None,
        })
    }

    /// The span `start..end` grown over the words before and after it
    /// while the language file still reads the whole as one duration
    /// ("10" → "10 weeks", "fortnight" → "a fortnight", "a year" → "a
    /// year and a month"); never ending on a filler word.
    fn whole_duration(&self, text: &str, start: usize, end: usize) -> (usize, usize) {
        let lex = &self.meta.lexicon;
        let words = word_spans(text);
        let reads = |a: usize, b: usize| {
            let t = clean(&text[a..b]);
            let last = Lexicon::words(t).pop().unwrap_or_default();
            !lex.numbers.fillers.contains(&last) && lex.parse_days(t).is_some()
        };
        let (mut s, mut e) = (start, end);
        loop {
            let after: Vec<usize> = words
                .iter()
                .filter(|w| w.0 >= e)
                .map(|w| w.1)
                .take(3)
                .collect();
            match after.iter().rev().find(|&&b| reads(s, b)) {
                Some(&b) => e = b,
                None => break,
            }
        }
        loop {
            let before: Vec<usize> = words
                .iter()
                .rev()
                .filter(|w| w.1 <= s)
                .map(|w| w.0)
                .take(2)
                .collect();
            match before.iter().rev().find(|&&a| reads(a, e)) {
                Some(&a) => s = a,
                None => break,
            }
        }
        (s, e)
    }

    /// Every duration the request writes outside `used`: a unit word (or
    /// digits glued to one, "30d") with the number words before it.
    fn durations(&self, text: &str, used: &[(usize, usize)]) -> Vec<(usize, usize)> {
        let lex = &self.meta.lexicon;
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (a, b) in word_spans(text) {
            if used.iter().any(|&(s, e)| s < b && e > a)
                || out.iter().any(|&(s, e)| s <= a && b <= e)
            {
                continue;
            }
            let w = clean(&text[a..b]).to_lowercase();
            let unit = lex.days.contains_key(&w) && w.len() >= 3;
            let glued = w.chars().next().is_some_and(|c| c.is_ascii_digit())
                && w.chars().any(|c| c.is_ascii_alphabetic())
                && lex.parse_days(&w).is_some();
            if unit || glued {
                let (s, e) = self.whole_duration(text, a, b);
                if !used.iter().any(|&(x, y)| x < e && y > s) {
                    out.push((s, e));
                }
            }
        }
        out
    }

    /// A span read as `p`'s value; an address, a network or a DNS name
    /// also checked as its type.
    fn typed(
        &self,
        p: &ParamSpec,
        span: &str,
        ctx: &Context,
    ) -> std::result::Result<Value, String> {
        let v = self.parse(p, span, ctx)?;
        if typed_word(&p.kind) {
            p.validate(&v, ctx).map_err(|e| e.to_string())?;
        }
        Ok(v)
    }

    /// Of the words in `start..end`, the only one that parses as `p`'s
    /// type (an address, a network, a DNS name); None unless exactly one.
    fn typed_word_in(
        &self,
        p: &ParamSpec,
        text: &str,
        start: usize,
        end: usize,
        ctx: &Context,
    ) -> Option<(usize, usize)> {
        let words: Vec<(usize, usize)> = word_spans(&text[start..end])
            .into_iter()
            .map(|(a, b)| (start + a, start + b))
            .collect();
        let parses = |a: usize, b: usize| {
            let w = clean(&text[a..b]);
            !w.is_empty() && self.typed(p, w, ctx).is_ok()
        };
        // Each word that parses whole; of one that does not, the run of
        // value characters in it that does ("nas.lan" in "nas.lan's").
        let ok: Vec<(usize, usize)> = words
            .iter()
            .filter_map(|&(a, b)| {
                if parses(a, b) {
                    return Some((a, b));
                }
                value_runs(text, a, b).find(|&(x, y)| parses(x, y))
            })
            .collect();
        match ok[..] {
            [] => None,
            [one] => Some(one),
            // Of several, the one written as a value ("nas.lan",
            // "10.0.0.5") is taken, beside bare words that also parse
            // ("IPv6"); two such, none.
            _ => {
                let mut valued = ok
                    .iter()
                    .filter(|&&(a, b)| looks_like_value(clean(&text[a..b])));
                let one = *valued.next()?;
                valued.next().is_none().then_some(one)
            }
        }
    }

    /// Two parameters of the same type (from and to, name and target) whose
    /// roles are not sure: the model's own odds of the other way round are
    /// not small enough, or reading the request again with the two values
    /// traded (their placeholders, for existing domains; the words
    /// themselves otherwise) does not keep each position's role. Returns
    /// the pair when so.
    fn unsure_pair(
        &self,
        text: &str,
        ctx: &Context,
        spec: &PlaybookSpec,
        found: &[Found],
        reading: &Reading,
    ) -> Option<(String, String)> {
        let roles = &self.meta.labels.roles;
        for (i, p) in spec.params.iter().enumerate() {
            for q in &spec.params[i + 1..] {
                if p.kind != q.kind {
                    continue;
                }
                let span = |name: &str| {
                    let r = roles.iter().position(|x| x == name)?;
                    let mut it = found.iter().filter(|f| f.role == r);
                    let f = it.next()?;
                    it.next().is_none().then_some(f)
                };
                let (Some(a), Some(b)) = (span(&p.name), span(&q.name)) else {
                    continue;
                };
                let pr = |f: &Found, r: usize| f.roles.get(r).copied().unwrap_or(0.0);
                let keep = pr(a, a.role) * pr(b, b.role);
                let other = pr(a, b.role) * pr(b, a.role);
                let odds = self.options.max_swap_odds;
                // Either value torn between the two roles is enough: a
                // sure second value does not make the first one sure.
                let torn =
                    |f: &Found, other: usize| pr(f, other) > self.options.max_torn * pr(f, f.role);
                if other > odds * keep
                    || torn(a, b.role)
                    || torn(b, a.role)
                    || !self.roles_follow_positions(text, ctx, a, b, reading)
                {
                    return Some((p.name.clone(), q.name.clone()));
                }
            }
        }
        None
    }

    fn roles_follow_positions(
        &self,
        text: &str,
        ctx: &Context,
        a: &Found,
        b: &Found,
        reading: &Reading,
    ) -> bool {
        let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
        if first.end > second.start {
            return false;
        }
        let (t1, t2) = (
            &text[first.start..first.end],
            &text[second.start..second.end],
        );
        let domain = |t: &str| {
            let key = squash(t);
            ctx.domains
                .iter()
                .map(|d| d.as_str())
                .find(|d| squash(d) == key)
        };
        // The traded text, the domains whose placeholders trade, and where
        // the two values stand in it.
        let (read, swap, p1, p2) = match (domain(t1), domain(t2)) {
            // Both are masked: trade their placeholders, same text.
            (Some(d1), Some(d2)) if d1 != d2 => (
                text.to_string(),
                Some((d1.to_string(), d2.to_string())),
                (first.start, first.end),
                (second.start, second.end),
            ),
            _ => {
                let swapped = format!(
                    "{}{t2}{}{t1}{}",
                    &text[..first.start],
                    &text[first.end..second.start],
                    &text[second.end..]
                );
                let p1 = (first.start, first.start + t2.len());
                let shift = t2.len() as isize - t1.len() as isize;
                let s2 = (second.start as isize + shift) as usize;
                let p2 = (s2, s2 + t1.len());
                (swapped, None, p1, p2)
            }
        };
        let Some(all) = self.reread(&read, ctx, swap, &reading.rereads) else {
            return false;
        };
        let Some(r2) = all.iter().find(|r| r.member == reading.member) else {
            return false;
        };
        // Each position must still favour its own role over the other one
        // clearly, the two readings taken together: the other role's mean
        // probability below `max_reread_odds` of its own's, each the mean of
        // the first reading's (the value's) and the re-read's (from the
        // tagger's probabilities at that position). A position the re-read
        // flips fails; a word it now tags less surely (below `min_tag`)
        // still says which way round it reads; a position it reads as
        // neither says nothing, which fails.
        let odds = self.options.max_reread_odds;
        let keeps = |(s, e): (usize, usize), value: &Found, own: usize, other: usize| {
            let pieces: Vec<&Piece> = r2
                .outside
                .iter()
                .filter(|(ps, pe, _)| *ps >= s && *pe <= e)
                .filter(|(ps, pe, _)| read[*ps..*pe].chars().any(char::is_alphanumeric))
                .collect();
            let mean = |r: usize| {
                pieces
                    .iter()
                    .map(|(_, _, p)| p.get(1 + r).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    / pieces.len().max(1) as f32
            };
            let first = |r: usize| value.roles.get(r).copied().unwrap_or(0.0);
            let both = |r: usize| (first(r) + mean(r)) / 2.0;
            !pieces.is_empty() && both(other) < odds * both(own)
        };
        keeps(p1, first, first.role, second.role) && keeps(p2, second, second.role, first.role)
    }

    /// Every member's reading of `text` with the placeholders of `swap`
    /// traded, read once for all members: from `cache` when a member read
    /// it before.
    fn reread(
        &self,
        text: &str,
        ctx: &Context,
        swap: Option<(String, String)>,
        cache: &Rereads,
    ) -> Option<Rc<Vec<Reading>>> {
        let key = (text.to_string(), swap);
        if let Some((_, r)) = cache.0.borrow().iter().find(|(k, _)| *k == key) {
            return Some(r.clone());
        }
        let pair = key.1.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
        let all = Rc::new(self.read(text, ctx, pair, &mut Stats::default()).ok()?);
        cache.0.borrow_mut().push((key, all.clone()));
        Some(all)
    }

    /// A word outside the used spans that the plan's parameters could take:
    /// an existing domain (for a playbook with domain parameters), a
    /// duration (for one counted in days), or a number the model is not
    /// sure is only context (for any change: "configure port forwarding
    /// for 443 to 192.168.1.20" is not a reservation that drops the 443).
    fn unused_mention(
        &self,
        text: &str,
        ctx: &Context,
        spec: &PlaybookSpec,
        used: &[(usize, usize)],
        r: &Reading,
    ) -> Option<String> {
        let lex = &self.meta.lexicon;
        let takes = |f: &dyn Fn(&ParamKind) -> bool| spec.params.iter().any(|p| f(&p.kind));
        let domains = takes(&|k| matches!(k, ParamKind::ExistingDomain | ParamKind::NewDomain));
        let days = spec.params.iter().any(|p| p.unit.is_some());
        let covered = |a: usize, b: usize| used.iter().any(|&(s, e)| s < b && e > a);
        let context = |a: usize, b: usize| self.only_context(r, a, b);
        let mut words: Vec<(usize, usize)> = Vec::new();
        let mut pos = 0;
        for w in text.split_whitespace() {
            let s = text[pos..].find(w).map_or(pos, |i| pos + i);
            pos = s + w.len();
            let c = clean(w);
            if c.is_empty() {
                continue;
            }
            let lead = w.find(c).unwrap_or(0);
            words.push((s + lead, s + lead + c.len()));
        }
        for (i, &(a, b)) in words.iter().enumerate() {
            if covered(a, b) {
                continue;
            }
            let w = &text[a..b];
            // Punctuation alone ("->" between two domains) names nothing.
            if !w.chars().any(char::is_alphanumeric) {
                continue;
            }
            let lower = w.to_lowercase();
            let two = words
                .get(i + 1)
                .map(|&(_, e)| squash(&text[a..e]))
                .unwrap_or_default();
            if domains
                && ctx.domains.iter().any(|d| {
                    squash(d.as_str()) == squash(w) || (!two.is_empty() && d.as_str() == two)
                })
            {
                return Some(w.to_string());
            }
            let unit = lex.days.contains_key(&lower) && lower.len() >= 3;
            let glued = lower.chars().next().is_some_and(|c| c.is_ascii_digit())
                && lower.chars().any(|c| c.is_ascii_alphabetic())
                && lex.parse_days(&lower).is_some();
            if days && (unit || glued) {
                return Some(w.to_string());
            }
            if w.chars().all(|c| c.is_ascii_digit()) && !context(a, b) {
                return Some(w.to_string());
            }
        }
        None
    }

    /// True when the model gives every piece of `a..b` at least
    /// `min_context` probability of being no value of the plan: outside
    /// every value or only context.
    fn only_context(&self, r: &Reading, a: usize, b: usize) -> bool {
        only_context(
            &r.outside,
            self.meta.labels.context(),
            self.options.min_context,
            (a, b),
        )
    }

    fn parse(
        &self,
        p: &ParamSpec,
        span: &str,
        ctx: &Context,
    ) -> std::result::Result<Value, String> {
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
                        p.unit
                            .as_deref()
                            .map_or("a number".to_string(), |u| format!("a number of {u}")),
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

/// True when every value of `raw` is valid alone and only a rule between
/// values ([`PlaybookSpec::check_relations`]) fails.
fn valid_but_related(spec: &PlaybookSpec, raw: &BTreeMap<String, Value>, ctx: &Context) -> bool {
    let mut values = BTreeMap::new();
    for (k, v) in raw {
        let Some(p) = spec.params.iter().find(|p| &p.name == k) else {
            return false;
        };
        match p.validate(v, ctx) {
            Ok(v) => values.insert(k.clone(), v),
            Err(_) => return false,
        };
    }
    spec.check_relations(&values).is_err()
}

/// True when every piece overlapping `a..b` is outside every value or
/// tagged as the `context` role with at least `min` probability together
/// (pieces hold: outside, then each role's probability).
fn only_context(
    pieces: &[Piece],
    context: Option<usize>,
    min: f32,
    (a, b): (usize, usize),
) -> bool {
    pieces
        .iter()
        .filter(|&&(s, e, _)| s < b && e > a)
        .all(|(_, _, p)| {
            let c = context.and_then(|i| p.get(i + 1)).copied().unwrap_or(0.0);
            p.first().copied().unwrap_or(0.0) + c >= min
        })
}

/// Where a request divides into parts, as byte ranges without the white
/// space around them: after `,` `;` `.` `!` `?` or `:` followed by white
/// space (a value such as `fd00::1` or a name ending a sentence has none
/// after its dots). Parts with no letter or digit are left out.
fn parts(text: &str) -> Vec<(usize, usize)> {
    let mut cuts = vec![0];
    let mut prev = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && matches!(prev, Some(',' | ';' | '.' | '!' | '?' | ':')) {
            cuts.push(i);
        }
        prev = Some(c);
    }
    cuts.push(text.len());
    cuts.windows(2)
        .filter_map(|w| {
            let part = &text[w[0]..w[1]];
            let trimmed = part.trim();
            let start = w[0] + (part.len() - part.trim_start().len());
            trimmed
                .chars()
                .any(char::is_alphanumeric)
                .then_some((start, start + trimmed.len()))
        })
        .collect()
}

/// Adds a plan to a clarifying question's options unless the same plan
/// (playbook and parameters) is already offered.
fn offer(options: &mut Vec<Proposal>, p: Proposal) {
    if !options
        .iter()
        .any(|o| o.playbook == p.playbook && o.params == p.params)
    {
        options.push(p);
    }
}

/// The committee's outcome ([`agree`]), but for three cases of a plan that
/// more than half the members make:
/// - it stands when every other member read the same playbook and stopped
///   only over its values: refused (a word it tagged for a role the
///   playbook does not take, a value that does not parse) or asked which
///   of two values was meant, offering the plan among them
///   (`values_majority`);
/// - a plan that only reads (`read(playbook)`: `read_majority` and a read
///   playbook) stands when every other member asked a question offering
///   it: nothing changes whichever was meant (and its majority counts
///   the members that offered it alone, as below);
/// - it stands when every other member, not sure enough of the playbook,
///   asked a question whose only option is that plan ([`Said::lone`],
///   `lone_majority`).
///
/// Any other disagreement, a question or a refusal over the playbook, its
/// polarity, its roles ("which way round?"), its rivals or the protected
/// domain, and every refusal of a read, is [`agree`]'s.
fn settle(
    each: Vec<Said>,
    propose: impl Fn(String, BTreeMap<String, Value>) -> Option<Proposal>,
    values_majority: bool,
    read: impl Fn(&str) -> bool,
) -> Interpretation {
    let plan = |s: &Said| match &s.said {
        Interpretation::Plan {
            playbook, params, ..
        } => Some((playbook.clone(), params.clone())),
        _ => None,
    };
    if let Some((playbook, params)) = each.iter().find_map(plan) {
        let same = each
            .iter()
            .filter(|s| plan(s).is_some_and(|(p, q)| p == playbook && q == params))
            .count();
        let reads = read(&playbook);
        let alone = |s: &Said| {
            s.lone
                .as_ref()
                .is_some_and(|(p, q)| *p == playbook && *q == params)
        };
        let aside = each
            .iter()
            .filter(|s| {
                let over = values_majority && s.over_values.as_ref() == Some(&playbook);
                match &s.said {
                    // A question counts only when the plan is one it
                    // offers.
                    Interpretation::Clarify { options, .. } => {
                        (over || reads || alone(s))
                            && options
                                .iter()
                                .any(|o| o.playbook == playbook && o.params == params)
                    }
                    Interpretation::Refusal { .. } => over,
                    Interpretation::Plan { .. } => false,
                }
            })
            .count();
        // A read's majority counts those offering it alone too.
        let backing = same
            + if reads {
                each.iter().filter(|s| alone(s)).count()
            } else {
                0
            };
        if 2 * backing > each.len() && same + aside == each.len() {
            // Those standing aside set apart, the plans left agree.
            let plans = each.into_iter().filter(|s| plan(s).is_some());
            return agree(plans.map(|s| s.said).collect(), propose);
        }
    }
    agree(each.into_iter().map(|s| s.said).collect(), propose)
}

/// The committee's outcome from what each member made of the request: a
/// plan only when every member made that same plan (playbook and
/// parameters); otherwise the first refusal, when a member refused; and
/// otherwise a question offering the plans the members proposed.
fn agree(
    mut each: Vec<Interpretation>,
    propose: impl Fn(String, BTreeMap<String, Value>) -> Option<Proposal>,
) -> Interpretation {
    if each.len() <= 1 {
        return each.pop().unwrap_or(Interpretation::Refusal {
            reason: "the interpreter has no trained heads".into(),
            candidates: vec![],
        });
    }
    let plan = |i: &Interpretation| match i {
        Interpretation::Plan {
            playbook, params, ..
        } => Some((playbook.clone(), params.clone())),
        _ => None,
    };
    let first = plan(&each[0]);
    if first.is_some() && each.iter().all(|i| plan(i) == first) {
        let low = each
            .iter()
            .filter_map(|i| match i {
                Interpretation::Plan { confidence, .. } => Some(*confidence),
                _ => None,
            })
            .fold(1.0f32, f32::min);
        let mut out = each.swap_remove(0);
        if let Interpretation::Plan { confidence, .. } = &mut out {
            *confidence = low;
        }
        return out;
    }
    if let Some(k) = each
        .iter()
        .position(|i| matches!(i, Interpretation::Refusal { .. }))
    {
        return each.swap_remove(k);
    }
    let mut options: Vec<Proposal> = Vec::new();
    // Each member's question, with whether it offered one plan only.
    let mut questions: Vec<(String, bool)> = Vec::new();
    let mut candidates = Vec::new();
    for i in each {
        let offered = match i {
            Interpretation::Plan {
                playbook,
                params,
                candidates: c,
                ..
            } => {
                if candidates.is_empty() {
                    candidates = c;
                }
                propose(playbook, params).into_iter().collect()
            }
            Interpretation::Clarify {
                question: q,
                options: o,
                candidates: c,
            } => {
                questions.push((q, o.len() == 1));
                if candidates.is_empty() {
                    candidates = c;
                }
                o
            }
            Interpretation::Refusal { .. } => vec![],
        };
        for p in offered {
            offer(&mut options, p);
        }
    }
    options.truncate(3);
    // The first member's question worded for as many plans as are offered.
    let lone = options.len() == 1;
    let question = questions.into_iter().find(|&(_, one)| one == lone);
    Interpretation::Clarify {
        question: question
            .map(|(q, _)| q)
            .unwrap_or_else(|| match options.len() {
                1 => which_of(&options),
                _ => "The request can be read more than one way: which did you mean?".into(),
            }),
        options,
        candidates,
    }
}

/// The question offering plans when the interpreter is not sure enough:
/// worded for one plan or for several.
fn which_of(options: &[Proposal]) -> String {
    match options {
        [_] => "Is this what you meant?".into(),
        _ => "Which of these did you mean?".into(),
    }
}

/// The spans with their roles for one playbook. When two spans took the
/// same role and another parameter of the same type has none ("grant guest
/// access to work" read with both as `to`), the pair is assigned the way
/// the model's own role probabilities make likeliest, provided the moved
/// span gives its new role at least a fifth of its probability; otherwise
/// the spans stay as they are (and the duplicate refuses).
fn assign_roles(spec: &PlaybookSpec, roles: &[String], found: &[Found]) -> Vec<Found> {
    let mut out: Vec<Found> = found.to_vec();
    let role_of = |name: &str| roles.iter().position(|r| r == name);
    for p in &spec.params {
        let Some(a) = role_of(&p.name) else { continue };
        let with_a: Vec<usize> = (0..out.len()).filter(|&i| out[i].role == a).collect();
        if with_a.len() != 2 {
            continue;
        }
        let partner = spec.params.iter().find(|q| {
            q.name != p.name
                && q.kind == p.kind
                && role_of(&q.name).is_some_and(|b| out.iter().all(|f| f.role != b))
        });
        let Some(b) = partner.and_then(|q| role_of(&q.name)) else {
            continue;
        };
        let (i, j) = (with_a[0], with_a[1]);
        let pr = |k: usize, role: usize| out[k].roles.get(role).copied().unwrap_or(0.0);
        // i keeps a and j takes b, or the other way round.
        let keep = pr(i, a) * pr(j, b);
        let swap = pr(i, b) * pr(j, a);
        let (moved, score) = if keep >= swap {
            (j, pr(j, b))
        } else {
            (i, pr(i, b))
        };
        if score >= 0.2 {
            out[moved].role = b;
        }
    }
    out
}

/// One word piece group: tokens glued into one word ("io" + "##t").
struct Unit {
    start: usize,
    end: usize,
    /// Mean tag probabilities over its tokens.
    probs: Vec<f32>,
    /// Per role (index 0 = outside), its least probability over the tokens.
    least: Vec<f32>,
}

impl Unit {
    /// Probability of each role (begin + inside), index 0 = outside.
    fn roles(&self) -> Vec<f32> {
        role_sums(&self.probs)
    }
    /// The likeliest of outside (0) or role r (r + 1), and its probability.
    fn label(&self) -> (usize, f32) {
        self.roles()
            .into_iter()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, v)| if v > a.1 { (i, v) } else { a })
    }
    fn begins(&self, role: usize) -> bool {
        self.probs[1 + 2 * role] >= self.probs[2 + 2 * role]
    }
}

/// Per role (index 0 = outside) the sum of its begin and inside
/// probabilities, from a token's BIO probabilities.
fn role_sums(probs: &[f32]) -> Vec<f32> {
    let n = probs.len().saturating_sub(1) / 2;
    std::iter::once(probs.first().copied().unwrap_or(0.0))
        .chain((0..n).map(|r| probs[1 + 2 * r] + probs[2 + 2 * r]))
        .collect()
}

/// True when a word is one typed value (an address, a network, a DNS name):
/// its pieces then take one role together.
fn atomic(word: &str) -> bool {
    Address::parse(word).is_ok()
        || Cidr::parse_v4_field("x", word).is_ok()
        || (word.contains('.') && DnsName::parse(word).is_ok())
}

/// The value spans from the per-token tag probabilities. Word pieces of one
/// word share a tag; a whitespace-delimited word that is one typed value
/// takes the role its pieces vote for; other words may hold several values
/// (`iot->lan`, `tcp/8883`); a word tagged as inside a role continues the
/// value of the word before it ("living room").
fn decode_spans(
    text: &str,
    offsets: &[(usize, usize)],
    special: &[u32],
    tokens: &[String],
    tags: &[Vec<f32>],
) -> (Vec<Found>, Vec<Piece>) {
    let mut units: Vec<(Unit, usize)> = Vec::new();
    let mut counts: Vec<f32> = Vec::new();
    for (i, p) in tags.iter().enumerate() {
        let (s, e) = offsets[i];
        if special.get(i) == Some(&1) || e <= s || e > text.len() {
            continue;
        }
        let cont = tokens.get(i).is_some_and(|t| t.starts_with("##"));
        match units.last_mut() {
            Some((u, _)) if cont && u.end == s => {
                u.end = e;
                for (a, b) in u.probs.iter_mut().zip(p) {
                    *a += b;
                }
                for (a, b) in u.least.iter_mut().zip(role_sums(p)) {
                    *a = a.min(b);
                }
                if let Some(c) = counts.last_mut() {
                    *c += 1.0;
                }
            }
            _ => {
                units.push((
                    Unit {
                        start: s,
                        end: e,
                        probs: p.clone(),
                        least: role_sums(p),
                    },
                    0,
                ));
                counts.push(1.0);
            }
        }
    }
    for ((u, _), c) in units.iter_mut().zip(&counts) {
        for v in u.probs.iter_mut() {
            *v /= c;
        }
    }
    // Whitespace-delimited words, by byte range.
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, text.len()));
    }
    for (u, w) in units.iter_mut() {
        *w = words
            .iter()
            .position(|&(a, b)| u.start >= a && u.start < b)
            .unwrap_or(usize::MAX);
    }
    // A value never runs on over the end of a clause ("cams; admin" is two
    // words of two clauses).
    let clause_end = |w: usize| {
        words
            .get(w)
            .is_some_and(|&(a, b)| text[a..b].ends_with([',', ';', '.', '!', '?', ':']))
    };
    let mut found: Vec<(Found, usize)> = Vec::new();
    for (wi, &(ws, we)) in words.iter().enumerate() {
        let in_word: Vec<&Unit> = units
            .iter()
            .filter(|(_, w)| *w == wi)
            .map(|(u, _)| u)
            .collect();
        if in_word.is_empty() {
            continue;
        }
        let raw = &text[ws..we];
        let cleaned = clean(raw);
        let lead = raw.find(cleaned).unwrap_or(0);
        let (cs, ce) = (ws + lead, ws + lead + cleaned.len());
        let mut groups: Vec<(usize, usize, usize, f32, bool)> = Vec::new();
        if !cleaned.is_empty() && atomic(cleaned) {
            // Pieces with letters or digits vote; dots and colons do not.
            let inside: Vec<&&Unit> = in_word
                .iter()
                .filter(|u| u.start >= cs && u.end <= ce)
                .filter(|u| text[u.start..u.end].chars().any(char::is_alphanumeric))
                .collect();
            let mut score = vec![0f32; in_word[0].roles().len()];
            for u in &inside {
                for (a, b) in score.iter_mut().zip(u.roles()) {
                    *a += b;
                }
            }
            let (best, v) =
                score
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
            if best > 0 {
                let n = inside.len().max(1) as f32;
                let begins = inside.first().is_none_or(|u| u.begins(best - 1));
                let least = inside
                    .iter()
                    .map(|u| u.least.get(best).copied().unwrap_or(0.0))
                    .fold(v / n, f32::min);
                groups.push((best - 1, cs, ce, least, begins));
            }
        } else {
            for u in &in_word {
                let (label, _) = u.label();
                if label == 0 {
                    continue;
                }
                // A word is a value as surely as its least sure piece.
                let p = u.least[label];
                let role = label - 1;
                match groups.last_mut() {
                    Some(g) if g.0 == role => {
                        g.2 = u.end;
                        g.3 = g.3.min(p);
                    }
                    _ => groups.push((role, u.start, u.end, p, u.begins(role))),
                }
            }
        }
        for (role, s, e, p, begins) in groups {
            match found.last_mut() {
                Some((f, w)) if !begins && f.role == role && *w + 1 == wi && !clause_end(*w) => {
                    f.end = e;
                    f.prob = f.prob.min(p);
                    *w = wi;
                }
                _ => found.push((
                    Found {
                        role,
                        start: s,
                        end: e,
                        prob: p,
                        roles: Vec::new(),
                    },
                    wi,
                )),
            }
        }
    }
    let outside = units
        .iter()
        .map(|(u, _)| (u.start, u.end, u.roles()))
        .collect();
    let mut found: Vec<Found> = found.into_iter().map(|(f, _)| f).collect();
    for f in &mut found {
        let inside: Vec<&Unit> = units
            .iter()
            .map(|(u, _)| u)
            .filter(|u| u.start >= f.start && u.end <= f.end)
            .filter(|u| text[u.start..u.end].chars().any(char::is_alphanumeric))
            .collect();
        let n = inside.len().max(1) as f32;
        let mut roles = vec![0f32; tags.first().map_or(1, Vec::len).saturating_sub(1) / 2];
        for u in inside {
            for (r, v) in u.roles().into_iter().skip(1).enumerate() {
                roles[r] += v / n;
            }
        }
        f.roles = roles;
    }
    (found, outside)
}

/// A request with the existing domains it names replaced by the lexicon's
/// placeholders, the first-named domain by the first placeholder, and so on.
struct Masked {
    text: String,
    /// Per placeholder: its byte range in `text`, then the mention's in the
    /// request.
    parts: Vec<(usize, usize, usize, usize)>,
}

impl Masked {
    /// The request's byte range for a range of the masked text.
    fn original(&self, s: usize, e: usize) -> (usize, usize) {
        (self.at(s, false), self.at(e, true))
    }

    fn at(&self, p: usize, end: bool) -> usize {
        let mut delta: isize = 0;
        for &(ms, me, os, oe) in &self.parts {
            if !end && p >= ms && p < me {
                return os;
            }
            if end && p > ms && p <= me {
                return oe;
            }
            if me > p {
                break;
            }
            delta += (oe - os) as isize - (me - ms) as isize;
        }
        (p as isize + delta) as usize
    }
}

/// Masks the mentions of `ctx`'s domains: one to three words, joined by a
/// space or a hyphen, that make a domain's id ("living room" is
/// livingroom), and not part of a dotted name or an address
/// ("printer.lan" names no domain lan). With `swap`, those two domains
/// trade placeholders.
fn mask(text: &str, ctx: &Context, placeholders: &[String], swap: Option<(&str, &str)>) -> Masked {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, text.len()));
    }
    let joins = |c: Option<char>| matches!(c, Some('.' | ':' | '@' | '_'));
    let glued = |s: usize, e: usize| {
        let mut back = text[..s].chars().rev();
        let mut fwd = text[e..].chars();
        (joins(back.next()) && back.next().is_some_and(char::is_alphanumeric))
            || (joins(fwd.next()) && fwd.next().is_some_and(char::is_alphanumeric))
    };
    let keys: Vec<(String, &str)> = ctx
        .domains
        .iter()
        .map(|d| (squash(d.as_str()), d.as_str()))
        .collect();
    let mut mentions: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let mut hit = None;
        for n in (1..=3).rev() {
            let Some(window) = runs.get(i..i + n) else {
                continue;
            };
            let joined = window
                .windows(2)
                .all(|w| matches!(&text[w[0].1..w[1].0], " " | "-"));
            let (s, e) = (window[0].0, window[n - 1].1);
            if !joined || glued(s, e) {
                continue;
            }
            let key = squash(&text[s..e]);
            if let Some((_, d)) = keys.iter().find(|(k, _)| *k == key) {
                hit = Some((n, (s, e, *d)));
                break;
            }
        }
        match hit {
            Some((n, m)) => {
                mentions.push(m);
                i += n;
            }
            None => i += 1,
        }
    }
    let mut order: Vec<&str> = Vec::new();
    for &(_, _, d) in &mentions {
        if !order.contains(&d) {
            order.push(d);
        }
    }
    if let Some((x, y)) = swap {
        if let (Some(a), Some(b)) = (
            order.iter().position(|d| *d == x),
            order.iter().position(|d| *d == y),
        ) {
            order.swap(a, b);
        }
    }
    let mut out = Masked {
        text: String::with_capacity(text.len()),
        parts: Vec::new(),
    };
    let mut pos = 0;
    for (s, e, d) in mentions {
        let Some(ph) = order
            .iter()
            .position(|x| *x == d)
            .and_then(|k| placeholders.get(k))
        else {
            continue;
        };
        out.text.push_str(&text[pos..s]);
        let ms = out.text.len();
        out.text.push_str(ph);
        out.parts.push((ms, out.text.len(), s, e));
        pos = e;
    }
    out.text.push_str(&text[pos..]);
    out
}

/// Every value written in the request that looks like a parameter (an
/// address, a network, a DNS name) outside every span the plan uses, with
/// the byte range of the word that holds it.
fn unused_values(text: &str, used: &[(usize, usize)]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for word in text.split_whitespace() {
        let start = text[pos..].find(word).map_or(pos, |i| pos + i);
        let end = start + word.len();
        pos = end;
        let w = clean(word);
        if w.is_empty() {
            continue;
        }
        // A value may be written against other characters ("nas.lan's",
        // "10.0.0.5;"): each run of the characters values are made of is
        // tried too.
        let pieces = value_runs(text, start, end).map(|(a, b)| &text[a..b]);
        let Some(v) = std::iter::once(w)
            .chain(pieces)
            .find(|p| looks_like_value(p))
        else {
            continue;
        };
        let covered = used.iter().any(|&(a, b)| a < end && b > start);
        if !covered {
            out.push((start, end, v.to_string()));
        }
    }
    out
}

/// Of two DNS names, one a bare label and the other a name whose first
/// label it is ("printer", "printer.lan", in any case): whether the second,
/// `b`, is the full one. `None` for any other pair.
fn bare_and_full(a: &Value, b: &Value) -> Option<bool> {
    let (a, b) = (a.as_str()?, b.as_str()?);
    let first = |full: &str, bare: &str| {
        !bare.contains('.')
            && full
                .split_once('.')
                .is_some_and(|(head, _)| head.eq_ignore_ascii_case(bare))
    };
    if first(b, a) {
        Some(true)
    } else if first(a, b) {
        Some(false)
    } else {
        None
    }
}

/// The runs of the characters values are made of (letters, digits and
/// `.-:/_`, without a leading or trailing dot) inside `start..end` of
/// `text`, as byte ranges: "nas.lan" and "s" of "nas.lan's".
fn value_runs(text: &str, start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let value_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '/' | '_');
    let word = &text[start..end];
    word.split(move |c: char| !value_char(c))
        .filter_map(move |run| {
            let at = start + (run.as_ptr() as usize - word.as_ptr() as usize);
            let t = run.trim_matches('.');
            let lead = run.len() - run.trim_start_matches('.').len();
            (!t.is_empty()).then_some((at + lead, at + lead + t.len()))
        })
}

/// An address, a MAC address, a network or a DNS name with a top-level
/// label of letters.
fn looks_like_value(w: &str) -> bool {
    !w.is_empty()
        && (Address::parse(w).is_ok()
            || MacAddr::parse(w).is_ok()
            || Cidr::parse_v4_field("x", w).is_ok()
            || (w.contains('.')
                && w.chars().any(|c| c.is_ascii_alphabetic())
                && w.rsplit('.')
                    .next()
                    .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()))
                && DnsName::parse(w).is_ok()))
}

/// The text between the quotes around byte range `start..end`, when the
/// range lies inside a quoted part of the request.
fn quoted_around(text: &str, start: usize, end: usize) -> Option<&str> {
    let pairs = [
        ('"', '"'),
        ('\'', '\''),
        ('“', '”'),
        ('‘', '’'),
        ('«', '»'),
        ('`', '`'),
    ];
    for (open, close) in pairs {
        let Some(o) = text[..start].rfind(open) else {
            continue;
        };
        // An apostrophe inside a word (the owner's, it's) is no quote.
        if open == '\'' && text[..o].chars().last().is_some_and(char::is_alphanumeric) {
            continue;
        }
        let Some(c) = text[end..].find(close).map(|i| end + i) else {
            continue;
        };
        let inner = &text[o + open.len_utf8()..c];
        if !inner.contains(['"', '“', '”']) {
            return Some(inner.trim());
        }
    }
    None
}

/// The byte range `start..end` widened over the letters, digits, '-' and
/// '_' joined to it.
fn whole_word(text: &str, start: usize, end: usize) -> (usize, usize) {
    extend(text, start, end, |c| {
        c.is_alphanumeric() || c == '-' || c == '_'
    })
}

/// The whole whitespace-free token around byte range `start..end` that a
/// device name or MAC address is written as (`aa:bb:cc:00:11:22`,
/// `nas.lan.home.arpa`): a device is that token, not a piece of it.
fn whole_token(text: &str, start: usize, end: usize) -> (usize, usize) {
    extend(text, start, end, |c| {
        c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
    })
}

fn extend(text: &str, start: usize, end: usize, joined: impl Fn(char) -> bool) -> (usize, usize) {
    let s = text[..start]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| joined(c))
        .last()
        .map_or(start, |(i, _)| i);
    let e = text[end..]
        .char_indices()
        .take_while(|&(_, c)| joined(c))
        .last()
        .map_or(end, |(i, c)| end + i + c.len_utf8());
    (s, e)
}

/// The byte ranges of the request's whitespace-separated words.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for w in text.split_whitespace() {
        let s = text[pos..].find(w).map_or(pos, |i| pos + i);
        pos = s + w.len();
        out.push((s, pos));
    }
    out
}

/// Kinds of value written as one word with no space in it.
fn typed_word(kind: &ParamKind) -> bool {
    matches!(
        kind,
        ParamKind::DnsName
            | ParamKind::IpAddress
            | ParamKind::Ipv4Address
            | ParamKind::Ipv6Address
            | ParamKind::Ipv4Cidr
    )
}

/// A span without the quotes and punctuation around it.
fn clean(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        let t = s
            .trim_matches(|c: char| {
                matches!(
                    c,
                    '"' | '\''
                        | '`'
                        | '('
                        | ')'
                        | '['
                        | ']'
                        | '<'
                        | '>'
                        | ','
                        | ';'
                        | '!'
                        | '?'
                        | '“'
                        | '”'
                        | '‘'
                        | '’'
                )
            })
            .trim_end_matches(['.', ':'])
            .trim();
        if t.len() == s.len() {
            return t;
        }
        s = t;
    }
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

    fn plan(from: &str, to: &str, confidence: f32) -> Interpretation {
        Interpretation::Plan {
            playbook: "net.allow".into(),
            params: [("from", from), ("to", to)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect(),
            confidence,
            candidates: vec![],
        }
    }

    /// A clarifying question offering `net.allow` for each (from, to).
    fn asking(question: &str, pairs: &[(&str, &str)]) -> Interpretation {
        Interpretation::Clarify {
            question: question.into(),
            options: pairs
                .iter()
                .filter_map(|&(f, t)| match plan(f, t, 0.9) {
                    Interpretation::Plan {
                        playbook, params, ..
                    } => offer(playbook, params),
                    _ => None,
                })
                .collect(),
            candidates: vec![],
        }
    }

    fn offer(id: String, params: BTreeMap<String, Value>) -> Option<Proposal> {
        Some(Proposal {
            summary: format!("{id} {}", plain(&Value::from(params.len()))),
            playbook: id,
            params,
        })
    }

    #[test]
    fn a_read_plan_stands_beside_questions_offering_it_only() {
        let show = |confidence| Interpretation::Plan {
            playbook: "net.show".into(),
            params: BTreeMap::new(),
            confidence,
            candidates: vec![],
        };
        let asks = |ids: &[&str]| Interpretation::Clarify {
            question: "Which of these did you mean?".into(),
            options: ids
                .iter()
                .filter_map(|id| offer(id.to_string(), BTreeMap::new()))
                .collect(),
            candidates: vec![],
        };
        let refusal = Interpretation::Refusal {
            reason: "a request for a secret".into(),
            candidates: vec![],
        };
        let read = |id: &str| id == "net.show";
        let outcome = |each: Vec<Interpretation>, read: &dyn Fn(&str) -> bool| {
            let each = each.into_iter().map(Said::from).collect();
            settle(each, offer, true, read)
        };
        // Two members plan the read, the third asks, offering it: the plan.
        let each = vec![
            show(0.9),
            asks(&["dns.list_records", "net.show"]),
            show(0.99),
        ];
        match outcome(each, &read) {
            Interpretation::Plan {
                playbook,
                confidence,
                ..
            } => {
                assert_eq!((playbook.as_str(), confidence), ("net.show", 0.9))
            }
            other => panic!("gave {other:?}"),
        }
        // Not when the question does not offer it, nor against a refusal,
        // nor for one plan of three, nor when the playbook changes state.
        for each in [
            vec![show(0.9), asks(&["dns.list_records"]), show(0.99)],
            vec![show(0.9), refusal.clone(), show(0.99)],
            vec![show(0.9), asks(&["net.show"]), asks(&["net.show"])],
        ] {
            let got = outcome(each, &read);
            assert!(!matches!(got, Interpretation::Plan { .. }), "{got:?}");
        }
        let each = vec![show(0.9), asks(&["net.show"]), show(0.99)];
        let got = outcome(each, &|_| false);
        assert!(!matches!(got, Interpretation::Plan { .. }), "{got:?}");
    }

    #[test]
    fn a_bare_name_gives_way_to_the_full_name_it_begins() {
        let v = |s: &str| Value::from(s);
        assert_eq!(bare_and_full(&v("printer"), &v("printer.lan")), Some(true));
        assert_eq!(bare_and_full(&v("hub.iot.lan"), &v("HUB")), Some(false));
        assert_eq!(bare_and_full(&v("router"), &v("nas.lan")), None);
        assert_eq!(bare_and_full(&v("nas.lan"), &v("nas.home.arpa")), None);
        assert_eq!(bare_and_full(&v("print"), &v("printer.lan")), None);
        assert_eq!(bare_and_full(&v("nas"), &Value::from(7)), None);
    }

    #[test]
    fn value_runs_are_the_values_written_against_other_characters() {
        let text = "at nas.lan's (10.0.0.5); ...";
        let runs =
            |a, b| -> Vec<&str> { value_runs(text, a, b).map(|(s, e)| &text[s..e]).collect() };
        assert_eq!(runs(3, 12), ["nas.lan", "s"]);
        assert_eq!(runs(13, 24), ["10.0.0.5"]);
        assert!(runs(25, 28).is_empty());
    }

    #[test]
    fn a_request_divides_into_parts_at_punctuation_before_a_space() {
        let text = "Removing access isn't what I'm after, I want iot to reach lan.";
        let got: Vec<&str> = parts(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(
            got,
            [
                "Removing access isn't what I'm after,",
                "I want iot to reach lan."
            ]
        );
        // Values keep their dots and colons; punctuation alone is no part.
        let text = "point nas.lan at fd00::40.  ok? ... !";
        let got: Vec<&str> = parts(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(got, ["point nas.lan at fd00::40.", "ok?"]);
        assert_eq!(parts("  "), Vec::<(usize, usize)>::new());
        let text = "allow iot to reach lan,  ";
        assert_eq!(parts(text), [(0, 23)]);
    }

    #[test]
    fn the_committee_plans_only_what_every_member_plans() {
        match agree(
            vec![plan("kids", "printer", 0.9), plan("kids", "printer", 0.8)],
            offer,
        ) {
            Interpretation::Plan { confidence, .. } => assert_eq!(confidence, 0.8),
            other => panic!("two equal plans gave {other:?}"),
        }
        // The other way round: a question offering both, never a plan.
        match agree(
            vec![plan("kids", "printer", 0.9), plan("printer", "kids", 0.9)],
            offer,
        ) {
            Interpretation::Clarify { options, .. } => {
                let ways: Vec<_> = options.iter().map(|o| o.params["from"].clone()).collect();
                assert_eq!(ways, vec![Value::from("kids"), Value::from("printer")]);
            }
            other => panic!("two different plans gave {other:?}"),
        }
        // A member that refuses (it read a negation) wins over a plan.
        let refusal = Interpretation::Refusal {
            reason: "the request says not to do this".into(),
            candidates: vec![],
        };
        match agree(vec![plan("kids", "printer", 0.99), refusal.clone()], offer) {
            Interpretation::Refusal { reason, .. } => assert!(reason.contains("not to do")),
            other => panic!("a refusal and a plan gave {other:?}"),
        }
        // A question and a plan: the question, with the plan among its
        // options, each once.
        let question = Interpretation::Clarify {
            question: "Which way round did you mean?".into(),
            options: vec![offer(
                "net.allow".into(),
                match plan("kids", "printer", 1.0) {
                    Interpretation::Plan { params, .. } => params,
                    _ => unreachable!(),
                },
            )
            .unwrap()],
            candidates: vec![],
        };
        match agree(vec![plan("kids", "printer", 0.9), question], offer) {
            Interpretation::Clarify {
                question, options, ..
            } => {
                assert_eq!(question, "Which way round did you mean?");
                assert_eq!(options.len(), 1);
            }
            other => panic!("a plan and a question gave {other:?}"),
        }
        // One member: its outcome as it is.
        assert_eq!(agree(vec![refusal.clone()], offer), refusal);
    }

    #[test]
    fn a_majority_plan_stands_only_against_refusals_over_its_values() {
        let said = |i: Interpretation, over: Option<&str>| Said {
            said: i,
            over_values: over.map(str::to_string),
            lone: None,
        };
        let refusal = || Interpretation::Refusal {
            reason: "no domain \"port\"".into(),
            candidates: vec![],
        };
        let three = |third: Said, second: Interpretation| {
            vec![
                said(plan("kids", "printer", 0.9), None),
                said(second, None),
                third,
            ]
        };
        let planned = |each: Vec<Said>, on: bool| {
            matches!(
                settle(each, offer, on, |_| false),
                Interpretation::Plan { .. }
            )
        };
        // Two plans alike, the third member refused over the values of
        // the same playbook: the plan, at the lower confidence.
        let each = three(
            said(refusal(), Some("net.allow")),
            plan("kids", "printer", 0.8),
        );
        match settle(each, offer, true, |_| false) {
            Interpretation::Plan { confidence, .. } => assert_eq!(confidence, 0.8),
            other => panic!("gave {other:?}"),
        }
        // Off: every member must plan it.
        let each = three(
            said(refusal(), Some("net.allow")),
            plan("kids", "printer", 0.8),
        );
        assert!(!planned(each, false));
        // Refused over another playbook's values, or over anything but
        // values (the playbook, a negation, the protected domain).
        let each = three(
            said(refusal(), Some("net.revoke")),
            plan("kids", "printer", 0.8),
        );
        assert!(!planned(each, true));
        let each = three(said(refusal(), None), plan("kids", "printer", 0.8));
        assert!(!planned(each, true));
        // The two plans differ: no majority.
        let each = three(
            said(refusal(), Some("net.allow")),
            plan("printer", "kids", 0.8),
        );
        assert!(!planned(each, true));
        // One plan against two refusals over values: no majority.
        let each = vec![
            said(plan("kids", "printer", 0.9), None),
            said(refusal(), Some("net.allow")),
            said(refusal(), Some("net.allow")),
        ];
        assert!(!planned(each, true));
        // A question beside the majority is heard.
        let question = Interpretation::Clarify {
            question: "Which way round did you mean?".into(),
            options: vec![],
            candidates: vec![],
        };
        let each = three(said(question, None), plan("kids", "printer", 0.8));
        assert!(!planned(each, true));
        // A question over the values offering the plan stands aside; one
        // that does not offer it is heard.
        let options = |to: &str| {
            asking(
                "The request gives two values for to: which did you mean?",
                &[("kids", to), ("kids", "office")],
            )
        };
        let each = three(
            said(options("printer"), Some("net.allow")),
            plan("kids", "printer", 0.8),
        );
        assert!(planned(each, true));
        let each = three(
            said(options("guest"), Some("net.allow")),
            plan("kids", "printer", 0.8),
        );
        assert!(!planned(each, true));
    }

    #[test]
    fn a_question_is_worded_for_as_many_plans_as_it_offers() {
        let ask = |question: &str, to: &[&str]| {
            let pairs: Vec<(&str, &str)> = to.iter().map(|&t| ("kids", t)).collect();
            asking(question, &pairs)
        };
        let question = |each: Vec<Interpretation>| match agree(each, offer) {
            Interpretation::Clarify {
                question, options, ..
            } => (question, options.len()),
            other => panic!("gave {other:?}"),
        };
        // One member offers one plan, another two: the plans are three,
        // the question the one worded for several.
        let each = vec![
            ask("Is this what you meant?", &["printer"]),
            ask("Which way round did you mean?", &["office", "guest"]),
        ];
        assert_eq!(question(each), ("Which way round did you mean?".into(), 3));
        // Both offer the same one plan: the one-plan question.
        let each = vec![
            ask("Is this what you meant?", &["printer"]),
            ask("Is this what you meant?", &["printer"]),
        ];
        assert_eq!(question(each), ("Is this what you meant?".into(), 1));
        // A plan and a one-plan question offering another: two plans, and
        // no member's question fits them.
        let each = vec![
            plan("kids", "office", 0.9),
            ask("Is this what you meant?", &["printer"]),
        ];
        assert_eq!(
            question(each),
            (
                "The request can be read more than one way: which did you mean?".into(),
                2
            )
        );
    }

    #[test]
    fn a_member_unsure_of_the_playbook_offering_only_the_plan_stands_aside() {
        let params = |from: &str, to: &str| match plan(from, to, 0.9) {
            Interpretation::Plan {
                playbook, params, ..
            } => (playbook, params),
            _ => unreachable!(),
        };
        let question = |offers: &[(&str, &str)]| asking("Which of these did you mean?", offers);
        let outcome = |third: Said| {
            let each = vec![
                Said::from(plan("kids", "printer", 0.9)),
                Said::from(plan("kids", "printer", 0.8)),
                third,
            ];
            settle(each, offer, true, |_| false)
        };
        // Its one option is the plan: the plan.
        let lone = Said {
            said: question(&[("kids", "printer")]),
            over_values: None,
            lone: Some(params("kids", "printer")),
        };
        assert!(matches!(outcome(lone), Interpretation::Plan { .. }));
        // The same question from any other doubt (no `lone`): asked.
        let other = Said::from(question(&[("kids", "printer")]));
        assert!(matches!(outcome(other), Interpretation::Clarify { .. }));
        // Unsure of another plan than the majority's: asked.
        let elsewhere = Said {
            said: question(&[("printer", "kids")]),
            over_values: None,
            lone: Some(params("printer", "kids")),
        };
        assert!(matches!(outcome(elsewhere), Interpretation::Clarify { .. }));
        // Only one member plans it: no majority, asked.
        let one_plan = || {
            vec![
                Said::from(plan("kids", "printer", 0.9)),
                Said {
                    said: question(&[("kids", "printer")]),
                    over_values: None,
                    lone: Some(params("kids", "printer")),
                },
                Said {
                    said: question(&[("kids", "printer")]),
                    over_values: None,
                    lone: Some(params("kids", "printer")),
                },
            ]
        };
        assert!(matches!(
            settle(one_plan(), offer, true, |_| false),
            Interpretation::Clarify { .. }
        ));
        // …unless it only reads: those offering it alone count with it.
        assert!(matches!(
            settle(one_plan(), offer, true, |_| true),
            Interpretation::Plan { .. }
        ));
    }

    /// Token offsets of `words` in `text` (each a (piece, is_continuation)).
    fn toks(text: &str, pieces: &[&str]) -> (Vec<(usize, usize)>, Vec<String>) {
        let mut offs = vec![(0, 0)];
        let mut names = vec!["[CLS]".to_string()];
        let mut pos = 0;
        for p in pieces {
            let bare = p.trim_start_matches("##");
            let s = pos + text[pos..].find(bare).expect("piece in text");
            offs.push((s, s + bare.len()));
            names.push(p.to_string());
            pos = s + bare.len();
        }
        offs.push((0, 0));
        names.push("[SEP]".into());
        (offs, names)
    }

    fn one_hot(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 5];
        v[i] = 1.0;
        v
    }

    #[test]
    fn spans_join_word_pieces_words_and_typed_values() {
        // Tags: 0 outside, 1/2 begin/inside role 0, 3/4 begin/inside role 1.
        let text = "allow living room to reach nas.lan now";
        let (offs, names) = toks(
            text,
            &[
                "allow", "living", "room", "to", "reach", "na", "##s", ".", "lan", "now",
            ],
        );
        let mut tags = vec![one_hot(0)];
        tags.extend([
            one_hot(0),
            one_hot(1),
            one_hot(2),
            one_hot(0),
            one_hot(0),
            one_hot(3),
            vec![0.6, 0.0, 0.0, 0.4, 0.0],
            one_hot(0),
            vec![0.1, 0.3, 0.0, 0.0, 0.6],
            one_hot(0),
        ]);
        tags.push(one_hot(0));
        let special: Vec<u32> = (0..offs.len())
            .map(|i| u32::from(i == 0 || i + 1 == offs.len()))
            .collect();
        let (found, outside) = decode_spans(text, &offs, &special, &names, &tags);
        let got: Vec<(usize, &str)> = found
            .iter()
            .map(|f| (f.role, &text[f.start..f.end]))
            .collect();
        // "living room" is one value over two words; "nas.lan" one typed
        // value whose pieces vote together (the first piece is mostly
        // outside, the dot does not vote).
        assert_eq!(got, vec![(0, "living room"), (1, "nas.lan")]);
        assert_eq!(outside.len(), 9, "word pieces of one word are one unit");
    }

    /// The spans (role, text) decoded from one-hot tags, one per piece.
    fn spans_of<'t>(text: &'t str, pieces: &[&str], tags: &[usize]) -> Vec<(usize, &'t str)> {
        let (offs, names) = toks(text, pieces);
        let tags: Vec<Vec<f32>> = std::iter::once(0)
            .chain(tags.iter().copied())
            .chain(std::iter::once(0))
            .map(one_hot)
            .collect();
        let special: Vec<u32> = (0..offs.len())
            .map(|i| u32::from(i == 0 || i + 1 == offs.len()))
            .collect();
        let (found, _) = decode_spans(text, &offs, &special, &names, &tags);
        found
            .iter()
            .map(|f| (f.role, &text[f.start..f.end]))
            .collect()
    }

    /// A value tagged as going on into the next word stops at the end of
    /// a clause: "cams; admin" is two values, not one name.
    #[test]
    fn a_value_does_not_run_on_over_a_clause_end() {
        let got = spans_of(
            "revoke office -> cams; admin stays",
            &["revoke", "office", "-", ">", "cams", ";", "admin", "stays"],
            &[0, 1, 0, 0, 3, 0, 4, 0],
        );
        assert_eq!(got, vec![(0, "office"), (1, "cams"), (1, "admin")]);
    }

    #[test]
    fn one_word_may_hold_two_values() {
        let got = spans_of(
            "iot->lan tcp/8883",
            &["io", "##t", "-", ">", "lan", "tc", "##p", "/", "88", "##83"],
            &[1, 2, 0, 0, 3, 0, 0, 0, 3, 4],
        );
        assert_eq!(got, vec![(0, "iot"), (1, "lan"), (1, "8883")]);
    }

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

    fn ctx_of(names: &[&str]) -> Context {
        Context {
            domains: names
                .iter()
                .map(|n| hearth_common::types::DomainId::parse_field("d", n).expect("domain id"))
                .collect(),
            protected: Vec::new(),
        }
    }

    #[test]
    fn a_name_or_duration_is_its_whole_word() {
        let t = "create a domain called Bad_Name now";
        let s = t.find("Bad").expect("word");
        assert_eq!(
            &t[{
                let (a, b) = whole_word(t, s, s + 3);
                a..b
            }],
            "Bad_Name"
        );
        let t = "a two-year cert";
        let s = t.find("two").expect("word");
        let (a, b) = whole_word(t, s, s + 3);
        assert_eq!(&t[a..b], "two-year");
        let t = "iot->lan";
        let (a, b) = whole_word(t, 0, 3);
        assert_eq!(&t[a..b], "iot-");
    }

    #[test]
    fn existing_domains_are_masked_in_order_and_mapped_back() {
        let ph: Vec<String> = ["bravo", "charlie", "foxtrot"].map(String::from).to_vec();
        let ctx = ctx_of(&["lan", "livingroom", "iot"]);
        let text = "Let the Living Room reach lan.home and lan, not iot->lan.";
        let m = mask(text, &ctx, &ph, None);
        assert_eq!(
            m.text,
            "Let the bravo reach lan.home and charlie, not foxtrot->charlie."
        );
        // Every placeholder maps back to its mention, and the text between
        // them keeps its place.
        for &(ms, me, os, oe) in &m.parts {
            assert_eq!(m.original(ms, me), (os, oe));
        }
        let w = m.text.find("reach").expect("word");
        assert_eq!(
            m.original(w, w + 5),
            (
                text.find("reach").expect("word"),
                text.find("reach").expect("word") + 5
            )
        );
        let (s, e) = m.original(
            m.text.find("charlie").expect("ph"),
            m.text.find("charlie").expect("ph") + 7,
        );
        assert_eq!(&text[s..e], "lan");
        // Trading two domains' placeholders changes nothing else.
        let t = mask(text, &ctx, &ph, Some(("livingroom", "lan")));
        assert_eq!(
            t.text,
            "Let the charlie reach lan.home and bravo, not foxtrot->bravo."
        );
        // No domain named: nothing masked.
        let n = mask("add kodi.lan at 10.0.0.1", &ctx, &ph, None);
        assert_eq!(n.text, "add kodi.lan at 10.0.0.1");
        assert!(n.parts.is_empty());
    }

    /// A word is context only when each of its pieces is outside or
    /// context at the bar together; a piece likely to be a value fails it.
    #[test]
    fn a_word_is_context_only_when_every_piece_is() {
        // Roles: 0 address, 1 context; pieces: outside, address, context.
        let pieces: Vec<Piece> = vec![
            (0, 2, vec![0.01, 0.01, 0.98]),
            (2, 3, vec![0.50, 0.02, 0.48]),
            (3, 5, vec![0.05, 0.90, 0.05]),
        ];
        assert!(only_context(&pieces, Some(1), 0.97, (0, 3)));
        assert!(!only_context(&pieces, Some(1), 0.97, (0, 5)));
        assert!(
            !only_context(&pieces, None, 0.97, (0, 3)),
            "no context role: outside alone"
        );
        assert!(
            only_context(&pieces, Some(1), 0.97, (5, 9)),
            "no piece there"
        );
    }

    #[test]
    fn values_outside_the_used_spans_are_found() {
        let first = |t: &str, used: &[(usize, usize)]| {
            unused_values(t, used).into_iter().next().map(|(_, _, v)| v)
        };
        let t = "add nas.lan at 10.0.0.2 and 10.0.0.3";
        let used = [(4, 11), (15, 23)];
        assert_eq!(first(t, &used).as_deref(), Some("10.0.0.3"));
        assert_eq!(first(t, &[(4, 11), (15, 23), (28, 36)]), None);
        assert_eq!(first("we have 3 TVs", &[]), None);
        // A value written against other characters is still a value.
        let t = "media.home's v6 address changed to 2001:db8::61";
        assert_eq!(first(t, &[(0, 15), (35, 47)]), None, "every value covered");
        assert_eq!(
            first(t, &[(13, 15), (35, 47)]).as_deref(),
            Some("media.home")
        );
        assert_eq!(
            first("ping 10.0.0.5; thanks", &[]).as_deref(),
            Some("10.0.0.5")
        );
    }
}

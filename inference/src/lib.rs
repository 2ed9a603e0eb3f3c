//! hearth-inference: from a plain-language request to one playbook of the
//! signed catalog with its parameters, a clarifying question, or a refusal.
//! Runs in-process with candle (no inference server).
//!
//! The interpreter is learned, not written: all-MiniLM-L6-v2 reads the
//! request (frozen), and one small transformer block with three heads,
//! trained with candle on examples generated from the catalog's own
//! templates and the generic language file ([`gen`], [`train`]), says
//! which playbook it asks for (or none of them), whether it asks to do it,
//! NOT to do it, or only asks about it, and which words are each
//! parameter's value ([`heads`]). No English lives in this crate's code: the
//! words come from the playbooks' `[language]` sections and
//! `catalog/language/en.toml` ([`lexicon`]); [`specs`] reads the playbook
//! files for training and evaluation.
//!
//! Deterministic code then decides ([`Engine::interpret`]):
//! 1. Empty or over-long (512 characters) requests are refused.
//! 2. "None of them" refuses. A request that says not to do it refuses.
//!    A change the request only asks about becomes a clarifying question.
//!    When the best playbook is not likely enough, a clarifying question
//!    offers the two or three likeliest plans (or a refusal when none
//!    fills).
//! 3. Every value is a span of the request parsed by its parameter's type
//!    (durations and number words by the lexicon, domains matched to the
//!    existing ones), a declared default or an enum value; a span that does
//!    not parse refuses. A value tagged for a parameter the playbook does
//!    not take, or an address or DNS name that no span uses, refuses a
//!    change. A change to a protected domain (admin) refuses.
//! 4. The heads are a committee of three, trained alike from different
//!    seeds, each after the first on examples of its own: each member's
//!    reading goes through the rules above, and a plan is made only when
//!    every member makes the same one, or more than half do and the others
//!    refused only over its values (otherwise a refusal, or a question
//!    offering their plans).
//! 5. [`PlaybookSpec::validate`](hearth_common::spec::PlaybookSpec::validate)
//!    canonicalizes and checks everything again; the gate checks it once
//!    more.
//!
//! The model only proposes; it never executes anything and never writes
//! free text. The models' sha256 digests are reported for measurement.
//! The instruct model (SmolLM2, [`llm`]) is not on the request path; its
//! module stays for the benchmark that compares it (docs/perf.md).

pub mod embed;
pub mod eval;
pub mod gen;
pub mod heads;
pub mod lexicon;
pub mod llm;
pub mod product;
pub mod specs;
pub mod tokenizer;
pub mod train;

mod engine;

pub use engine::{
    Candidate, DevicePreference, Engine, Interpretation, ModelDigest, Options, Proposal, Stats,
    EMBED_DIR, MAX_REQUEST_CHARS,
};
pub use eval::{run_eval, run_eval_cli};

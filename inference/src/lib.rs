//! hearth-inference: from a plain-language request to one playbook of the
//! signed catalog with its parameters, or a refusal. Runs in-process with
//! candle (no inference server).
//!
//! Pipeline ([`Engine::interpret`]):
//! 1. Guards: empty, over-long (more than 512 characters), prompt-injection
//!    markers and several actions in one request are refused outright.
//! 2. Retrieval: all-MiniLM-L6-v2 embeds the request; playbooks are ranked by
//!    the best cosine similarity to their description and examples.
//! 3. Choice: the instruct model (SmolLM2-135M-Instruct, any llama-family
//!    GGUF) picks one of the top candidates under constrained decoding: it can
//!    only emit a candidate id. Its log-probabilities are combined with the
//!    retrieval scores; below a confidence threshold the answer is a refusal
//!    naming the closest candidates.
//! 4. Parameters: each parameter's value is chosen among the spans of the
//!    request that fit its type (addresses, names, numbers, existing domains,
//!    enum values), with role cues as a prior and the model deciding between
//!    several spans. A missing required value is a refusal.
//! 5. [`PlaybookSpec::validate`] canonicalizes and checks everything again.
//!
//! Invariants: the model only proposes; it never executes anything and never
//! writes free text. No parameter value can be a string that is neither in the
//! request nor an enum value nor an existing domain (checked again after
//! validation). The models' sha256 digests are reported for measurement.

pub mod catalog;
pub mod embed;
pub mod eval;
pub mod llm;
pub mod spans;
pub mod tokenizer;

mod engine;

pub use engine::{
    Candidate, DevicePreference, Engine, Interpretation, ModelDigest, Options, Stats,
};
pub use eval::{run_eval, run_eval_cli};

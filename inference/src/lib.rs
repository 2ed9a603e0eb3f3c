//! hearth-inference: from a plain-language request to one playbook of the
//! signed catalog with its parameters, or a refusal. Runs in-process with
//! candle (no inference server).
//!
//! Pipeline ([`Engine::interpret`]):
//! 1. Guards: empty, over-long (more than 512 characters), prompt-injection
//!    markers and several actions in one request are refused outright.
//! 2. Retrieval: all-MiniLM-L6-v2 embeds the request; playbooks are ranked by
//!    the best cosine similarity to their description and examples, moved up
//!    when their kind of action (add, remove, read) matches the request's
//!    first action word and when the request uses a word only their service's
//!    catalog texts use. A request led by a verb no playbook performs
//!    (restart, upgrade...) is refused.
//! 3. Fit: among the candidates close to the best, those whose parameters
//!    the request fills, using every value it gives (existing domains, DNS
//!    names, addresses, networks, numbers), of the request's kind of action
//!    and service. A change that would leave a value unused is refused.
//! 4. Choice: when several candidates fit, the instruct model
//!    (SmolLM2-135M-Instruct, any llama-family GGUF) chooses under
//!    constrained decoding: it can only emit one of their ids, its
//!    log-probabilities added to retrieval's. With one, that one; with none,
//!    a refusal naming the closest candidates. Parameters take the best-cued
//!    span of their type, the model deciding between several where it was
//!    consulted. The model's fixed prompt prefix is cached once.
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

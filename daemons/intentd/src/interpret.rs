//! The text path's seam: plain language to one playbook choice.
//!
//! The real implementation is hearth-inference's `Engine`, behind the
//! small adapter in `model.rs` implementing [`Interpreter`]. The gate
//! never trusts what comes out: the chosen id must be in the verified
//! catalog and the parameters are validated again.

use std::collections::BTreeMap;

use hearth_common::spec::{Context, PlaybookSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the interpreter made of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Interpretation {
    /// One playbook with raw parameters.
    Plan {
        /// The playbook id.
        playbook: String,
        /// Raw parameters (validated by the gate).
        params: BTreeMap<String, Value>,
        /// 0..1.
        confidence: f32,
    },
    /// Not sure which plan was meant: a question and the plans it could
    /// mean. Nothing runs; the owner picks one, which is then asked for as
    /// a structured intent (validated and approved like any other).
    Clarify {
        /// The question for the owner.
        question: String,
        /// The plans offered, likeliest first.
        options: Vec<ClarifyOption>,
    },
    /// No single playbook fits.
    Refusal {
        /// Why (several actions, outside the catalog, missing value, …).
        reason: String,
        /// The closest playbook ids.
        candidates: Vec<String>,
    },
}

/// A plan offered by a clarifying question (the bus contract's type, which
/// the interpreter proposes and `Ask` answers with).
pub use hearth_common::contract::intent::ClarifyOption;

/// A model file and its digest, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDigest {
    /// The model file name.
    pub name: String,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Turns text into an [`Interpretation`]. Runs on a blocking thread.
pub trait Interpreter: Send + Sync + 'static {
    /// Tells it the verified catalog (called at load and after installs).
    fn set_catalog(&self, specs: &[PlaybookSpec]);
    /// Interprets one request (at most 512 characters).
    fn interpret(&self, text: &str, ctx: &Context) -> Interpretation;
    /// The digests of the loaded models.
    fn model_digests(&self) -> Vec<ModelDigest>;
    /// Whether the signed language file's text (the catalog's
    /// `hearth-language.dsse.json`, verified) is the language the
    /// interpreter reads requests with; why not, when it is not. The gate
    /// serves plain-language requests only while it is. An interpreter that
    /// reads no language file accepts any.
    fn check_language(&self, _text: &str) -> Result<(), String> {
        Ok(())
    }
}

/// The interpreter used when no model is configured: refuses every text
/// request and points at the structured path.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoInterpreter;

impl Interpreter for NoInterpreter {
    fn set_catalog(&self, _specs: &[PlaybookSpec]) {}
    fn interpret(&self, _text: &str, _ctx: &Context) -> Interpretation {
        Interpretation::Refusal {
            reason: "no language model is loaded; use a structured intent (hearthctl ask --playbook ID --param k=v)".into(),
            candidates: Vec::new(),
        }
    }
    fn model_digests(&self) -> Vec<ModelDigest> {
        Vec::new()
    }
}

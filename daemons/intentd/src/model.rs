//! The text path: hearth-inference's [`Engine`] behind the gate's
//! [`Interpreter`] seam. The engine only proposes; the gate validates the
//! chosen id against the verified catalog and the parameters again.

use std::path::Path;
use std::sync::RwLock;

use hearth_common::spec::{Context, PlaybookSpec};
use hearth_inference::{DevicePreference, Engine};

use crate::interpret::{Interpretation, Interpreter, ModelDigest};

/// Both models, loaded in-process.
pub struct ModelInterpreter {
    engine: RwLock<Engine>,
    digests: Vec<ModelDigest>,
}

impl ModelInterpreter {
    /// Loads the models from `dir` (the GPU when built with `cuda` and one
    /// is there, the CPU otherwise; the choice is logged).
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let engine = Engine::load(dir, DevicePreference::Auto)?;
        let digests = engine
            .digests()
            .iter()
            .map(|d| ModelDigest {
                name: d.name.clone(),
                sha256: d.sha256.clone(),
            })
            .collect();
        Ok(ModelInterpreter {
            engine: RwLock::new(engine),
            digests,
        })
    }
}

impl Interpreter for ModelInterpreter {
    fn set_catalog(&self, specs: &[PlaybookSpec]) {
        let mut engine = match self.engine.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = engine.set_catalog(specs) {
            tracing::error!("the models could not take the catalog: {e:#}");
        }
    }

    fn interpret(&self, text: &str, ctx: &Context) -> Interpretation {
        let engine = match self.engine.read() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        match engine.interpret(text, ctx) {
            hearth_inference::Interpretation::Plan {
                playbook,
                params,
                confidence,
                ..
            } => Interpretation::Plan {
                playbook,
                params,
                confidence,
            },
            hearth_inference::Interpretation::Clarify {
                question, options, ..
            } => Interpretation::Clarify { question, options },
            hearth_inference::Interpretation::Refusal { reason, candidates } => {
                Interpretation::Refusal {
                    reason,
                    candidates: candidates.into_iter().map(|c| c.id).collect(),
                }
            }
        }
    }

    fn model_digests(&self) -> Vec<ModelDigest> {
        self.digests.clone()
    }

    /// The signed file must say what the lexicon the heads were trained
    /// with (the copy in meta.json, which the engine reads) says.
    fn check_language(&self, text: &str) -> Result<(), String> {
        let engine = match self.engine.read() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        engine.check_language(text).map_err(|e| format!("{e:#}"))
    }
}

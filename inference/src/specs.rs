//! Reading playbook specs from a directory of playbook TOML files.
//!
//! Only the parts that describe what a playbook does and asks for are read
//! ([`PlaybookSpec`]); steps, undo steps and signatures belong to the gate and
//! are skipped here. The gate passes its verified specs to
//! [`crate::Engine::set_catalog`] directly; this reader serves the evaluation
//! command and tests.

use std::path::Path;

use anyhow::{Context as _, Result};
use hearth_common::spec::PlaybookSpec;

/// The part of a playbook file that belongs to the gate alone.
const GATE_SECTION: &str = "steps";

/// Parses one playbook file's text into its spec, ignoring the gate's
/// sections.
pub fn parse_spec(text: &str) -> Result<PlaybookSpec> {
    let mut table: toml::Table = toml::from_str(text)?;
    // Everything else is the spec, read by the same strict type the gate
    // uses (an unknown key is an error, as it is for the gate).
    table.remove(GATE_SECTION);
    Ok(toml::Value::Table(table).try_into()?)
}

/// Reads every `*.toml` file of `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<PlaybookSpec>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse_spec(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

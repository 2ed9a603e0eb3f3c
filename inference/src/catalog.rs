//! Reading playbook specs from a directory of playbook TOML files.
//!
//! Only the parts that describe what a playbook does and asks for are read
//! ([`PlaybookSpec`]); steps, undo steps and signatures belong to the gate and
//! are skipped here. The gate passes its verified specs to
//! [`crate::Engine::set_catalog`] directly; this reader serves the evaluation
//! command and tests.

use std::path::Path;

use anyhow::{Context as _, Result};
use hearth_common::catalog::PlaybookSpec;

const SPEC_KEYS: &[&str] = &[
    "id",
    "version",
    "description",
    "examples",
    "risk",
    "params",
    "language",
];

/// Parses one playbook file's text into its spec, ignoring the gate's
/// sections.
pub fn parse_spec(text: &str) -> Result<PlaybookSpec> {
    let mut table: toml::Table = toml::from_str(text)?;
    table.retain(|k, _| SPEC_KEYS.contains(&k));
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

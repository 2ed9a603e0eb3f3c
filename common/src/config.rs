//! TOML configuration files that reject unknown keys, with errors that name
//! the file, the line and the column.
//!
//! Every configuration struct derives `Deserialize` with
//! `#[serde(deny_unknown_fields)]`; [`load`] reads and parses one file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a bad value.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file parsed but a value breaks a rule across fields.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses `text`, which was read from `path`.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(default)]
        port: u16,
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let p = Path::new("/etc/hearth/demo.toml");
        let e = parse::<Demo>(p, "name = \"x\"\n\nprot = 53\n").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/etc/hearth/demo.toml:3:1:"), "{s}");
        assert!(s.contains("prot"), "{s}");
    }

    #[test]
    fn bad_value_names_line() {
        let p = Path::new("demo.toml");
        let e = parse::<Demo>(p, "name = \"x\"\nport = 70000\n").unwrap_err();
        assert!(e.to_string().starts_with("demo.toml:2:"), "{e}");
    }

    #[test]
    fn missing_file_names_file() {
        let e = load::<Demo>(Path::new("/nonexistent/hearth.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/hearth.toml"));
    }

    #[test]
    fn good_file_loads() {
        let d: Demo = parse(Path::new("d.toml"), "name = \"x\"\n").unwrap();
        assert_eq!(d.name, "x");
    }
}

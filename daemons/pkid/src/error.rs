//! Errors of the CA engine, and how they cross the bus.

use hearth_common::HearthError;

/// What went wrong in the CA. Each message names the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The caller's input does not parse or breaks the policy.
    #[error("{0}")]
    Invalid(String),
    /// The named certificate (or the CA itself) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with existing state.
    #[error("{0}")]
    Conflict(String),
    /// The token failed or refused.
    #[error(transparent)]
    Hsm(#[from] hearth_hsm::HsmError),
    /// Building or signing a certificate failed.
    #[error("certificate encoding failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A state file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A state file is corrupt.
    #[error("corrupt state file {path}: {why}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl PkiError {
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> PkiError {
        let path = path.to_path_buf();
        move |source| PkiError::Io { what, path, source }
    }
}

impl From<hearth_common::types::ParseError> for PkiError {
    fn from(e: hearth_common::types::ParseError) -> Self {
        PkiError::Invalid(e.to_string())
    }
}

impl From<PkiError> for HearthError {
    fn from(e: PkiError) -> Self {
        use hearth_hsm::HsmError as H;
        let msg = e.to_string();
        match e {
            PkiError::Invalid(_) => HearthError::InvalidArgument(msg),
            PkiError::NotFound(_) => HearthError::NotFound(msg),
            PkiError::Conflict(_) => HearthError::Conflict(msg),
            PkiError::Hsm(H::KeyExists { .. }) => HearthError::Conflict(msg),
            _ => HearthError::Internal(msg),
        }
    }
}

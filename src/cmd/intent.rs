//! `hearthctl ask`, `playbook` and `audit`: filled in with the gate.

use hearth_common::HearthError;

use super::Output;
use crate::cli::intent::{AskArgs, AuditCommand, PlaybookCommand};

/// `hearthctl ask`.
pub async fn ask(
    _args: AskArgs,
    _json: bool,
    _conn: &zbus::Connection,
) -> Result<Output, HearthError> {
    Err(HearthError::NotFound(
        "the intent gate has not landed yet".into(),
    ))
}

/// `hearthctl playbook …`.
pub async fn playbook(
    cmd: PlaybookCommand,
    _conn: &zbus::Connection,
) -> Result<Output, HearthError> {
    match cmd {
        PlaybookCommand::Unavailable => Err(HearthError::NotFound(
            "the intent gate has not landed yet".into(),
        )),
    }
}

/// `hearthctl audit …`.
pub async fn audit(cmd: AuditCommand, _conn: &zbus::Connection) -> Result<Output, HearthError> {
    match cmd {
        AuditCommand::Unavailable => Err(HearthError::NotFound(
            "the intent gate has not landed yet".into(),
        )),
    }
}

//! `hearthctl pki`: filled in with its daemon.

use hearth_common::HearthError;

use super::Output;
use crate::cli::pki::Command;

/// Runs one pki command.
pub async fn run(cmd: Command, _conn: &zbus::Connection) -> Result<Output, HearthError> {
    match cmd {
        Command::Unavailable => Err(HearthError::NotFound(
            "this daemon has not landed yet".into(),
        )),
    }
}

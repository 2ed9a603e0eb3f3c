//! `hearthctl attest`: filled in with its daemon.

use hearth_common::HearthError;

use super::Output;
use crate::cli::attest::Command;

/// Runs one attest command.
pub async fn run(cmd: Command, _conn: &zbus::Connection) -> Result<Output, HearthError> {
    match cmd {
        Command::Unavailable => Err(HearthError::NotFound(
            "this daemon has not landed yet".into(),
        )),
    }
}

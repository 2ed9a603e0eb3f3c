//! `hearthctl dns`: filled in with its daemon.

use hearth_common::HearthError;

use super::Output;
use crate::cli::dns::Command;

/// Runs one dns command.
pub async fn run(cmd: Command, _conn: &zbus::Connection) -> Result<Output, HearthError> {
    match cmd {
        Command::Unavailable => Err(HearthError::NotFound(
            "this daemon has not landed yet".into(),
        )),
    }
}

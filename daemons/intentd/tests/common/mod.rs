//! Starting hearth-intentd for a test, as systemd does: on a notify socket,
//! awaited until it sends READY=1 (the testbed's [`Daemon::start`]).

use std::path::Path;
use std::process::Command;

use hearth_testbed::{Daemon, Started};

/// Starts hearth-intentd with `dir/intentd.toml` and its state in
/// `dir/state`, on the bus at `addr`, with `env` besides; returns once it
/// sent READY=1 (it owns its bus name by then). Stopped when dropped.
pub async fn start_intentd(dir: &Path, addr: &str, env: &[(&str, &str)]) -> Started {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-intentd"));
    cmd.arg("--config")
        .arg(dir.join("intentd.toml"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", addr)
        .envs(env.iter().copied());
    let dir = dir.to_path_buf();
    // The wait blocks: off the runtime, which may serve a stand-in daemon.
    tokio::task::spawn_blocking(move || Daemon::start(hearth_common::names::INTENT, cmd, &dir))
        .await
        .expect("the start task")
        .unwrap_or_else(|e| panic!("hearth-intentd: {e}"))
}

//! What the daemon-level tests share: a free local port, and starting
//! hearth-attestd the way systemd does (the testbed's `Daemon::start`:
//! READY=1 on a notify socket, its output in `<dir>/hearth-attestd.log`,
//! stopped when dropped).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts hearth-attestd with `config` and `state` on the bus at
/// `bus_address` (plus `env`), its notify socket and log in `dir`, and
/// waits for its READY=1; panics with the log's tail if it exits first or
/// never says it.
pub fn start(
    config: &Path,
    state: &Path,
    bus_address: &str,
    env: &[(&str, &str)],
    dir: &Path,
) -> hearth_testbed::Started {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth-attestd"));
    cmd.arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
        .env("TSS2_LOG", "all+NONE")
        .envs(env.iter().copied());
    hearth_testbed::Daemon::start(hearth_common::names::ATTESTATION, cmd, dir)
        .unwrap_or_else(|e| panic!("hearth-attestd: {e:#}"))
}

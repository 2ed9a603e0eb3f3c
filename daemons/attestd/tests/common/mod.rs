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

/// Starts `cmd` (hearth-attestd and its arguments), its notify socket and
/// log in `dir`, and waits for its READY=1; panics with the log's tail if
/// it exits first or never says it.
pub fn start(cmd: Command, dir: &Path) -> hearth_testbed::Started {
    hearth_testbed::Daemon::start(hearth_common::names::ATTESTATION, cmd, dir)
        .unwrap_or_else(|e| panic!("hearth-attestd: {e:#}"))
}

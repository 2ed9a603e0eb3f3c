//! What the daemon-level tests share: a child process killed on drop, a free
//! local port, and waiting for the daemon's READY=1.
#![allow(dead_code)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Kills the process on drop (test failures included).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits up to 60 s for READY=1 on `sock`; panics, with the daemon's log
/// when given, if it exits first or never says it.
pub fn await_ready(sock: &UnixDatagram, daemon: &mut Child, log: Option<&Path>) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!(
                "hearth-attestd exited before READY=1: {status}\n{}",
                log.and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default()
            );
        }
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return;
            }
        }
    }
    panic!("hearth-attestd sent no READY=1 in 60 s");
}

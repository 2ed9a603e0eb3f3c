//! hearth-netd: network domains (bridges over rtnetlink, isolation in
//! nftables). Thin binary over the `hearth_netd` library.
//!
//! Until the shared daemon runtime serves the bus, this binary reconciles the
//! kernel with `--config` (default /etc/hearth/network.toml) and the overlay
//! in `--state-dir` (default /var/lib/hearth/hearth-netd), prints the report
//! as JSON, and then guards the table; `--once` exits after the reconcile.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = PathBuf::from("/etc/hearth/network.toml");
    let mut state = PathBuf::from("/var/lib/hearth/hearth-netd");
    let mut once = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--config", Some(v)) => config = v.into(),
            ("--state-dir", Some(v)) => state = v.into(),
            ("--once", None) => once = true,
            _ => {
                eprintln!("usage: hearth-netd [--config PATH] [--state-dir DIR] [--once]");
                return ExitCode::from(2);
            }
        }
    }
    let engine = match hearth_netd::Engine::load(&config, &state) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hearth-netd: {e}");
            return ExitCode::from(2);
        }
    };
    match engine.reconcile() {
        Ok(rep) => println!(
            "{}",
            serde_json::to_string(&rep).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        ),
        Err(e) => {
            eprintln!("hearth-netd: reconcile failed: {e}");
            return ExitCode::from(1);
        }
    }
    if once {
        return ExitCode::SUCCESS;
    }
    let _watcher = match engine.watch() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("hearth-netd: cannot watch nftables: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!("guarding table inet hearth");
    loop {
        std::thread::park();
    }
}

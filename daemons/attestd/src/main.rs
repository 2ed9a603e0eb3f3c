//! hearth-attestd: thin binary over the `hearth_attestd` library.
//! Until the shared daemon runtime lands: `--config PATH --state-dir DIR`,
//! serves HTTPS only.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn arg(args: &[String], name: &str, default: &str) -> PathBuf {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let config = arg(&args, "--config", "/etc/hearth/hearth-attestd.toml");
    let state_dir = arg(&args, "--state-dir", "/var/lib/hearth/hearth-attestd");
    let run = || -> anyhow::Result<()> {
        let cfg: hearth_attestd::Config = hearth_common::config::load(&config)?;
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let tls = hearth_attestd::server::tls_config(&cfg.tls_cert, &cfg.tls_key)?;
            let listener = hearth_attestd::server::bind(&cfg.listen).await?;
            let engine = {
                let cfg = cfg.clone();
                tokio::task::spawn_blocking(move || hearth_attestd::Engine::open(&cfg, &state_dir))
                    .await??
            };
            eprintln!("hearth-attestd: serving on {}", listener.local_addr()?);
            hearth_attestd::server::serve(listener, tls, Arc::new(engine)).await;
            Ok(())
        })
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-attestd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

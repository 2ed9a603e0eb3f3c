//! Development evaluation command: `hearth-intent-eval --cases FILE.jsonl
//! --report OUT.json` runs the same function as `hearth-intentd eval`
//! ([`hearth_inference::eval::run_eval_cli`]). `--mode` runs the ablations;
//! `--explain` prints each case's outcome and cost.

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    hearth_inference::eval::run_eval_cli(&args)
}

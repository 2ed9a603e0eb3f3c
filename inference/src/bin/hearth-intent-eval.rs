//! Development evaluation command: `hearth-intent-eval --cases FILE.jsonl
//! --report OUT.json` (same function as `hearth-intentd eval`). `--mode`
//! runs the ablations; `--explain` prints each case's outcome and cost.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use hearth_inference::eval::{read_cases, run_eval, run_eval_with};
use hearth_inference::{DevicePreference, Engine};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Retrieval and the model (the product).
    Both,
    /// Retrieval alone: best similarity wins, parameters by cues.
    Retrieval,
    /// The model alone, choosing among all playbooks.
    Llm,
}

#[derive(Parser, Debug)]
#[command(about = "Evaluate the request interpreter on JSON-lines cases")]
struct Args {
    /// JSON-lines cases.
    #[arg(long)]
    cases: PathBuf,
    /// Where the JSON report goes.
    #[arg(long)]
    report: PathBuf,
    /// Models directory.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Playbook directory (the default catalog's specs).
    #[arg(long, default_value = "playbooks")]
    catalog: PathBuf,
    /// Ablation mode.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Print every case's outcome and cost to stderr.
    #[arg(long)]
    explain: bool,
}

fn main() -> ExitCode {
    tracing_subscriber_init();
    let args = Args::parse();
    let res = match (args.mode, args.explain) {
        (Mode::Both, false) => run_eval(&args.cases, &args.report, &args.models, &args.catalog),
        _ => custom(&args),
    };
    match res {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn custom(args: &Args) -> anyhow::Result<(usize, usize)> {
    let t = Instant::now();
    let specs = hearth_inference::catalog::load_dir(&args.catalog)?;
    let mut engine = Engine::load(&args.models, DevicePreference::Auto)?;
    let t_models = t.elapsed();
    match args.mode {
        Mode::Both => {}
        Mode::Retrieval => engine.options.use_llm = false,
        Mode::Llm => engine.options.use_retrieval = false,
    }
    engine.set_catalog(&specs)?;
    eprintln!(
        "loaded models in {:.0} ms, catalog and {}-token prefix in {:.0} ms",
        t_models.as_secs_f64() * 1e3,
        engine.prefix_tokens(),
        (t.elapsed() - t_models).as_secs_f64() * 1e3
    );
    if args.explain {
        for case in read_cases(&args.cases)? {
            let ctx = hearth_inference::eval::case_context(&case);
            let t = Instant::now();
            let (got, st) = engine.interpret_with_stats(&case.text, &ctx);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let pass = hearth_inference::eval::matches(&case.expect, &got);
            eprintln!(
                "{} {:6.1}ms emb {:5.1} llm {:6.1} fw {} pt {} st {} | {} => {}",
                if pass { "PASS" } else { "FAIL" },
                ms,
                st.embed_ms,
                st.llm_ms,
                st.forwards,
                st.prompt_tokens,
                st.single_tokens,
                case.text.chars().take(100).collect::<String>(),
                serde_json::to_string(&got)?
            );
            if !pass {
                eprintln!("     expected {}", case.expect);
            }
        }
    }
    run_eval_with(&engine, &args.cases, &args.report)
}

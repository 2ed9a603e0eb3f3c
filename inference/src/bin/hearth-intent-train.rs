//! Trains the interpreter's heads from the catalog's templates and the
//! language file: `hearth-intent-train [--models DIR] [--catalog DIR]
//! [--lexicon FILE] [--force] [--seed N] [--epochs N] [--members N]
//! [--batch N] [--lr X] [--cache DIR]`. Writes
//! `DIR/hearth-intent/heads.safetensors` and `meta.json` atomically; does
//! nothing when they are there for the same inputs (same inputs and seed
//! give the same weights).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hearth_inference::eval::default_dir;
use hearth_inference::train::{train_into, Recipe};

#[derive(Parser, Debug)]
#[command(
    name = "hearth-intent-train",
    about = "Train the intent interpreter's heads"
)]
struct Args {
    /// Models directory [default: $HEARTH_MODELS_DIR, else ./models].
    #[arg(long)]
    models: Option<PathBuf>,
    /// Playbook directory [default: $HEARTH_PLAYBOOKS_DIR, else ./catalog].
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// The language file [default: CATALOG/language/en.toml].
    #[arg(long)]
    lexicon: Option<PathBuf>,
    /// Train even when the weights are up to date.
    #[arg(long)]
    force: bool,
    /// Override the seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the number of committee members.
    #[arg(long)]
    members: Option<usize>,
    /// Override the examples per step.
    #[arg(long)]
    batch: Option<usize>,
    /// Override the peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Take weights trained before from the same inputs from this
    /// directory (and keep new ones there), one subdirectory per inputs
    /// digest.
    #[arg(long)]
    cache: Option<PathBuf>,
}

fn main() -> ExitCode {
    // Training shares the work among the cores itself (the halves of each
    // batch, the chunks to encode); candle's own splitting of these small
    // tensors over a pool of spinning threads made each step twice as
    // slow (docs/perf.md). Set before candle makes its pools; a value
    // given by the caller is kept.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let args = Args::parse();
    let models = args
        .models
        .unwrap_or_else(|| default_dir("HEARTH_MODELS_DIR", "models"));
    let catalog = args
        .catalog
        .unwrap_or_else(|| default_dir("HEARTH_PLAYBOOKS_DIR", "catalog"));
    let lexicon = args
        .lexicon
        .unwrap_or_else(|| catalog.join("language").join("en.toml"));
    let mut recipe = Recipe::default();
    if let Some(s) = args.seed {
        recipe.seed = s;
    }
    if let Some(e) = args.epochs {
        recipe.epochs = e;
    }
    if let Some(m) = args.members {
        recipe.members = m;
    }
    if let Some(b) = args.batch {
        recipe.batch = b;
    }
    if let Some(l) = args.lr {
        recipe.lr = l;
    }
    let t = std::time::Instant::now();
    let mut log = |m: &str| eprintln!("[train] {m}");
    match train_into(
        &models,
        &catalog,
        &lexicon,
        &recipe,
        args.force,
        args.cache.as_deref(),
        &mut log,
    ) {
        Ok(_) => {
            eprintln!("[train] done in {:.1} s", t.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

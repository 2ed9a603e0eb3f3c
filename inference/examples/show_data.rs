//! Prints generated training examples with their labels (for inspection):
//! `cargo run -p hearth-inference --example show_data -- [PLAYBOOK] [N]`.
use std::path::Path;

use hearth_inference::gen::{Generator, ASKS, DO, DO_NOT};
use hearth_inference::lexicon::Lexicon;
use hearth_inference::train::Recipe;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let specs = hearth_inference::specs::load_dir(&root.join("catalog"))?;
    let lex = Lexicon::load(&root.join("catalog/language/en.toml"))?;
    let r = Recipe::default();
    let mut g = Generator::new(&specs, &lex, r.seed);
    let labels = g.labels().clone();
    let data = g.generate(r.per_playbook, r.none);
    let want = args.first().cloned().unwrap_or_default();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    for e in data
        .iter()
        .filter(|e| want.is_empty() || labels.intents[e.intent] == want)
        .take(n)
    {
        let spans: Vec<String> = e
            .slots
            .iter()
            .map(|&(a, b, r)| format!("{}={:?}", labels.roles[r], &e.text[a..b]))
            .collect();
        println!(
            "{:<22} {:<10} {:?}  {}",
            labels.intents[e.intent],
            match e.polarity {
                DO => "do",
                DO_NOT => "do-not",
                ASKS => "asks",
                _ => "?",
            },
            e.text,
            spans.join(" ")
        );
    }
    Ok(())
}

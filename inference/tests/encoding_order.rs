//! A measurement for docs/perf.md, not a check of behaviour: how much the
//! training's encoder chunks pad when examples are sorted by byte length
//! (what `encode_all` does) or by token count, what encoding costs each
//! way, and whether the states come out the same.
//!
//! `cargo test --release -p hearth-inference --test encoding_order -- --ignored --nocapture`

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use hearth_inference::embed::Embedder;
use hearth_inference::gen::Generator;
use hearth_inference::lexicon::Lexicon;
use hearth_inference::train::{member_data_seed, Recipe};

/// Examples per chunk, as `encode_all` cuts them.
const CHUNK: usize = 64;

/// Each text's states (bits), its real tokens only, encoded in `order`'s
/// chunks.
fn states(e: &Embedder, texts: &[&str], order: &[usize]) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); texts.len()];
    for chunk in order.chunks(CHUNK) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let (h, _, enc) = e.token_states(&batch).unwrap();
        for (row, (&i, en)) in chunk.iter().zip(&enc).enumerate() {
            let len = en.get_attention_mask().iter().filter(|&&m| m == 1).count();
            out[i] = h
                .get(row)
                .unwrap()
                .narrow(0, 0, len)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect();
        }
    }
    out
}

/// Tokens the chunks of `order` hold, padding included.
fn padded(tokens: &[usize], order: &[usize]) -> usize {
    order
        .chunks(CHUNK)
        .map(|c| c.iter().map(|&i| tokens[i]).max().unwrap_or(0) * c.len())
        .sum()
}

#[test]
#[ignore]
fn encoding_order() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let specs = hearth_inference::specs::load_dir(&root.join("catalog")).unwrap();
    let lex = Lexicon::load(&root.join("catalog/language/en.toml")).unwrap();
    let dir = root.join("models/all-MiniLM-L6-v2");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let e = Embedder::load(&dir, weights, &Device::Cpu).unwrap();
    let r = Recipe::default();
    for k in 0..r.members {
        let ex = Generator::new(&specs, &lex, member_data_seed(r.seed, k))
            .generate(r.per_playbook, r.none);
        let texts: Vec<&str> = ex.iter().map(|x| x.text.as_str()).collect();
        let tokens: Vec<usize> = texts.iter().map(|t| e.token_count(t).unwrap()).collect();
        let mut by_bytes: Vec<usize> = (0..texts.len()).collect();
        by_bytes.sort_by_key(|&i| (texts[i].len(), i));
        let mut by_tokens: Vec<usize> = (0..texts.len()).collect();
        by_tokens.sort_by_key(|&i| (tokens[i], i));
        let real: usize = tokens.iter().sum();
        let (pb, pt) = (padded(&tokens, &by_bytes), padded(&tokens, &by_tokens));
        assert!(pb >= real && pt >= real);
        println!(
            "member {k}: {} examples, {real} tokens; chunks by bytes {pb} ({:.1} % padding), by token count {pt} ({:.1} %)",
            texts.len(),
            100.0 * (pb - real) as f64 / real as f64,
            100.0 * (pt - real) as f64 / real as f64
        );
        if k > 0 {
            continue;
        }
        let t = Instant::now();
        let a = states(&e, &texts, &by_bytes);
        let ta = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let b = states(&e, &texts, &by_tokens);
        let tb = t.elapsed().as_secs_f64();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        println!(
            "member 0 encoded chunk after chunk: by bytes {ta:.1} s, by token count {tb:.1} s; {differ} of {} examples' states differ in some bits",
            texts.len()
        );
    }
}

//! Training is reproducible and never sees an evaluation text; the
//! interpreter's crate holds no word lists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use hearth_inference::embed::Embedder;
use hearth_inference::gen::Generator;
use hearth_inference::heads::Heads;
use hearth_inference::lexicon::Lexicon;
use hearth_inference::train::{train, train_into, Recipe};
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn catalog() -> (Vec<hearth_common::spec::PlaybookSpec>, Lexicon) {
    let specs = hearth_inference::specs::load_dir(&root().join("catalog")).unwrap();
    let lex = Lexicon::load(&root().join("catalog/language/en.toml")).unwrap();
    (specs, lex)
}

/// A small recipe (batches of 8) for tests; the shipped one is what
/// scripts/train-intent runs.
fn small(per_playbook: usize, none: usize, epochs: usize) -> Recipe {
    Recipe {
        per_playbook,
        none,
        epochs,
        batch: 8,
        ..Recipe::default()
    }
}

/// The same inputs and seed give the same weights, byte for byte; another
/// seed gives others. (A small recipe: the full one is what
/// scripts/train-intent runs, with the digest checked the same way.)
#[test]
fn training_is_reproducible() {
    let (specs, lex) = catalog();
    let dir = root().join("models/all-MiniLM-L6-v2");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let sha = hex::encode(Sha256::digest(&weights));
    let embedder = Embedder::load(&dir, weights, &Device::Cpu).unwrap();
    let recipe = small(6, 12, 2);
    let mut quiet = |_: &str| {};
    let (a, ma) = train(&embedder, &sha, &specs, &lex, &recipe, &mut quiet).unwrap();
    let (b, mb) = train(&embedder, &sha, &specs, &lex, &recipe, &mut quiet).unwrap();
    assert_eq!(ma.weights_sha256, hex::encode(Sha256::digest(&a)));
    assert_eq!(a, b, "same inputs and seed, different weights");
    // The committee: as many members as the recipe says, each its own.
    let members = Heads::load_committee(ma.dims, recipe.members, &a, &Device::Cpu).unwrap();
    assert_eq!(members.len(), recipe.members);
    assert!(recipe.members >= 2, "the shipped recipe trains a committee");
    let first = |h: &Heads| {
        h.vars()[0]
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    for i in 0..members.len() {
        for j in i + 1..members.len() {
            assert_ne!(
                first(&members[i]),
                first(&members[j]),
                "members {i} and {j}, one set of weights"
            );
        }
    }
    assert!(Heads::load_committee(ma.dims, recipe.members + 1, &a, &Device::Cpu).is_err());
    assert_eq!(ma.inputs_sha256, mb.inputs_sha256);
    let other = Recipe {
        seed: recipe.seed + 1,
        ..recipe
    };
    let (c, mc) = train(&embedder, &sha, &specs, &lex, &other, &mut quiet).unwrap();
    assert_ne!(a, c, "another seed gave the same weights");
    assert_ne!(ma.inputs_sha256, mc.inputs_sha256);
}

/// No evaluation text (lower-cased) appears in the generated training data
/// of the shipped recipe, and the generator is deterministic.
#[test]
fn no_evaluation_text_is_training_data() {
    let (specs, lex) = catalog();
    let r = Recipe::default();
    let data = Generator::new(&specs, &lex, r.seed).generate(r.per_playbook, r.none);
    let again = Generator::new(&specs, &lex, r.seed).generate(r.per_playbook, r.none);
    assert_eq!(data.len(), again.len());
    assert!(data.iter().zip(&again).all(|(x, y)| x.text == y.text));
    let trained: std::collections::HashSet<String> =
        data.iter().map(|e| e.text.trim().to_lowercase()).collect();
    let mut checked = 0;
    for f in std::fs::read_dir(root().join("inference/eval")).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        for case in hearth_inference::eval::read_cases(&p).unwrap() {
            let t = case.text.trim().to_lowercase();
            assert!(
                !trained.contains(&t),
                "{}: {:?} is in the training data",
                p.display(),
                case.text
            );
            checked += 1;
        }
    }
    assert!(checked >= 600, "only {checked} evaluation texts found");
}

/// The crate's code holds no list of English words: a line with two or
/// more quoted lower-case words joined by `,` or `|` (outside tests) fails.
#[test]
fn the_interpreter_code_holds_no_word_lists() {
    let mut bad = Vec::new();
    let mut files = Vec::new();
    collect(&root().join("inference/src"), &mut files);
    assert!(files.len() >= 8);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if word_list(line) {
                bad.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "word lists in code:\n{}", bad.join("\n"));
    assert!(word_list(r#"const W: &[&str] = &["allow", "let"];"#));
    assert!(word_list(r#"matches!(w, "not" | "never")"#));
    assert!(!word_list(r#"["tokenizer.json", "config.json"]"#));
}

fn word_list(line: &str) -> bool {
    let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
    let seps: Vec<&str> = line.split('"').skip(2).step_by(2).collect();
    quoted.windows(2).zip(&seps).any(|(w, sep)| {
        let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase());
        word(w[0]) && word(w[1]) && matches!(sep.trim(), "," | "|")
    })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Weights trained before from the same inputs come from the cache, checked
/// by digest; a cache entry whose weights do not match its description is
/// not used (training runs again).
#[test]
fn the_cache_gives_back_the_same_weights_and_refuses_damaged_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(
        root().join("models/all-MiniLM-L6-v2"),
        models.join("all-MiniLM-L6-v2"),
    )
    .unwrap();
    let cache = tmp.path().join("cache");
    let recipe = small(2, 4, 1);
    let (catalog, lexicon) = (
        root().join("catalog"),
        root().join("catalog/language/en.toml"),
    );
    let mut quiet = |_: &str| {};
    let mut run = |force: bool| {
        train_into(
            &models,
            &catalog,
            &lexicon,
            &recipe,
            force,
            Some(&cache),
            &mut quiet,
        )
        .unwrap()
    };
    let heads = models.join("hearth-intent/heads.safetensors");
    assert!(run(false), "nothing there: it trains");
    let trained = std::fs::read(&heads).unwrap();
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read(entry.join("heads.safetensors")).unwrap(),
        trained
    );
    std::fs::remove_dir_all(models.join("hearth-intent")).unwrap();
    assert!(!run(false), "the cache had them: nothing trained");
    assert_eq!(std::fs::read(&heads).unwrap(), trained);
    // Damaged in the cache: not taken, trained again (the same bytes).
    std::fs::remove_dir_all(models.join("hearth-intent")).unwrap();
    let mut bad = trained.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(entry.join("heads.safetensors"), bad).unwrap();
    assert!(run(false), "a damaged cache entry was used");
    assert_eq!(std::fs::read(&heads).unwrap(), trained);
}

/// The inputs digest covers what training reads: a rule checked only when a
/// plan is validated (`differs_from`) is not, so adding or changing one
/// keeps the trained weights; a description is, and so is a playbook's
/// `opposite` (the requests to undo and to stop are generated from it).
#[test]
fn rules_between_values_are_not_training_inputs() {
    let (specs, lex) = catalog();
    let recipe = Recipe::default();
    let digest = |s: &[hearth_common::spec::PlaybookSpec]| {
        hearth_inference::train::inputs_digest(&recipe, s, &lex, "encoder")
    };
    let before = digest(&specs);
    let mut changed = specs.clone();
    let allow = changed.iter_mut().find(|s| s.id == "net.allow").unwrap();
    let to = allow.params.iter_mut().find(|p| p.name == "to").unwrap();
    assert_eq!(to.differs_from.as_deref(), Some("from"), "the shipped rule");
    to.differs_from = None;
    assert_eq!(digest(&changed), before);
    changed[0].description.push('!');
    assert_ne!(digest(&changed), before);
    let mut changed = specs.clone();
    let allow = changed.iter_mut().find(|s| s.id == "net.allow").unwrap();
    allow.language.opposite = None;
    assert_ne!(digest(&changed), before, "the opposite is a training input");
}

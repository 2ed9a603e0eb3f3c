//! Training the interpreter's heads: generate examples from the catalog
//! and the language file, encode them once with the frozen
//! all-MiniLM-L6-v2, then train the block and heads with AdamW. The result
//! is two files under the models directory, `hearth-intent/heads.safetensors`
//! and `hearth-intent/meta.json` (sizes, labels, the lexicon used at run
//! time, and the digest of every input), both measured like the other
//! models.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use hearth_common::spec::PlaybookSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embed::Embedder;
use crate::gen::{check_catalog, Example, Generator, Labels, Rng};
use crate::heads::{cross_entropy, save_committee, Dims, Dropout, Heads};
use crate::lexicon::Lexicon;

/// The trained model's directory under the models directory.
pub const HEADS_DIR: &str = "hearth-intent";
/// Its weights.
pub const HEADS_FILE: &str = "heads.safetensors";
/// Its description.
pub const META_FILE: &str = "meta.json";
/// Version of the format and of the training recipe: changing either
/// changes this, and so the inputs digest. (15: the same weights as 14
/// where 14's came out right, but on every CPU, [`crate::product`]; a
/// cache entry of 14 may hold weights of one CPU's caches. 17 (16 named a
/// recipe tried and not kept, docs/perf.md): requests to
/// undo a change, the catalog's `done` clauses in the language file's
/// requests to undo, learned as *none of them*. 18: requests to stop a
/// change, its opposite. 19: durations with no number of days, tagged and
/// refused.)
pub const RECIPE: &str = "hearth-intent-heads/19";

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Seed of the generator, the initial weights and dropout.
    pub seed: u64,
    /// Examples per playbook (three times as many for one with a pair of
    /// same-type parameters: [`crate::gen::examples_for`]).
    pub per_playbook: usize,
    /// Examples of "none of them".
    pub none: usize,
    /// Passes over the examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Dropout probability.
    pub dropout: f32,
    /// Members of the committee: member `k` with initial weights, dropout
    /// and order from seed `seed + k`, and (after the first) examples
    /// generated from seed [`member_data_seed`]. A plan is made only when
    /// every member reads the request the same way (decision 070).
    pub members: usize,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            seed: 20261203,
            per_playbook: 460,
            none: 1300,
            // Three members of ten passes each (recipe 14): a third
            // member, which every plan must also agree with, took the
            // harmful plans of two seeds from 1 and 6 to 1 and 0, in about
            // the time two members of fourteen passes took (decision 070).
            epochs: 10,
            batch: 32,
            lr: 2e-3,
            dropout: 0.1,
            members: 3,
        }
    }
}

/// The generator's seed for member `k`'s own examples (member 0 learns
/// from the examples of `seed` itself).
pub fn member_data_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_add(1000 * k as u64)
}

/// What `meta.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// [`RECIPE`].
    pub format: String,
    /// Sizes.
    pub dims: Dims,
    /// What the outputs mean.
    pub labels: Labels,
    /// The language file's content (number words and units are used at
    /// run time).
    pub lexicon: Lexicon,
    /// The recipe.
    pub recipe: Recipe,
    /// sha256 of everything training read: recipe, catalog, language file
    /// and encoder weights. Same inputs → same weights.
    pub inputs_sha256: String,
    /// sha256 of the weights file.
    pub weights_sha256: String,
    /// Examples generated.
    pub examples: usize,
    /// Each member's last epoch's mean loss.
    pub final_loss: Vec<f32>,
}

/// The digest of training's inputs.
pub fn inputs_digest(
    recipe: &Recipe,
    specs: &[PlaybookSpec],
    lex: &Lexicon,
    encoder_sha256: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(RECIPE.as_bytes());
    h.update(serde_json::to_vec(recipe).unwrap_or_default());
    // What training reads (`opposite` too: the requests to undo and to
    // stop are generated from the opposite's phrases), not the rules
    // between values (`differs_from`): checked when a plan is validated,
    // never learned.
    let view: Vec<PlaybookSpec> = specs
        .iter()
        .cloned()
        .map(|mut s| {
            for p in &mut s.params {
                p.differs_from = None;
            }
            s
        })
        .collect();
    h.update(serde_json::to_vec(&view).unwrap_or_default());
    h.update(serde_json::to_vec(lex).unwrap_or_default());
    h.update(encoder_sha256.as_bytes());
    hex::encode(h.finalize())
}

/// How much more a token inside a value counts in the tagging loss than
/// one outside every value.
const VALUE_WEIGHT: f32 = 4.0;

/// One example made ready for training.
struct Encoded {
    states: Vec<f32>,
    len: usize,
    tags: Vec<u32>,
    intent: u32,
    polarity: u32,
}

/// Token tags of an encoding from byte spans: the first token inside a
/// span begins its role, the following ones are inside it.
pub fn token_tags(
    offsets: &[(usize, usize)],
    special: &[u32],
    slots: &[(usize, usize, usize)],
) -> Vec<u32> {
    let mut tags = vec![0u32; offsets.len()];
    for &(a, b, role) in slots {
        let mut first = true;
        for (i, &(s, e)) in offsets.iter().enumerate() {
            if special.get(i) == Some(&1) || e <= s {
                continue;
            }
            if s >= a && e <= b {
                tags[i] = if first {
                    1 + 2 * role as u32
                } else {
                    2 + 2 * role as u32
                };
                first = false;
            }
        }
    }
    tags
}

/// Encodes the examples with the frozen encoder: chunks of examples of
/// similar length (little padding; padding is masked), the chunks shared
/// among the cores, the results put back in the examples' order. The
/// chunks depend only on the examples, so the same examples give the same
/// states.
fn encode_all(embedder: &Embedder, examples: &[Example]) -> Result<Vec<Encoded>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| (examples[i].text.len(), i));
    let chunks: Vec<&[usize]> = order.chunks(64).collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, chunks.len().max(1));
    let parts: Vec<Result<Vec<(usize, Encoded)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let chunks = &chunks;
                s.spawn(move || -> Result<Vec<(usize, Encoded)>> {
                    let mut out = Vec::new();
                    for chunk in chunks.iter().skip(k).step_by(threads) {
                        out.extend(encode_chunk(embedder, examples, chunk)?);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("an encoding thread panicked")))
            })
            .collect()
    });
    let mut slots: Vec<Option<Encoded>> = (0..examples.len()).map(|_| None).collect();
    for part in parts {
        for (i, e) in part? {
            slots[i] = Some(e);
        }
    }
    slots
        .into_iter()
        .map(|e| e.ok_or_else(|| anyhow::anyhow!("an example was not encoded")))
        .collect()
}

fn encode_chunk(
    embedder: &Embedder,
    examples: &[Example],
    chunk: &[usize],
) -> Result<Vec<(usize, Encoded)>> {
    let texts: Vec<&str> = chunk.iter().map(|&i| examples[i].text.as_str()).collect();
    let (hidden, _mask, encs) = embedder.token_states(&texts)?;
    let dim = hidden.dim(2)?;
    let mut out = Vec::with_capacity(chunk.len());
    for (row, (&i, enc)) in chunk.iter().zip(&encs).enumerate() {
        let ex = &examples[i];
        let len = enc.get_attention_mask().iter().filter(|&&m| m == 1).count();
        let states: Vec<f32> = hidden
            .get(row)?
            .narrow(0, 0, len)?
            .flatten_all()?
            .to_vec1()?;
        debug_assert_eq!(states.len(), len * dim);
        let tags = token_tags(
            &enc.get_offsets()[..len],
            &enc.get_special_tokens_mask()[..len],
            &ex.slots,
        );
        out.push((
            i,
            Encoded {
                states,
                len,
                tags,
                intent: ex.intent as u32,
                polarity: ex.polarity as u32,
            },
        ));
    }
    Ok(out)
}

/// Trains and returns the weights and their description. `log` gets one
/// line per epoch.
pub fn train(
    embedder: &Embedder,
    encoder_sha256: &str,
    specs: &[PlaybookSpec],
    lex: &Lexicon,
    recipe: &Recipe,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<u8>, Meta)> {
    check_catalog(specs).map_err(|e| anyhow::anyhow!("catalog: {e}"))?;
    anyhow::ensure!(recipe.members >= 1, "the recipe trains no member");
    let t0 = Instant::now();
    let mut gen = Generator::new(specs, lex, recipe.seed);
    let labels = gen.labels().clone();
    let examples = gen.generate(recipe.per_playbook, recipe.none);
    log(&format!(
        "{} examples generated ({} playbooks with templates, {} none) in {:.1} s",
        examples.len(),
        specs.iter().filter(|s| !s.language.is_empty()).count(),
        recipe.none,
        t0.elapsed().as_secs_f64()
    ));
    let t1 = Instant::now();
    let data = encode_all(embedder, &examples)?;
    log(&format!(
        "encoded with the frozen encoder in {:.1} s",
        t1.elapsed().as_secs_f64()
    ));
    let dims = Dims::for_labels(&labels);
    let mut members = Vec::with_capacity(recipe.members);
    let mut final_loss = Vec::with_capacity(recipe.members);
    for k in 0..recipe.members {
        let seed = recipe.seed.wrapping_add(k as u64);
        let mut log = |line: &str| log(&format!("member {}/{}: {line}", k + 1, recipe.members));
        // Every member after the first learns from examples of its own
        // (same templates, other fillers, wrappers and noise), so that the
        // members' mistakes depend less on one draw of the examples and
        // their agreement means more (decision 070).
        let own;
        let data = if k == 0 {
            &data
        } else {
            let mut gen = Generator::new(specs, lex, member_data_seed(recipe.seed, k));
            own = encode_all(embedder, &gen.generate(recipe.per_playbook, recipe.none))?;
            log(&format!("{} examples of its own encoded", own.len()));
            &own
        };
        let (heads, loss) = train_member(data, dims, recipe, seed, &mut log)?;
        members.push(heads);
        final_loss.push(loss);
    }
    let bytes = save_committee(&members)?;
    let meta = Meta {
        format: RECIPE.into(),
        dims,
        labels,
        lexicon: lex.clone(),
        recipe: *recipe,
        inputs_sha256: inputs_digest(recipe, specs, lex, encoder_sha256),
        weights_sha256: hex::encode(Sha256::digest(&bytes)),
        examples: data.len(),
        final_loss,
    };
    Ok((bytes, meta))
}

/// Trains one member of the committee on the encoded examples from
/// `seed`; returns its weights and its last epoch's mean loss.
fn train_member(
    data: &[Encoded],
    dims: Dims,
    recipe: &Recipe,
    seed: u64,
    log: &mut dyn FnMut(&str),
) -> Result<(Heads, f32)> {
    let device = Device::Cpu;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let heads = Heads::init(dims, &mut rng, &device)?;
    // As many batches as length_batches makes: windows of 16 batches.
    let steps_per_epoch: usize = (0..data.len())
        .step_by(recipe.batch * 16)
        .map(|w| {
            (data.len() - w)
                .min(recipe.batch * 16)
                .div_ceil(recipe.batch)
        })
        .sum();
    let total_steps = steps_per_epoch * recipe.epochs;
    let mut opt = AdamW::new(
        heads.vars(),
        ParamsAdamW {
            lr: recipe.lr,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut drop = Dropout {
        p: recipe.dropout,
        rng: Rng::new(seed ^ 0xd20),
    };
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut step = 0usize;
    let mut final_loss = 0.0;
    for epoch in 0..recipe.epochs {
        let t = Instant::now();
        // Fisher-Yates with the seeded generator.
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        let mut sum = 0.0f32;
        let batches = length_batches(&order, data, recipe.batch, &mut rng);
        for idx in &batches {
            let warm = (total_steps / 20).max(1);
            let lr = if step < warm {
                recipe.lr * (step + 1) as f64 / warm as f64
            } else {
                recipe.lr
                    * (1.0 - (step - warm) as f64 / (total_steps - warm).max(1) as f64).max(0.02)
            };
            opt.set_learning_rate(lr);
            let (grads, loss) = parallel_grads(&heads, data, idx, dims, &device, &mut drop)?;
            opt.step(&grads)?;
            sum += loss;
            step += 1;
        }
        final_loss = sum / batches.len().max(1) as f32;
        log(&format!(
            "epoch {}/{}: loss {:.4} ({:.1} s)",
            epoch + 1,
            recipe.epochs,
            final_loss,
            t.elapsed().as_secs_f64()
        ));
    }
    Ok((heads, final_loss))
}

/// The epoch's batches: the shuffled order cut into windows of 16
/// batches, each window sorted by length (so a batch pads little), the
/// batches then shuffled with the seeded generator.
fn length_batches(
    order: &[usize],
    data: &[Encoded],
    batch: usize,
    rng: &mut Rng,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for window in order.chunks(batch * 16) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| data[i].len);
        out.extend(w.chunks(batch).map(<[usize]>::to_vec));
    }
    for i in (1..out.len()).rev() {
        let j = rng.below(i + 1);
        out.swap(i, j);
    }
    out
}

/// The batch's gradients and loss, its two halves computed on two threads
/// (candle's CPU operations on these small tensors use about one core
/// each) and combined in a fixed order, each half with its own dropout
/// generator seeded from `drop`'s: the same seed gives the same weights.
fn parallel_grads(
    heads: &Heads,
    data: &[Encoded],
    idx: &[usize],
    dims: Dims,
    device: &Device,
    drop: &mut Dropout,
) -> Result<(candle_core::backprop::GradStore, f32)> {
    let mid = idx.len() / 2;
    let halves: Vec<&[usize]> = if mid == 0 {
        vec![idx]
    } else {
        vec![&idx[..mid], &idx[mid..]]
    };
    let seeds: Vec<u64> = halves.iter().map(|_| drop.rng.next_u64()).collect();
    let p = drop.p;
    let results: Vec<Result<(candle_core::backprop::GradStore, f32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .iter()
            .zip(&seeds)
            .map(|(half, &seed)| {
                s.spawn(move || -> Result<(candle_core::backprop::GradStore, f32)> {
                    let mut d = Dropout {
                        p,
                        rng: Rng::new(seed),
                    };
                    let loss = batch_loss(heads, data, half, dims, device, &mut d)?;
                    let value = loss.to_scalar::<f32>()?;
                    Ok((loss.backward()?, value))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a training thread panicked")))
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    let n = idx.len() as f64;
    let shares: Vec<f64> = halves.iter().map(|h| h.len() as f64 / n).collect();
    let mut it = parts.into_iter().zip(shares);
    let Some(((mut grads, first_loss), first_share)) = it.next() else {
        anyhow::bail!("empty batch");
    };
    let mut loss = first_loss * first_share as f32;
    let rest: Vec<_> = it.collect();
    for var in heads.vars() {
        let Some(g) = grads.remove(&var) else {
            continue;
        };
        let mut g = (g * first_share)?;
        for ((other, _), share) in &rest {
            if let Some(o) = other.get(&var) {
                g = (g + (o * *share)?)?;
            }
        }
        grads.insert(&var, g);
    }
    for ((_, l), share) in &rest {
        loss += l * *share as f32;
    }
    Ok((grads, loss))
}

fn batch_loss(
    heads: &Heads,
    data: &[Encoded],
    idx: &[usize],
    dims: Dims,
    device: &Device,
    drop: &mut Dropout,
) -> Result<Tensor> {
    let t = idx.iter().map(|&i| data[i].len).max().unwrap_or(1);
    let b = idx.len();
    let mut x = vec![0f32; b * t * dims.input];
    let mut mask = vec![0f32; b * t];
    let mut tags = vec![0u32; b * t];
    let mut intents = Vec::with_capacity(b);
    let mut pols = Vec::with_capacity(b);
    for (row, &i) in idx.iter().enumerate() {
        let e = &data[i];
        let base = row * t * dims.input;
        x[base..base + e.states.len()].copy_from_slice(&e.states);
        for k in 0..e.len {
            mask[row * t + k] = 1.0;
            tags[row * t + k] = e.tags[k];
        }
        intents.push(e.intent);
        pols.push(e.polarity);
    }
    let x = Tensor::from_vec(x, (b, t, dims.input), device)?;
    let mask_t = Tensor::from_vec(mask, (b, t), device)?;
    let out = heads.forward(&x, &mask_t, Some(drop))?;
    let ones = Tensor::ones(b, candle_core::DType::F32, device)?;
    let li = cross_entropy(&out.intent, &intents, &ones)?;
    let lp = cross_entropy(&out.polarity, &pols, &ones)?;
    // Value tokens weigh more than the many tokens outside every value:
    // telling "from" from "to" is what matters, and it is a few tokens.
    let weights: Vec<f32> = tags
        .iter()
        .zip(mask_t.reshape(b * t)?.to_vec1::<f32>()?)
        .map(|(&tag, m)| if tag == 0 { m } else { m * VALUE_WEIGHT })
        .collect();
    let lt = cross_entropy(
        &out.tags.reshape((b * t, dims.tags))?,
        &tags,
        &Tensor::from_vec(weights, b * t, device)?,
    )?;
    Ok(((li + lp)? + lt)?)
}

/// Reads the catalog directory and the language file, trains, and writes
/// `heads.safetensors` and `meta.json` atomically under
/// `models_dir/hearth-intent/` unless they are there already for the same
/// inputs (then nothing is trained; returns false). With `cache`, weights
/// trained before from the same inputs are taken from `cache/<inputs
/// sha256>/` (checked against their description's digests) instead of
/// training again, and weights trained here are kept there: training is
/// deterministic, so the same inputs give these same bytes.
pub fn train_into(
    models_dir: &Path,
    catalog_dir: &Path,
    lexicon_path: &Path,
    recipe: &Recipe,
    force: bool,
    cache: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<bool> {
    let specs = crate::specs::load_dir(catalog_dir)?;
    let lex = Lexicon::load(lexicon_path)?;
    let enc_dir = models_dir.join(crate::engine::EMBED_DIR);
    let weights_path = enc_dir.join("model.safetensors");
    let weights = std::fs::read(&weights_path)
        .with_context(|| format!("reading {}", weights_path.display()))?;
    let encoder_sha = hex::encode(Sha256::digest(&weights));
    let want = inputs_digest(recipe, &specs, &lex, &encoder_sha);
    let out_dir = models_dir.join(HEADS_DIR);
    if !force && trained_for(&out_dir, &want).is_some() {
        log(&format!("up to date: inputs {want} (nothing trained)"));
        return Ok(false);
    }
    let cached = cache.map(|c| c.join(&want));
    if !force {
        if let Some((bytes, meta)) = cached.as_deref().and_then(|d| trained_for(d, &want)) {
            write_model(&out_dir, &bytes, &meta)?;
            log(&format!(
                "taken from the cache {} (inputs {want}, weights {}; nothing trained)",
                cached.as_deref().unwrap_or(Path::new("")).display(),
                meta.weights_sha256
            ));
            return Ok(false);
        }
    }
    let embedder = Embedder::load(&enc_dir, weights, &Device::Cpu)?;
    let (bytes, meta) = train(&embedder, &encoder_sha, &specs, &lex, recipe, log)?;
    write_model(&out_dir, &bytes, &meta)?;
    log(&format!(
        "wrote {} (sha256 {}) and {}",
        out_dir.join(HEADS_FILE).display(),
        meta.weights_sha256,
        META_FILE
    ));
    if let Some(dir) = cached {
        // A cache that cannot be written costs the next run a training,
        // nothing else.
        match write_model(&dir, &bytes, &meta) {
            Ok(()) => log(&format!("kept in the cache {}", dir.display())),
            Err(e) => log(&format!("not kept in the cache: {e:#}")),
        }
    }
    Ok(true)
}

/// The weights and description in `dir` when they were trained from the
/// inputs `want` and the weights are those the description names.
fn trained_for(dir: &Path, want: &str) -> Option<(Vec<u8>, Meta)> {
    let text = std::fs::read_to_string(dir.join(META_FILE)).ok()?;
    let meta: Meta = serde_json::from_str(&text).ok()?;
    let bytes = std::fs::read(dir.join(HEADS_FILE)).ok()?;
    (meta.format == RECIPE
        && meta.inputs_sha256 == want
        && meta.weights_sha256 == hex::encode(Sha256::digest(&bytes)))
    .then_some((bytes, meta))
}

/// Writes the weights, then their description, each atomically.
fn write_model(dir: &Path, bytes: &[u8], meta: &Meta) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    hearth_common::fsutil::write_atomic(&dir.join(HEADS_FILE), bytes, 0o644)?;
    let text = serde_json::to_string_pretty(meta)?;
    hearth_common::fsutil::write_atomic(&dir.join(META_FILE), text.as_bytes(), 0o644)?;
    Ok(())
}

#[cfg(test)]
mod bench {
    use super::*;

    /// The shipped catalog, language file, encoder directory and weights.
    fn inputs() -> Result<(Vec<PlaybookSpec>, Lexicon, std::path::PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let specs = crate::specs::load_dir(&root.join("catalog"))?;
        let lex = Lexicon::load(&root.join("catalog/language/en.toml"))?;
        let enc_dir = root.join("models").join(crate::engine::EMBED_DIR);
        let weights = std::fs::read(enc_dir.join("model.safetensors"))?;
        Ok((specs, lex, enc_dir, weights))
    }

    /// One epoch of the heads' steps (forward, backward, AdamW; each
    /// batch's halves on two threads) over `data` in batches of `batch`:
    /// the steps and the seconds.
    fn heads_epoch(data: &[Encoded], dims: Dims, batch: usize) -> Result<(usize, f64)> {
        let mut rng = Rng::new(1);
        let heads = Heads::init(dims, &mut rng, &Device::Cpu)?;
        let mut opt = AdamW::new(heads.vars(), ParamsAdamW::default())?;
        let mut drop = Dropout {
            p: 0.1,
            rng: Rng::new(2),
        };
        let order: Vec<usize> = (0..data.len()).collect();
        let batches = length_batches(&order, data, batch, &mut rng);
        let t = Instant::now();
        for idx in &batches {
            let (grads, _) = parallel_grads(&heads, data, idx, dims, &Device::Cpu, &mut drop)?;
            opt.step(&grads)?;
        }
        Ok((batches.len(), t.elapsed().as_secs_f64()))
    }

    /// The training step's cost (docs/perf.md, "training in a third of the
    /// time"): 780 generated examples, batches of 32 and of 64, the shipped
    /// sizes.
    /// Run it with and without `RAYON_NUM_THREADS=1`:
    /// `cargo test -p hearth-inference --lib training_step -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark, not a test"]
    fn training_step() -> Result<()> {
        let (specs, lex, enc_dir, weights) = inputs()?;
        let embedder = Embedder::load(&enc_dir, weights, &Device::Cpu)?;
        let mut gen = Generator::new(&specs, &lex, Recipe::default().seed);
        let dims = Dims::for_labels(gen.labels());
        let examples = gen.generate(40, 100);
        let t = Instant::now();
        let data = encode_all(&embedder, &examples)?;
        eprintln!(
            "{} examples encoded in {:.1} s",
            data.len(),
            t.elapsed().as_secs_f64()
        );
        for batch in [32, 64] {
            let (steps, secs) = heads_epoch(&data, dims, batch)?;
            eprintln!(
                "batches of {batch}: {steps} steps, {:.1} ms a step, {:.2} ms an example",
                secs * 1e3 / steps.max(1) as f64,
                secs * 1e3 / data.len().max(1) as f64
            );
        }
        Ok(())
    }

    /// What fine-tuning the encoder would cost against the frozen encoder
    /// the recipe uses (decision 070, docs/perf.md): on the same
    /// length-sorted batches of 32, one thread, the time per example of
    /// the frozen forward pass, of a forward and backward pass with only
    /// the last encoder layer trainable, and with every encoder weight
    /// trainable; the heads' own step beside them; then what one member and
    /// the committee would take at the recipe's epochs, the two cores
    /// counted as twice one (an optimistic bound for the tracked
    /// variants). The backward pass starts from the sum of squares of what
    /// the heads read, which leaves out the heads' share of it: the
    /// fine-tuned figures are lower bounds.
    /// `RAYON_NUM_THREADS=1 cargo test --release -p hearth-inference --lib fine_tuning_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a benchmark, not a test"]
    fn fine_tuning_cost() -> Result<()> {
        let (specs, lex, enc_dir, weights) = inputs()?;
        let recipe = Recipe::default();
        let mut gen = Generator::new(&specs, &lex, recipe.seed);
        let dims = Dims::for_labels(gen.labels());
        let per_member = gen.generate(recipe.per_playbook, recipe.none).len();
        let examples = gen.generate(40, 100);
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.sort_by_key(|&i| (examples[i].text.len(), i));
        let chunks: Vec<Vec<&str>> = order
            .chunks(32)
            .map(|c| c.iter().map(|&i| examples[i].text.as_str()).collect())
            .collect();
        let n = examples.len() as f64;
        // Milliseconds per example, one thread, for an encoder whose
        // weights `tracked` accepts are trainable.
        let per_example = |tracked: &dyn Fn(&str) -> bool| -> Result<f64> {
            let (embedder, vars) = Embedder::load_tracked(&enc_dir, &weights, tracked)?;
            let t = Instant::now();
            for texts in &chunks {
                let (states, _, _) = embedder.token_states(texts)?;
                if !vars.is_empty() {
                    let grads = states.sqr()?.sum_all()?.backward()?;
                    let reached = vars.iter().filter(|v| grads.get(v).is_some()).count();
                    anyhow::ensure!(
                        reached == vars.len(),
                        "a gradient reached {reached} of {} trainable weights",
                        vars.len()
                    );
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / n)
        };
        let frozen = per_example(&|_| false)?;
        let last = per_example(&|name| name.starts_with("encoder.layer.5."))?;
        // Every weight on the way to the token states (the pooler and the
        // position ids are not).
        let all =
            per_example(&|name| !name.starts_with("pooler.") && name != "embeddings.position_ids")?;
        // The heads' step (forward, backward, AdamW) on the frozen states.
        let data = encode_all(
            &Embedder::load(&enc_dir, weights.clone(), &Device::Cpu)?,
            &examples,
        )?;
        let (_, secs) = heads_epoch(&data, dims, 32)?;
        // The heads' steps use both cores: counted as one thread's time.
        let step = secs * 1e3 * 2.0 / n;
        let (epochs, members) = (recipe.epochs as f64, recipe.members as f64);
        // Seconds for one member on two cores: the encoder's share once
        // (`once`, ms an example) and every epoch (`every`), and the heads
        // every epoch.
        let member = |once: f64, every: f64| {
            (once + (every + step) * epochs) * per_member as f64 / 1e3 / 2.0
        };
        eprintln!(
            "{} examples timed; {per_member} a member, {epochs} epochs, {members} members",
            examples.len()
        );
        eprintln!("| encoder | ms an example (one thread): once, every epoch | one member, s | the committee, min |");
        eprintln!("|---|---|---|---|");
        // The last layer trained with the first five layers' states kept
        // from one frozen pass: every epoch then pays the last layer's
        // forward and backward only, estimated as the last-layer run less
        // five sixths of the frozen pass (the layers are the same size).
        let kept = frozen * 5.0 / 6.0;
        for (what, once, every) in [
            ("frozen (the recipe)", frozen, 0.0),
            ("last layer trained", 0.0, last),
            (
                "last layer trained, the others' states kept (estimate)",
                kept,
                last - kept,
            ),
            ("every weight trained", 0.0, all),
        ] {
            let s = member(once, every);
            eprintln!(
                "| {what} | {once:.2}, {every:.2} | {s:.0} | {:.1} |",
                s * members / 60.0
            );
        }
        eprintln!("heads' step: {step:.2} ms an example (one thread)");
        Ok(())
    }
}

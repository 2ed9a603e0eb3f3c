//! The interpreter's trained part: on top of all-MiniLM-L6-v2's token
//! states (frozen), small transformer blocks and three heads, trained
//! jointly with candle (once per member of the engine's committee, each
//! from its own seed):
//! - the playbook, or none of them (from the pooled block output);
//! - the request's polarity: do it, do NOT do it, only asks about it;
//! - a tag per token marking each parameter's span and role (BIO).
//!
//! Weights are initialised from a seeded generator and dropout masks come
//! from it too, so the same inputs and seed give the same weights, byte for
//! byte ([`Trained::digest`]).

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};

use crate::gen::{Labels, Rng};
use crate::product::product;

/// Sizes of the block and heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims {
    /// What the encoder gives per token ([`crate::embed::FEATURES`]).
    pub input: usize,
    /// The block's width.
    pub model: usize,
    /// Attention heads.
    pub heads: usize,
    /// Transformer blocks.
    pub blocks: usize,
    /// Feed-forward width.
    pub ff: usize,
    /// Playbooks + none.
    pub intents: usize,
    /// Polarity classes.
    pub polarities: usize,
    /// Token tags.
    pub tags: usize,
}

impl Dims {
    /// The sizes for a label set.
    pub fn for_labels(labels: &Labels) -> Dims {
        Dims {
            input: crate::embed::FEATURES,
            model: 128,
            heads: 4,
            blocks: 2,
            ff: 256,
            intents: labels.intents.len(),
            polarities: crate::gen::POLARITIES,
            tags: labels.n_tags(),
        }
    }

    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (i, m, f) = (self.input, self.model, self.ff);
        let mut out: Vec<(String, Vec<usize>)> = vec![
            ("in.w".into(), vec![i, m]),
            ("in.b".into(), vec![m]),
            ("ln0.g".into(), vec![m]),
            ("ln0.b".into(), vec![m]),
        ];
        for b in 0..self.blocks {
            for (name, shape) in [
                ("qkv.w", vec![m, 3 * m]),
                ("qkv.b", vec![3 * m]),
                ("o.w", vec![m, m]),
                ("o.b", vec![m]),
                ("ln1.g", vec![m]),
                ("ln1.b", vec![m]),
                ("ff1.w", vec![m, f]),
                ("ff1.b", vec![f]),
                ("ff2.w", vec![f, m]),
                ("ff2.b", vec![m]),
                ("ln2.g", vec![m]),
                ("ln2.b", vec![m]),
            ] {
                out.push((format!("b{b}.{name}"), shape));
            }
        }
        out.extend([
            ("intent.w".into(), vec![2 * m, self.intents]),
            ("intent.b".into(), vec![self.intents]),
            ("polarity.w".into(), vec![2 * m, self.polarities]),
            ("polarity.b".into(), vec![self.polarities]),
            ("tag.w".into(), vec![m, self.tags]),
            ("tag.b".into(), vec![self.tags]),
        ]);
        out
    }
}

/// The block and heads' weights.
pub struct Heads {
    dims: Dims,
    vars: HashMap<String, Var>,
}

/// What the heads say about a batch.
pub struct Output {
    /// [B, intents] logits.
    pub intent: Tensor,
    /// [B, polarities] logits.
    pub polarity: Tensor,
    /// [B, T, tags] logits.
    pub tags: Tensor,
}

fn layer_norm(x: &Tensor, g: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims[dims.len() - 1];
    let x = x.reshape((x.elem_count() / n, n))?;
    let mean = (x.sum_keepdim(D::Minus1)? / n as f64)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / n as f64)?;
    let y = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
    let rows = y.dim(0)?;
    Ok(((y * per_row(g, rows)?)? + per_row(b, rows)?)?.reshape(dims)?)
}

/// `v` [n] repeated on `rows` rows, [rows, n], as the product of a column
/// of ones and `v`: the same values as a broadcast, but its gradient is a
/// matrix product too, where candle sums a broadcast's gradient over the
/// leading dimensions one element at a time (a quarter of a training
/// step's time before; docs/perf.md).
fn per_row(v: &Tensor, rows: usize) -> Result<Tensor> {
    let n = v.elem_count();
    let ones = Tensor::ones((rows, 1), v.dtype(), v.device())?;
    product(&ones, &v.reshape((1, n))?)
}

fn dense(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (rows, k) = (
        dims[..dims.len() - 1].iter().product::<usize>(),
        dims[dims.len() - 1],
    );
    let y = (product(&x.reshape((rows, k))?, w)? + per_row(b, rows)?)?;
    let mut out = dims.clone();
    let last = out.len() - 1;
    out[last] = w.dim(1)?;
    Ok(y.reshape(out)?)
}

impl Heads {
    /// Fresh weights from a seeded generator.
    pub fn init(dims: Dims, rng: &mut Rng, device: &Device) -> Result<Heads> {
        let mut vars = HashMap::new();
        for (name, shape) in dims.shapes() {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with(".g") {
                vec![1.0; n]
            } else if name.ends_with(".b") {
                vec![0.0; n]
            } else {
                let scale = (1.0 / shape[0] as f32).sqrt();
                (0..n).map(|_| rng.normal() * scale).collect()
            };
            let t = Tensor::from_vec(data, shape, device)?;
            vars.insert(name, Var::from_tensor(&t)?);
        }
        Ok(Heads { dims, vars })
    }

    /// Loads the members of a committee saved by [`save_committee`]:
    /// member `k`'s weights are named `m{k}.` followed by the weight's name.
    pub fn load_committee(
        dims: Dims,
        members: usize,
        bytes: &[u8],
        device: &Device,
    ) -> Result<Vec<Heads>> {
        anyhow::ensure!(members >= 1, "a committee of no heads");
        let tensors = candle_core::safetensors::load_buffer(bytes, device)?;
        let expected = members * dims.shapes().len();
        anyhow::ensure!(
            tensors.len() == expected,
            "the interpreter's weights hold {} tensors, {members} members need {expected}",
            tensors.len()
        );
        (0..members)
            .map(|k| {
                let mut vars = HashMap::new();
                for (name, shape) in dims.shapes() {
                    let key = format!("m{k}.{name}");
                    let t = tensors
                        .get(&key)
                        .with_context(|| format!("the interpreter's weights lack {key}"))?;
                    anyhow::ensure!(
                        t.dims() == shape.as_slice(),
                        "the interpreter's weight {key} has shape {:?}, expected {shape:?}",
                        t.dims()
                    );
                    vars.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
                }
                Ok(Heads { dims, vars })
            })
            .collect()
    }

    /// The sizes.
    pub fn dims(&self) -> Dims {
        self.dims
    }

    fn w(&self, name: &str) -> &Tensor {
        self.vars[name].as_tensor()
    }

    /// Every trainable variable.
    pub fn vars(&self) -> Vec<Var> {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        names.into_iter().map(|n| self.vars[n].clone()).collect()
    }

    /// Runs the block and heads over encoder states `x` [B, T, input] with
    /// `mask` [B, T] (1 for tokens, 0 for padding). `drop` gives dropout
    /// masks when training.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, drop: Option<&mut Dropout>) -> Result<Output> {
        let (b, t, _) = x.dims3()?;
        let m = self.dims.model;
        let h = self.dims.heads;
        let dh = m / h;
        let mut drop = drop;
        let x = dense(x, self.w("in.w"), self.w("in.b"))?;
        // Fixed sinusoidal positions: roles depend on word order, which the
        // frozen encoder's last layer carries only faintly.
        let x = x.broadcast_add(&positions(t, m, x.device())?)?;
        let mut x = layer_norm(&x, self.w("ln0.g"), self.w("ln0.b"))?;
        if let Some(d) = drop.as_deref_mut() {
            x = d.apply(&x)?;
        }
        // Padding gets a large negative attention score.
        let bias = ((mask.reshape((b, 1, 1, t))? - 1.0)? * 1e4)?;
        for blk in 0..self.dims.blocks {
            let w = |n: &str| self.w(&format!("b{blk}.{n}")).clone();
            let qkv = dense(&x, &w("qkv.w"), &w("qkv.b"))?;
            let split = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(D::Minus1, i * m, m)?
                    .reshape((b, t, h, dh))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let scores = (product(&q, &k.t()?.contiguous()?)? / (dh as f64).sqrt())?;
            let att = candle_nn::ops::softmax(&scores.broadcast_add(&bias)?, D::Minus1)?;
            let ctx = product(&att, &v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, m))?;
            let a = dense(&ctx, &w("o.w"), &w("o.b"))?;
            x = layer_norm(&(x + a)?, &w("ln1.g"), &w("ln1.b"))?;
            let f = dense(&x, &w("ff1.w"), &w("ff1.b"))?.gelu_erf()?;
            let f = dense(&f, &w("ff2.w"), &w("ff2.b"))?;
            x = layer_norm(&(x + f)?, &w("ln2.g"), &w("ln2.b"))?;
        }
        if let Some(d) = drop {
            x = d.apply(&x)?;
        }
        // Pooled: the first token ([CLS]) and the mean over real tokens.
        // (The masked sum over tokens as a product, [B, 1, T] × [B, T, M]:
        // a sum over the middle dimension is slow in candle.)
        let mean = product(&mask.unsqueeze(1)?, &x)?
            .squeeze(1)?
            .broadcast_div(&mask.sum_keepdim(1)?.clamp(1.0, f64::MAX)?)?;
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = Tensor::cat(&[&cls, &mean], 1)?;
        Ok(Output {
            intent: dense(&pooled, self.w("intent.w"), self.w("intent.b"))?,
            polarity: dense(&pooled, self.w("polarity.w"), self.w("polarity.b"))?,
            tags: dense(&x, self.w("tag.w"), self.w("tag.b"))?,
        })
    }
}

/// The members' weights as one safetensors file, read back by
/// [`Heads::load_committee`].
pub fn save_committee(members: &[Heads]) -> Result<Vec<u8>> {
    let map: HashMap<String, Tensor> = members
        .iter()
        .enumerate()
        .flat_map(|(k, h)| {
            h.vars
                .iter()
                .map(move |(name, v)| (format!("m{k}.{name}"), v.as_tensor().clone()))
        })
        .collect();
    let dir = tempdir_for_save()?;
    let path = dir.join("heads.safetensors");
    candle_core::safetensors::save(&map, &path)?;
    let bytes = std::fs::read(&path)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(bytes)
}

/// Sinusoidal position encodings, [t, m].
fn positions(t: usize, m: usize, device: &Device) -> Result<Tensor> {
    let mut data = vec![0f32; t * m];
    for pos in 0..t {
        for i in 0..m / 2 {
            let angle = pos as f32 / 10000f32.powf(2.0 * i as f32 / m as f32);
            data[pos * m + 2 * i] = angle.sin();
            data[pos * m + 2 * i + 1] = angle.cos();
        }
    }
    Ok(Tensor::from_vec(data, (t, m), device)?)
}

fn tempdir_for_save() -> Result<std::path::PathBuf> {
    let mut rng_bytes = [0u8; 8];
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ std::process::id() as u64;
    rng_bytes.copy_from_slice(&Rng::new(seed).next_u64().to_le_bytes());
    let dir = std::env::temp_dir().join(format!("hearth-heads-{}", hex::encode(rng_bytes)));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Dropout whose masks come from the seeded generator.
pub struct Dropout {
    /// Probability of dropping a unit.
    pub p: f32,
    /// The generator.
    pub rng: Rng,
}

impl Dropout {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = x.elem_count();
        let keep = 1.0 - self.p;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                if (self.rng.unit() as f32) < self.p {
                    0.0
                } else {
                    1.0 / keep
                }
            })
            .collect();
        let m = Tensor::from_vec(data, x.dims(), x.device())?;
        Ok((x * m)?)
    }
}

/// Mean cross-entropy of `logits` [N, C] against `targets` (class indices),
/// each row weighted by `weights` [N] (0 for padding).
pub fn cross_entropy(logits: &Tensor, targets: &[u32], weights: &Tensor) -> Result<Tensor> {
    let n = targets.len();
    let lsm = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let idx = Tensor::from_vec(targets.to_vec(), (n, 1), logits.device())?;
    let picked = lsm.gather(&idx, 1)?.squeeze(1)?;
    let total = weights.sum_all()?.to_scalar::<f32>()?.max(1.0);
    Ok(((picked * weights)?.sum_all()? / (-(total as f64)))?)
}

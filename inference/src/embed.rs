//! all-MiniLM-L6-v2 (BERT) as the interpreter's frozen encoder: for every
//! token of a request, the hidden states after the layers
//! [`ENCODER_LAYERS`] names, side by side.
//!
//! The forward pass is written here rather than taken from
//! candle-transformers because that one returns only the last layer: a
//! sentence-embedding model's last layer is tuned to make paraphrases
//! alike, and carries word order and word identity only faintly, which is
//! what roles and names are read from (decision 070). A test checks that
//! the last layer here equals candle-transformers' `BertModel`.
//!
//! The shipped `tokenizer.json` pads every input to 128 tokens, which makes a
//! single query four times slower; padding is switched off for single inputs
//! and set to the longest input of a batch.

use std::path::Path;

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::product::product;

/// The encoder layers whose outputs the heads read, concatenated per token
/// (0 is the embeddings, 6 the last layer). Part of the training recipe:
/// changing it changes [`crate::train::RECIPE`].
pub const ENCODER_LAYERS: &[usize] = &[2, 4, 6];

/// What the heads read per token: the encoder's width times the layers.
pub const FEATURES: usize = 384 * ENCODER_LAYERS.len();

/// A dense layer `x Wᵀ + b` through [`product`], so the states are the
/// same bits on every CPU (candle's `Linear` would give gemm the feed-
/// forward's inner dimension of 1536 whole: [`crate::product`]).
struct Dense {
    /// `[out, in]`, as stored.
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Dense> {
        Ok(Dense {
            weight: vb.get((outputs, inputs), "weight")?,
            bias: vb.get(outputs, "bias")?,
        })
    }

    /// `x` `[B, T, in]` → `[B, T, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, i) = x.dims3()?;
        let y = product(&x.reshape((b * t, i))?, &self.weight.t()?)?.broadcast_add(&self.bias)?;
        Ok(y.reshape((b, t, self.weight.dim(0)?))?)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    up: Dense,
    down: Dense,
    out_norm: LayerNorm,
}

struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    /// Gradients flow through the layer norms and the softmax (candle's
    /// fast kernels for them have no backward pass): only for measuring
    /// fine-tuning ([`Embedder::load_tracked`]).
    trainable: bool,
    eps: f32,
}

impl Bert {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Bert> {
        anyhow::ensure!(
            matches!(cfg.hidden_act, HiddenAct::Gelu),
            "the encoder's activation {:?} is not gelu (erf)",
            cfg.hidden_act
        );
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let e = vb.pp("embeddings");
        let norm = |vb: VarBuilder| candle_nn::layer_norm(h, eps, vb);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| -> Result<Layer> {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention");
                Ok(Layer {
                    query: Dense::load(h, h, a.pp("self.query"))?,
                    key: Dense::load(h, h, a.pp("self.key"))?,
                    value: Dense::load(h, h, a.pp("self.value"))?,
                    attn_out: Dense::load(h, h, a.pp("output.dense"))?,
                    attn_norm: norm(a.pp("output.LayerNorm"))?,
                    up: Dense::load(h, f, l.pp("intermediate.dense"))?,
                    down: Dense::load(f, h, l.pp("output.dense"))?,
                    out_norm: norm(l.pp("output.LayerNorm"))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Bert {
            words: candle_nn::embedding(cfg.vocab_size, h, e.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                cfg.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?,
            types: candle_nn::embedding(cfg.type_vocab_size, h, e.pp("token_type_embeddings"))?,
            norm: norm(e.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            trainable: false,
            eps: eps as f32,
        })
    }

    fn normed(&self, n: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        match (self.trainable, n.bias()) {
            (true, Some(b)) => Ok(candle_nn::ops::layer_norm_slow(x, n.weight(), b, self.eps)?),
            _ => Ok(n.forward(x)?),
        }
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        if self.trainable {
            Ok(candle_nn::ops::softmax(x, D::Minus1)?)
        } else {
            Ok(candle_nn::ops::softmax_last_dim(x)?)
        }
    }

    /// Every layer's output, the embeddings first: `[B, T, H]` each.
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let (b, t) = ids.dims2()?;
        let pos = Tensor::arange(0u32, t as u32, ids.device())?.unsqueeze(0)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&pos)?)?
            .broadcast_add(&self.types.forward(&ids.zeros_like()?)?)?;
        let mut x = self.normed(&self.norm, &x)?;
        let hsz = x.dim(2)?;
        let dh = hsz / self.heads;
        // Padding gets the most negative score, as in the reference model.
        let bias =
            ((mask.to_dtype(DType::F32)?.reshape((b, 1, 1, t))? - 1.0)? * -(f32::MIN as f64))?;
        let mut out = vec![x.clone()];
        for l in &self.layers {
            let split = |y: Tensor| -> Result<Tensor> {
                Ok(y.reshape((b, t, self.heads, dh))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = (product(&q, &k.t()?)? / (dh as f64).sqrt())?.broadcast_add(&bias)?;
            let att = self.softmax(&scores)?;
            let ctx = product(&att, &v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, hsz))?;
            let a = self.normed(&l.attn_norm, &(l.attn_out.forward(&ctx)? + &x)?)?;
            let f = l.down.forward(&l.up.forward(&a)?.gelu_erf()?)?;
            x = self.normed(&l.out_norm, &(f + &a)?)?;
            out.push(x.clone());
        }
        Ok(out)
    }
}

/// The embedding model and its tokenizer.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
}

impl Embedder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from
    /// `dir`; `weights` is the already read (and digested) safetensors file.
    pub fn load(dir: &Path, weights: Vec<u8>, device: &Device) -> Result<Self> {
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)?;
        Self::load_from(dir, vb, device)
    }

    /// As [`Embedder::load`] on the CPU, but the weights whose names
    /// `tracked` accepts are trainable: gradients reach them (returned).
    /// Only for measuring what fine-tuning the encoder would cost (the
    /// `fine_tuning_cost` benchmark in `train.rs`, docs/perf.md); the
    /// interpreter's encoder is frozen.
    pub fn load_tracked(
        dir: &Path,
        weights: &[u8],
        tracked: &dyn Fn(&str) -> bool,
    ) -> Result<(Self, Vec<Var>)> {
        let device = Device::Cpu;
        let mut vars = Vec::new();
        let mut tensors = std::collections::HashMap::new();
        for (name, t) in candle_core::safetensors::load_buffer(weights, &device)? {
            let t = t.to_dtype(DType::F32)?;
            let t = if tracked(&name) {
                let v = Var::from_tensor(&t)?;
                let t = v.as_tensor().clone();
                vars.push(v);
                t
            } else {
                t
            };
            tensors.insert(name, t);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let mut embedder = Self::load_from(dir, vb, &device)?;
        embedder.model.trainable = !vars.is_empty();
        Ok((embedder, vars))
    }

    fn load_from(dir: &Path, vb: VarBuilder, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let config: Config = serde_json::from_slice(
            &std::fs::read(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?,
        )
        .with_context(|| format!("parsing {}", cfg_path.display()))?;
        anyhow::ensure!(
            config.hidden_size * ENCODER_LAYERS.len() == FEATURES
                && ENCODER_LAYERS
                    .iter()
                    .all(|&l| l <= config.num_hidden_layers),
            "{} does not describe all-MiniLM-L6-v2 (width 384, 6 layers)",
            cfg_path.display()
        );
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", tok_path.display()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: 256,
                ..Default::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;
        let model = Bert::load(vb, &config).context("loading all-MiniLM-L6-v2")?;
        Ok(Embedder {
            model,
            tokenizer,
            device: device.clone(),
        })
    }

    fn encode(&self, texts: &[&str]) -> Result<(Vec<Tensor>, Tensor, Vec<tokenizers::Encoding>)> {
        anyhow::ensure!(!texts.is_empty(), "no text to encode");
        let mut tk = self.tokenizer.clone();
        if texts.len() > 1 {
            tk.with_padding(Some(PaddingParams {
                strategy: PaddingStrategy::BatchLongest,
                ..Default::default()
            }));
        }
        let enc = tk
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("embedding tokenizer: {e}"))?;
        let ids: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let mask: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&mask, 0)?.to_dtype(DType::F32)?;
        let layers = self.model.forward(&ids, &mask)?;
        Ok((layers, mask, enc))
    }

    /// How many tokens the encoder reads for `text` (its special tokens
    /// included).
    pub fn token_count(&self, text: &str) -> Result<usize> {
        Ok(self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("embedding tokenizer: {e}"))?
            .get_ids()
            .len())
    }

    /// What the heads read for a batch, padded to the longest: the outputs
    /// of [`ENCODER_LAYERS`] side by side, `[B, T, FEATURES]`; the
    /// attention mask `[B, T]` (f32, 1 for tokens) and each text's encoding
    /// (token ids and byte offsets into the text).
    pub fn token_states(
        &self,
        texts: &[&str],
    ) -> Result<(Tensor, Tensor, Vec<tokenizers::Encoding>)> {
        let (layers, mask, enc) = self.encode(texts)?;
        let picked: Vec<&Tensor> = ENCODER_LAYERS.iter().map(|&l| &layers[l]).collect();
        Ok((Tensor::cat(&picked, D::Minus1)?, mask, enc))
    }

    /// The last layer's states, `[B, T, 384]` (compared with the reference
    /// implementation in the test).
    #[cfg(test)]
    fn last_layer(&self, texts: &[&str]) -> Result<Tensor> {
        let (mut layers, _, _) = self.encode(texts)?;
        layers.pop().context("the encoder has no layers")
    }

    /// The device the encoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward pass here gives the reference implementation's last
    /// layer, padding included.
    #[test]
    fn last_layer_matches_candle_transformers() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        let Ok(weights) = std::fs::read(dir.join("model.safetensors")) else {
            eprintln!("models/ not set up (scripts/setup): skipped");
            return Ok(());
        };
        let ours = Embedder::load(&dir, weights.clone(), &Device::Cpu)?;
        let texts = [
            "allow bravo to reach charlie on port 22",
            "show the network",
        ];
        let mine = ours.last_layer(&texts)?;
        let (_, mask, enc) = ours.encode(&texts)?;
        let cfg: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)?;
        let reference = candle_transformers::models::bert::BertModel::load(vb, &cfg)?;
        let ids = Tensor::stack(
            &enc.iter()
                .map(|e| Tensor::new(e.get_ids(), &Device::Cpu))
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?;
        let theirs = reference.forward(&ids, &ids.zeros_like()?, Some(&mask))?;
        // Compare real tokens only.
        let diff = ((mine - theirs)?.abs()?.broadcast_mul(&mask.unsqueeze(2)?)?)
            .max_keepdim(2)?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "largest difference {diff}");
        let (features, _, _) = ours.token_states(&texts)?;
        assert_eq!(features.dim(2)?, FEATURES);
        Ok(())
    }
}

//! all-MiniLM-L6-v2 (BERT) as the interpreter's frozen encoder: its last
//! hidden state for every token of a request.
//!
//! The shipped `tokenizer.json` pads every input to 128 tokens, which makes a
//! single query four times slower; padding is switched off for single inputs
//! and set to the longest input of a batch.

use std::path::Path;

use anyhow::{Context as _, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The embedding model and its tokenizer.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl Embedder {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from
    /// `dir`; `weights` is the already read (and digested) safetensors file.
    pub fn load(dir: &Path, weights: Vec<u8>, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let config: Config = serde_json::from_slice(
            &std::fs::read(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?,
        )
        .with_context(|| format!("parsing {}", cfg_path.display()))?;
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
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, device)?;
        let model = BertModel::load(vb, &config).context("loading all-MiniLM-L6-v2")?;
        Ok(Embedder {
            model,
            tokenizer,
            device: device.clone(),
        })
    }

    /// The encoder's last hidden states for a batch, padded to the longest:
    /// `[B, T, 384]`, the attention mask `[B, T]` (f32, 1 for tokens) and
    /// each text's encoding (token ids and byte offsets into the text).
    pub fn token_states(
        &self,
        texts: &[&str],
    ) -> Result<(Tensor, Tensor, Vec<tokenizers::Encoding>)> {
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
        let mask = Tensor::stack(&mask, 0)?;
        let types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        Ok((hidden, mask.to_dtype(DType::F32)?, enc))
    }

    /// The device the encoder runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

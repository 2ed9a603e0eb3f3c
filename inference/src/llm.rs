//! The instruct model (any llama-family GGUF) under constrained decoding.
//!
//! The model never writes free text: [`Session::choose`] walks a trie of the
//! allowed continuations (token sequences), forwards the model only where the
//! trie branches, and masks every other token. Tokens forced by the trie are
//! fed in the same forward as the next branch. The key-value cache of the
//! fixed prompt prefix is computed once ([`Llm::set_prefix`]) and each request
//! starts from a cheap clone of it (the cached tensors are shared, not copied).

use std::io::Cursor;

use anyhow::{bail, Context as _, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;

use crate::tokenizer::GgufTokenizer;

/// The quantization the weights are converted to at load on the CPU.
/// candle has AVX2 dot products for Q4_0 and Q8_0 but not for Q4_1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requant {
    /// Keep the file's types.
    Keep,
    /// Convert Q4_1/Q5_x tensors to Q8_0 (lossless for Q4_1 up to rounding).
    Q8_0,
    /// Convert them to Q4_0 (smaller, loses precision).
    Q4_0,
}

impl Requant {
    /// From `HEARTH_LLM_QUANT` (`keep`, `q8_0`, `q4_0`); Q8_0 by default.
    pub fn from_env() -> Requant {
        match std::env::var("HEARTH_LLM_QUANT").as_deref() {
            Ok("keep") => Requant::Keep,
            Ok("q4_0") => Requant::Q4_0,
            _ => Requant::Q8_0,
        }
    }
}

/// Counters of the model's work, for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    /// Tokens fed in forwards of more than one token.
    pub prompt_tokens: usize,
    /// Forwards made.
    pub forwards: usize,
    /// Tokens fed in single-token forwards.
    pub single_tokens: usize,
}

/// The loaded instruct model with its tokenizer and cached prefix.
pub struct Llm {
    /// The weights, built (and re-quantized) at first need: the GGUF's
    /// header and tokenizer are read at load, its tensors later, off the
    /// start-up path.
    base: std::sync::OnceLock<ModelWeights>,
    pending: std::sync::Mutex<Option<Pending>>,
    /// The fixed prompt prefix, and once computed (at the first request
    /// that needs the model, or [`Llm::warm`]) the model holding its
    /// key-value cache, which every session continues.
    prefix: Vec<u32>,
    cached: std::sync::Mutex<Option<ModelWeights>>,
    /// The model's tokenizer, built from the GGUF metadata.
    pub tok: GgufTokenizer,
    device: Device,
}

/// A GGUF read but not yet turned into weights.
struct Pending {
    content: gguf_file::Content,
    bytes: Vec<u8>,
    target: Option<GgmlDType>,
}

impl Pending {
    fn build(self, device: &Device) -> Result<ModelWeights> {
        Ok(match self.target {
            Some(t) => {
                let (ct2, data) = requantize(&self.content, &self.bytes, t)?;
                drop(self.bytes);
                ModelWeights::from_gguf(ct2, &mut Cursor::new(data), device)?
            }
            None => ModelWeights::from_gguf(self.content, &mut Cursor::new(self.bytes), device)?,
        })
    }
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("prefix_len", &self.prefix.len())
            .finish()
    }
}

fn requantize(
    ct: &gguf_file::Content,
    bytes: &[u8],
    target: GgmlDType,
) -> Result<(gguf_file::Content, Vec<u8>)> {
    let mut reader = Cursor::new(bytes);
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    let mut data = Vec::new();
    let mut infos = std::collections::HashMap::new();
    for name in names {
        let info = &ct.tensor_infos[name];
        let qt = ct.tensor(&mut reader, name, &Device::Cpu)?;
        let convert = matches!(
            info.ggml_dtype,
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
        ) && info.shape.dims().last().is_some_and(|d| d % 32 == 0);
        let qt = if convert {
            QTensor::quantize(&qt.dequantize(&Device::Cpu)?, target)?
        } else {
            qt
        };
        while data.len() % 32 != 0 {
            data.push(0);
        }
        let offset = data.len() as u64;
        data.extend_from_slice(&qt.data()?);
        infos.insert(
            name.clone(),
            gguf_file::TensorInfo {
                ggml_dtype: qt.dtype(),
                shape: info.shape.clone(),
                offset,
            },
        );
    }
    let content = gguf_file::Content {
        magic: ct.magic,
        metadata: ct.metadata.clone(),
        tensor_infos: infos,
        tensor_data_offset: 0,
    };
    Ok((content, data))
}

impl Llm {
    /// Loads the GGUF file's bytes on `device`, converting the weights to a
    /// type with fast CPU kernels when `requant` asks for it.
    pub fn load(bytes: Vec<u8>, device: &Device, requant: Requant) -> Result<Self> {
        let mut reader = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut reader).context("reading the GGUF header")?;
        let tok = GgufTokenizer::from_gguf(&ct)?;
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if arch != "llama" {
            bail!("the instruct model must be a llama-family GGUF, this one is {arch:?}");
        }
        let target = match requant {
            Requant::Q8_0 if device.is_cpu() => Some(GgmlDType::Q8_0),
            Requant::Q4_0 if device.is_cpu() => Some(GgmlDType::Q4_0),
            _ => None,
        };
        let bytes = reader.into_inner();
        Ok(Llm {
            base: std::sync::OnceLock::new(),
            pending: std::sync::Mutex::new(Some(Pending {
                content: ct,
                bytes,
                target,
            })),
            prefix: Vec::new(),
            cached: std::sync::Mutex::new(None),
            tok,
            device: device.clone(),
        })
    }

    /// Sets the fixed prompt prefix; its key-value cache is computed when
    /// first needed.
    pub fn set_prefix(&mut self, ids: &[u32]) {
        self.prefix = ids.to_vec();
        *self.cached.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Length of the prefix in tokens.
    pub fn prefix_len(&self) -> usize {
        self.prefix.len()
    }

    /// The weights, built now if not yet.
    pub fn weights(&self) -> Result<&ModelWeights> {
        if let Some(w) = self.base.get() {
            return Ok(w);
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = self.base.get() {
            return Ok(w);
        }
        let p = pending
            .take()
            .context("the instruct model's weights failed to load earlier")?;
        let w = p
            .build(&self.device)
            .context("loading the instruct model's weights")?;
        Ok(self.base.get_or_init(|| w))
    }

    /// Computes the prefix's key-value cache now, if not done yet.
    pub fn warm(&self) -> Result<()> {
        self.prefixed().map(|_| ())
    }

    /// A copy of the model that has read the prefix.
    fn prefixed(&self) -> Result<ModelWeights> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cached.as_ref() {
            return Ok(m.clone());
        }
        let mut m = self.weights()?.clone();
        m.clear_kv_cache();
        if !self.prefix.is_empty() {
            let input = Tensor::new(self.prefix.as_slice(), &self.device)?.unsqueeze(0)?;
            m.forward(&input, 0)?;
        }
        *cached = Some(m.clone());
        Ok(m)
    }

    /// Benchmark helper: feeds `prompt` in one forward from an empty cache,
    /// then generates `gen` tokens greedily one at a time. Returns the
    /// seconds spent on the prompt and on the generated tokens.
    pub fn time_prompt_and_generation(&self, prompt: &[u32], gen: usize) -> Result<(f64, f64)> {
        let mut model = self.weights()?.clone();
        model.clear_kv_cache();
        let t = std::time::Instant::now();
        let input = Tensor::new(prompt, &self.device)?.unsqueeze(0)?;
        let mut logits = model.forward(&input, 0)?;
        let prompt_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        for i in 0..gen {
            let next = logits
                .squeeze(0)?
                .to_dtype(candle_core::DType::F32)?
                .argmax(0)?
                .to_scalar::<u32>()?;
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = model.forward(&input, prompt.len() + i)?;
        }
        Ok((prompt_s, t.elapsed().as_secs_f64()))
    }

    /// A fresh decoding session that continues the cached prefix.
    pub fn session(&self) -> Result<Session<'_>> {
        Ok(Session {
            model: self.prefixed()?,
            pos: self.prefix.len(),
            pending: Vec::new(),
            llm: self,
            work: Work::default(),
        })
    }
}

/// One request's decoding state.
pub struct Session<'a> {
    model: ModelWeights,
    pos: usize,
    pending: Vec<u32>,
    llm: &'a Llm,
    /// What the model did so far.
    pub work: Work,
}

/// The outcome of a constrained choice.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Index of the chosen option.
    pub index: usize,
    /// Probability of the chosen option under the constraint (the product
    /// of the renormalised probabilities at each branch).
    pub prob: f32,
    /// Restricted probability of each option's first distinct token at the
    /// first branch (options that share it share the value).
    pub first_branch: Vec<f32>,
}

impl Session<'_> {
    /// Appends tokens that the model reads before its next choice.
    pub fn push(&mut self, ids: &[u32]) {
        self.pending.extend_from_slice(ids);
    }

    /// Encodes text as plain text with the model's tokenizer.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.llm.tok.encode_text(text)?)
    }

    /// Appends text (encoded as plain text).
    pub fn push_text(&mut self, text: &str) -> Result<()> {
        let ids = self.llm.tok.encode_text(text)?;
        self.push(&ids);
        Ok(())
    }

    fn logits(&mut self) -> Result<Vec<f32>> {
        if self.pending.is_empty() {
            bail!("nothing to forward");
        }
        let n = self.pending.len();
        let input = Tensor::new(self.pending.as_slice(), &self.llm.device)?.unsqueeze(0)?;
        let out = self.model.forward(&input, self.pos)?;
        self.pos += n;
        self.pending.clear();
        self.work.forwards += 1;
        if n > 1 {
            self.work.prompt_tokens += n;
        } else {
            self.work.single_tokens += 1;
        }
        Ok(out
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?)
    }

    /// Chooses one of `options` (token sequences, none a prefix of
    /// another) by walking their trie; `bias[i]` is added to the log-prob of
    /// option `i`'s token at each branch where it decides. The chosen
    /// option's tokens are appended to the context.
    pub fn choose(&mut self, options: &[Vec<u32>], bias: &[f32]) -> Result<Choice> {
        if options.is_empty() {
            bail!("no option to choose from");
        }
        let mut live: Vec<usize> = (0..options.len()).collect();
        let mut depth = 0;
        let mut prob = 1.0f32;
        let mut first_branch: Option<Vec<f32>> = None;
        loop {
            if live.len() == 1 {
                let i = live[0];
                self.push(&options[i][depth.min(options[i].len())..]);
                return Ok(Choice {
                    index: i,
                    prob,
                    first_branch: first_branch.unwrap_or_else(|| {
                        (0..options.len())
                            .map(|j| if j == i { 1.0 } else { 0.0 })
                            .collect()
                    }),
                });
            }
            // Options ended at this depth cannot happen (prefix-free), but
            // guard against equal options: keep the first.
            let mut tokens: Vec<u32> = live
                .iter()
                .filter_map(|&i| options[i].get(depth).copied())
                .collect();
            tokens.sort_unstable();
            tokens.dedup();
            if tokens.is_empty() {
                live.truncate(1);
                continue;
            }
            if tokens.len() == 1 {
                self.push(&[tokens[0]]);
                live.retain(|&i| options[i].get(depth) == Some(&tokens[0]));
                depth += 1;
                continue;
            }
            let logits = self.logits()?;
            let max = tokens
                .iter()
                .map(|&t| logits[t as usize])
                .fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = tokens
                .iter()
                .map(|&t| (logits[t as usize] - max).exp())
                .sum();
            let lp = |t: u32| logits[t as usize] - max - z.ln();
            let group_bias = |t: u32| {
                live.iter()
                    .filter(|&&i| options[i].get(depth) == Some(&t))
                    .map(|&i| bias.get(i).copied().unwrap_or(0.0))
                    .fold(f32::NEG_INFINITY, f32::max)
            };
            let best = tokens
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    (lp(a) + group_bias(a))
                        .partial_cmp(&(lp(b) + group_bias(b)))
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap_or(tokens[0]);
            if first_branch.is_none() {
                first_branch = Some(
                    options
                        .iter()
                        .map(|o| match o.get(depth) {
                            Some(t) if live.iter().any(|&i| options[i].get(depth) == Some(t)) => {
                                lp(*t).exp()
                            }
                            _ => 0.0,
                        })
                        .collect(),
                );
            }
            prob *= lp(best).exp();
            self.push(&[best]);
            live.retain(|&i| options[i].get(depth) == Some(&best));
            depth += 1;
        }
    }
}

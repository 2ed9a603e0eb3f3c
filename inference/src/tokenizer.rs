//! The instruct model's tokenizer, built from the GGUF file's own metadata.
//!
//! llama.cpp's `smollm` pre-tokenizer splits every digit on its own, then
//! applies the GPT-2 byte-level pattern without a prefix space. candle's
//! `TokenizerFromGguf` does not know it and adds a prefix space, which breaks
//! the chat template, so the pipeline is assembled here. Request text is always
//! encoded with special tokens treated as plain text: a request that contains
//! `<|im_end|>` cannot close its own turn. Template markers are inserted by id.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// Why the tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type.
    #[error("GGUF tokenizer metadata {key}: {reason}")]
    Metadata {
        /// The GGUF key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pre-tokenizer or tokenizer model is not one this crate knows.
    #[error("unsupported GGUF tokenizer: {0}")]
    Unsupported(String),
    /// The tokenizers crate failed.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

fn md_err(key: &str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Metadata {
        key: key.into(),
        reason: reason.into(),
    }
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, TokenizerError> {
    ct.metadata.get(key).ok_or_else(|| md_err(key, "missing"))
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    use gguf_file::Value::*;
    match ct.metadata.get(key)? {
        U8(v) => Some(u32::from(*v)),
        U16(v) => Some(u32::from(*v)),
        U32(v) => Some(*v),
        I32(v) => u32::try_from(*v).ok(),
        U64(v) => u32::try_from(*v).ok(),
        I64(v) => u32::try_from(*v).ok(),
        _ => None,
    }
}

fn md_strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, TokenizerError> {
    md(ct, key)?
        .to_vec()
        .map_err(|e| md_err(key, e.to_string()))?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|e| md_err(key, e.to_string()))
        })
        .collect()
}

/// The chat template family, recognised from `tokenizer.chat_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (SmolLM2, Qwen, ...).
    ChatMl,
}

/// A tokenizer for a GGUF model plus the ids of its chat template markers.
#[derive(Clone)]
pub struct GgufTokenizer {
    inner: Tokenizer,
    /// The same tokenizer with special-token matching switched off.
    plain: Tokenizer,
    /// Token strings by id, as stored in the GGUF (byte-level encoded).
    pub tokens: Vec<String>,
    /// End of sequence.
    pub eos_id: u32,
    /// `<|im_start|>`.
    pub im_start: u32,
    /// `<|im_end|>`.
    pub im_end: u32,
    /// The chat template family.
    pub chat: ChatFormat,
}

impl std::fmt::Debug for GgufTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufTokenizer")
            .field("vocab", &self.tokens.len())
            .field("eos_id", &self.eos_id)
            .finish()
    }
}

impl GgufTokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, TokenizerError> {
        let model = md(ct, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| md_err("tokenizer.ggml.model", e.to_string()))?
            .clone();
        if model != "gpt2" {
            return Err(TokenizerError::Unsupported(format!(
                "tokenizer model {model:?} (only byte-level BPE, \"gpt2\", is supported)"
            )));
        }
        let pre = ct
            .metadata
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_else(|| "default".into());
        let tokens = md_strings(ct, "tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = md_strings(ct, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| md_err("tokenizer.ggml.merges", format!("bad entry {m:?}")))
            })
            .collect::<Result<_, _>>()?;
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(
                vocab
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<tokenizers::models::bpe::Vocab>(),
                merges,
            )
            .build()
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut tk = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, false, true);
        match pre.as_str() {
            // Digits one by one, then the GPT-2 pattern, no prefix space.
            "smollm" => {
                tk.with_pre_tokenizer(Some(Sequence::new(vec![
                    Digits::new(true).into(),
                    byte_level.into(),
                ])));
            }
            "gpt2" | "default" => {
                tk.with_pre_tokenizer(Some(byte_level));
            }
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "pre-tokenizer {other:?} (known: smollm, gpt2)"
                )))
            }
        }
        tk.with_decoder(Some(ByteLevelDecoder::new(false, false, true)));
        // Control tokens (type 3) are special: they match only in template
        // text, never in a request (see `encode_text`).
        let types: Vec<u32> = ct
            .metadata
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.iter().map(|x| x.to_i32().unwrap_or(1) as u32).collect())
            .unwrap_or_default();
        let specials: Vec<AddedToken> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == 3)
            .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
            .collect();
        let _ = tk.add_special_tokens(specials);
        let id = |s: &str| {
            vocab.get(s).copied().ok_or_else(|| {
                TokenizerError::Unsupported(format!("no {s} token in the vocabulary"))
            })
        };
        let template = ct
            .metadata
            .get("tokenizer.chat_template")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        if !template.contains("<|im_start|>") {
            return Err(TokenizerError::Unsupported(
                "chat template (only ChatML, <|im_start|>role ... <|im_end|>, is supported)".into(),
            ));
        }
        let eos_id = md_u32(ct, "tokenizer.ggml.eos_token_id").unwrap_or(id("<|im_end|>")?);
        Ok(GgufTokenizer {
            im_start: id("<|im_start|>")?,
            im_end: id("<|im_end|>")?,
            eos_id,
            tokens,
            plain: {
                let mut p = tk.clone();
                p.set_encode_special_tokens(true);
                p
            },
            inner: tk,
            chat: ChatFormat::ChatMl,
        })
    }

    /// Encodes plain text: special-token strings in it are ordinary text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.plain
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// Encodes template text in which special-token strings are special.
    pub fn encode_template(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// Decodes ids back to text.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// `<|im_start|>{role}\n{content}<|im_end|>\n` as ids, the content
    /// encoded as plain text.
    pub fn chat_turn(&self, role: &str, content: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.chat_open(role)?;
        ids.extend(self.encode_text(content)?);
        ids.push(self.im_end);
        ids.extend(self.encode_text("\n")?);
        Ok(ids)
    }

    /// `<|im_start|>{role}\n` as ids: the start of a turn the model writes.
    pub fn chat_open(&self, role: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = vec![self.im_start];
        ids.extend(self.encode_text(&format!("{role}\n"))?);
        Ok(ids)
    }
}

//! The GGUF-built tokenizer against llama.cpp's tokenization of the same
//! file (fixture written once by tests/ref/make_reference.py).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use candle_core::quantized::gguf_file;
use hearth_inference::tokenizer::GgufTokenizer;
use serde_json::Value;

fn tokenizer() -> GgufTokenizer {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut f = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", path.display()));
    let ct = gguf_file::Content::read(&mut f).expect("GGUF header");
    GgufTokenizer::from_gguf(&ct).expect("tokenizer from GGUF metadata")
}

fn fixture() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ref/smollm2_tokens.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (write it with tests/ref/make_reference.py and llama-cpp-python)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("fixture JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn plain_text_matches_llama_cpp_for_every_reference_string() {
    let tk = tokenizer();
    let fx = fixture();
    let cases = fx["plain"].as_array().expect("plain");
    assert!(cases.len() >= 40, "fixture too small");
    let mut bad = Vec::new();
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let got = tk.encode_text(text).expect("encode");
        if got != ids(c) {
            bad.push(format!("{text:?}: got {got:?}, llama.cpp {:?}", ids(c)));
        }
    }
    assert!(bad.is_empty(), "mismatches:\n{}", bad.join("\n"));
}

#[test]
fn chat_template_matches_llama_cpp() {
    let tk = tokenizer();
    let fx = fixture();
    let c = &fx["template"][0];
    let text = c["text"].as_str().expect("text");
    assert_eq!(tk.encode_template(text).expect("encode"), ids(c));
    // Built piece by piece as the engine does.
    let mut built = tk.chat_turn("system", "You map a request.").expect("turn");
    built.extend(tk.chat_turn("user", "let iot reach lan").expect("turn"));
    built.extend(tk.chat_open("assistant").expect("open"));
    built.extend(tk.encode_text("action: net.allow\n").expect("text"));
    assert_eq!(built, ids(c));
}

#[test]
fn request_text_cannot_open_a_chat_turn() {
    let tk = tokenizer();
    // In request text the markers are plain characters, not control ids.
    let inj = tk.encode_text("<|im_end|>").expect("encode");
    assert!(!inj.contains(&tk.im_end) && !inj.contains(&tk.im_start));
    assert_eq!(tk.decode(&inj).expect("decode"), "<|im_end|>");
}

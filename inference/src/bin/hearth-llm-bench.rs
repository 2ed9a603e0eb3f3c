//! Prompt and generation speed of the instruct model in candle:
//! `hearth-llm-bench [GGUF] [--prompt-tokens N] [--gen N] [--reps N]`.
//! Runs each load-time conversion (`keep`, `q8_0`, `q4_0`) on the same
//! prompt and prints tokens per second as JSON lines. The llama.cpp anchor
//! comes from `inference/bench/llama_cpp_bench.py` in the same run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use candle_core::Device;
use hearth_inference::llm::{Llm, Requant};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut gguf = PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (mut n_prompt, mut n_gen, mut reps) = (145usize, 20usize, 3usize);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: not a number"))
        };
        match a.as_str() {
            "--prompt-tokens" => n_prompt = num("--prompt-tokens")?,
            "--gen" => n_gen = num("--gen")?,
            "--reps" => reps = num("--reps")?,
            other => gguf = PathBuf::from(other),
        }
    }
    let bytes = std::fs::read(&gguf).with_context(|| format!("reading {}", gguf.display()))?;
    for (name, rq) in [
        ("keep", Requant::Keep),
        ("q8_0", Requant::Q8_0),
        ("q4_0", Requant::Q4_0),
    ] {
        let t = Instant::now();
        let llm = Llm::load(bytes.clone(), &Device::Cpu, rq)?;
        // The weights are otherwise built at first use: count them here.
        llm.weights()?;
        let load_ms = t.elapsed().as_secs_f64() * 1e3;
        let text = "The appliance turns plain-language requests into signed playbooks. ".repeat(40);
        let mut ids = llm.tok.encode_text(&text)?;
        ids.truncate(n_prompt);
        let (mut best_p, mut best_g) = (f64::MAX, f64::MAX);
        for _ in 0..reps {
            let (p, g) = llm.time_prompt_and_generation(&ids, n_gen)?;
            best_p = best_p.min(p);
            best_g = best_g.min(g);
        }
        println!(
            "{{\"engine\":\"candle\",\"weights\":\"{name}\",\"threads\":{},\"load_ms\":{load_ms:.0},\"prompt_tokens\":{},\"prompt_tok_s\":{:.1},\"gen_tokens\":{n_gen},\"gen_tok_s\":{:.1},\"total_s\":{:.2}}}",
            candle_core::utils::get_num_threads(),
            ids.len(),
            ids.len() as f64 / best_p,
            n_gen as f64 / best_g,
            best_p + best_g
        );
    }
    Ok(())
}

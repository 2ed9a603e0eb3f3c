//! The encoder's states and the trained weights do not depend on the CPU's
//! caches. gemm sizes its blocks of the inner dimension from the L1 data
//! cache that `/sys` describes (decision 070, 2026-12-07); this test runs
//! the same work in child processes that see different L1 caches (files of
//! `/sys/devices/system/cpu/cpu*/cache/index0` bind-mounted over in a
//! mount namespace of their own by `inference/bench/with-l1.sh`: root and
//! util-linux's `unshare`), and
//! checks that candle's plain product does change with them (so the fake
//! caches took effect) while the interpreter's encoding and training do
//! not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use hearth_inference::embed::Embedder;
use hearth_inference::gen::Rng;
use hearth_inference::lexicon::Lexicon;
use hearth_inference::product::product;
use hearth_inference::train::{train, Recipe};
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn digest(t: &Tensor) -> String {
    let mut h = Sha256::new();
    for f in t.flatten_all().unwrap().to_vec1::<f32>().unwrap() {
        h.update(f.to_bits().to_le_bytes());
    }
    hex::encode(h.finalize())
}

/// What the child prints: candle's plain product and ours over an inner
/// dimension of 1152 (the heads' input projection), the encoder's states
/// for a few requests, and the weights a small training writes.
#[test]
#[ignore = "run by work_is_the_same_on_any_l1_cache as a child process"]
fn child_digests() {
    let mut rng = Rng::new(11);
    let mut filled = |r: usize, c: usize| {
        let v: Vec<f32> = (0..r * c).map(|_| rng.normal()).collect();
        Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap()
    };
    let (a, b) = (filled(300, 1152), filled(1152, 128));
    println!("DIGEST plain {}", digest(&a.matmul(&b).unwrap()));
    println!("DIGEST ours {}", digest(&product(&a, &b).unwrap()));

    let dir = root().join("models/all-MiniLM-L6-v2");
    let weights = std::fs::read(dir.join("model.safetensors"))
        .expect("the encoder's weights (scripts/setup puts them in models/)");
    let sha = hex::encode(Sha256::digest(&weights));
    let embedder = Embedder::load(&dir, weights, &Device::Cpu).unwrap();
    let (states, _, _) = embedder
        .token_states(&[
            "please let the kids domain reach the printer on port 631 tonight",
            "point nas.home.arpa at 192.168.1.20",
        ])
        .unwrap();
    println!("DIGEST states {}", digest(&states));

    let specs = hearth_inference::specs::load_dir(&root().join("catalog")).unwrap();
    let lex = Lexicon::load(&root().join("catalog/language/en.toml")).unwrap();
    // Batches of 64: the weights' gradients have inner dimensions (the
    // batch's tokens) beyond 512.
    let recipe = Recipe {
        per_playbook: 3,
        none: 10,
        epochs: 1,
        batch: 64,
        members: 1,
        ..Recipe::default()
    };
    let (bytes, _) = train(&embedder, &sha, &specs, &lex, &recipe, &mut |_| {}).unwrap();
    println!("DIGEST weights {}", hex::encode(Sha256::digest(&bytes)));
}

/// Runs `child_digests` in a process that sees an L1 data cache of
/// `size` with `ways` ways; returns its digests by name.
fn digests_with_l1(size: &str, ways: &str) -> Vec<(String, String)> {
    let exe = std::env::current_exe().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(dir.join("bench/with-l1.sh"))
        .args([size, ways])
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "child_digests",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .current_dir(dir)
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child with an L1 of {size}, {ways} ways failed (this test needs root): {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<(String, String)> = stdout
        .lines()
        // (the test harness may print its own words before the first)
        .filter_map(|l| l.find("DIGEST ").map(|i| &l[i + "DIGEST ".len()..]))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(found.len(), 4, "{stdout}");
    found
}

/// An L1 of 32 KiB with 8 ways gives gemm blocks of 512, 48 KiB with 12
/// ways (an AMD EPYC's) blocks of 1024: candle's product over 1152 differs,
/// ours, the states and the trained weights do not.
#[test]
fn work_is_the_same_on_any_l1_cache() {
    let small = digests_with_l1("32K", "8");
    let large = digests_with_l1("48K", "12");
    let get = |d: &[(String, String)], k: &str| {
        d.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_ne!(
        get(&small, "plain"),
        get(&large, "plain"),
        "the fake caches changed nothing: candle's product came out the same"
    );
    for k in ["ours", "states", "weights"] {
        assert_eq!(get(&small, k), get(&large, k), "{k} depend on the L1 cache");
    }
}

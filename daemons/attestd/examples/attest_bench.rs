//! Benchmark for docs/perf.md: the quote-and-verify round trip against one
//! appliance, and one verifier checking N appliances (N swtpm instances,
//! each with its own engine and HTTPS endpoint) at once. The anchor, measured
//! in the same run: the engine's quote alone (TPM2_Quote + TPM2_NV_Certify on
//! swtpm, no TLS, no verification).
//!
//! `cargo run -p hearth-attestd --example attest_bench -- [N] [ROUNDS]`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_attestation::flow;
use hearth_attestation::swtpm::{copy_state, LocalCa, Swtpm};
use hearth_attestd::{Config, Engine};

struct App {
    _swtpm: Swtpm,
    engine: Arc<Engine>,
    host: String,
}

fn tls(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    let (c, k, r) = (
        dir.join("chain.pem"),
        dir.join("key.pem"),
        dir.join("root.pem"),
    );
    std::fs::write(&c, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&k, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&r, ca.pem()).unwrap();
    (c, k, r)
}

async fn start(template: &Path, dir: &Path) -> App {
    copy_state(template, &dir.join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.join("tpm")).unwrap();
    let (tls_cert, tls_key, root_ca) = tls(dir);
    let cfg = Config {
        tcti: swtpm.tcti(),
        ek_handle: 0x8101_0001,
        ak_handle: 0x8100_0A71,
        nv_index: 0x0140_0A71,
        listen: "127.0.0.1:0".into(),
        tls_cert,
        tls_key,
        root_ca,
        tls_generate: Vec::new(),
        tls_from_pkid: Vec::new(),
        tls_renew_before_days: 30,
        tls_check_interval_s: 3600,
        measurement_users: vec!["root".into()],
        measure_binaries: vec!["/bin/true".into()],
        firmware_event_log: None,
        // The bench measures the TPM path, not the per-client rate limit.
        quote_concurrency: 2,
        quote_burst: u32::MAX,
        quote_per_minute: u32::MAX,
        access: Default::default(),
    };
    let state = dir.join("state");
    let engine = {
        let cfg = cfg.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Engine::open(&cfg, &state))
                .await
                .unwrap()
                .unwrap(),
        )
    };
    let server_tls = hearth_attestd::server::tls_config(&cfg.tls_cert, &cfg.tls_key).unwrap();
    let listener = hearth_attestd::server::bind(&cfg.listen).await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(hearth_attestd::server::serve_with(
        listener,
        server_tls,
        engine.clone(),
        cfg.limits(),
    ));
    App {
        _swtpm: swtpm,
        engine,
        host,
    }
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "median {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1]),
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|a| a.parse().unwrap()).unwrap_or(20);
    let rounds: usize = args.get(2).map(|a| a.parse().unwrap()).unwrap_or(20);
    let ca = LocalCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    ca.manufacture(&template).unwrap();
    let bundle = ca.bundle_pem().unwrap();

    let t = Instant::now();
    let mut apps = Vec::new();
    for i in 0..n {
        let d = dir.path().join(format!("app{i}"));
        std::fs::create_dir_all(&d).unwrap();
        apps.push(start(&template, &d).await);
    }
    println!(
        "started {n} appliances (swtpm + engine + HTTPS) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut records = Vec::new();
    for a in &apps {
        records.push(
            flow::enroll(&a.host, None, Some(&bundle))
                .await
                .unwrap()
                .record,
        );
    }

    // Anchor: the engine's quote alone, on appliance 0.
    let mut anchor = Vec::new();
    for _ in 0..rounds {
        let e = apps[0].engine.clone();
        let t = Instant::now();
        tokio::task::spawn_blocking(move || e.quote(&"ab".repeat(20)).unwrap())
            .await
            .unwrap();
        anchor.push(t.elapsed());
    }
    // One round trip: nonce, HTTPS, quote + certify, full verification.
    let mut single = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = flow::check(&records[0], None).await.unwrap();
        assert!(r.trusted);
        single.push(t.elapsed());
    }
    println!(
        "anchor  engine quote alone (TPM2_Quote + NV_Certify): {}",
        stats(anchor)
    );
    println!(
        "single  quote-and-verify round trip over HTTPS:        {}",
        stats(single)
    );

    // N appliances at once, a few times.
    let mut all = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for r in records.clone() {
            set.spawn(async move { flow::check(&r, None).await.unwrap().trusted });
        }
        let mut trusted = 0;
        while let Some(ok) = set.join_next().await {
            if ok.unwrap() {
                trusted += 1;
            }
        }
        assert_eq!(trusted, n);
        all.push(t.elapsed());
    }
    println!(
        "fleet   {n} appliances checked at once (all trusted), wall time: {}",
        stats(all)
    );
}

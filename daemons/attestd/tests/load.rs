//! The real hearth-attestd binary on a private D-Bus bus with a real swtpm,
//! under a burst of quote requests from one client: the burst is limited
//! (HTTP 429 or 503 with a JSON reason), and a Measure over D-Bus sent in the
//! middle of it still completes promptly.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
use common::free_port;

use std::time::{Duration, Instant};

use hearth_attestation::api::{QuoteRequest, QuoteResponse};
use hearth_attestation::client::{Client, ClientError};
use hearth_attestation::swtpm::{LocalCa, Swtpm};
use hearth_common::proxies::attestation::AttestationProxy;

/// Concurrent quote requests from one address.
const BURST: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_burst_from_one_client_is_limited_and_measure_still_completes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new().unwrap();
    ca.manufacture(&dir.path().join("tpm")).unwrap();
    let swtpm = Swtpm::start(&dir.path().join("tpm")).unwrap();
    let bus = hearth_testbed::PrivateBus::start(dir.path()).unwrap();
    let address = bus.address.clone();
    let port = free_port();
    let d = dir.path().display();
    let uid = nix::unistd::getuid().as_raw();
    let config_path = dir.path().join("hearth-attestd.toml");
    std::fs::write(
        &config_path,
        format!(
            "tcti = \"{}\"\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{d}/tls/chain.pem\"\n\
             tls_key = \"{d}/tls/key.pem\"\nroot_ca = \"{d}/tls/root.pem\"\n\
             tls_generate = [\"127.0.0.1\"]\nmeasurement_users = [\"{uid}\"]\n",
            swtpm.tcti()
        ),
    )
    .unwrap();
    let _daemon = common::start(
        &config_path,
        &dir.path().join("state"),
        &address,
        &[],
        dir.path(),
    );

    let conn = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let p = AttestationProxy::new(&conn).await.unwrap();
    let sha = hex::encode(openssl::sha::sha256(b"audit record"));
    // Unloaded: how long one Measure takes here.
    let t = Instant::now();
    p.measure("action", "warm-up", &sha).await.unwrap();
    let idle = t.elapsed();

    let root = std::fs::read_to_string(dir.path().join("tls/root.pem")).unwrap();
    let host = format!("127.0.0.1:{port}");
    let client = Client::pinned(&host, &root).unwrap();
    let mut burst = Vec::new();
    for i in 0..BURST {
        let client = client.clone();
        burst.push(tokio::spawn(async move {
            let nonce = hex::encode(openssl::sha::sha256(format!("nonce {i}").as_bytes()));
            client
                .post::<_, QuoteResponse>("/v1/quote", &QuoteRequest { nonce })
                .await
        }));
    }
    // Let the burst reach the daemon, then measure in the middle of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let recnum = tokio::time::timeout(
        Duration::from_secs(30),
        p.measure("action", "under load", &sha),
    )
    .await
    .expect("Measure answered within 30 s")
    .unwrap();
    let loaded = t.elapsed();
    assert!(recnum >= 1);

    let mut ok = 0;
    let mut limited = Vec::new();
    for b in burst {
        match b.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ClientError::Status {
                status,
                message,
                retry_after,
            }) => {
                assert!(status == 429 || status == 503, "{status}: {message}");
                // The client is told when to come back (RFC 9110 Retry-After).
                assert!(
                    retry_after.is_some_and(|s| (1..=60).contains(&s)),
                    "{status} without a usable Retry-After: {retry_after:?}"
                );
                limited.push((status, message));
            }
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
    assert!(ok >= 1, "no quote was served");
    assert!(
        !limited.is_empty(),
        "all {BURST} concurrent quotes from one client were served"
    );
    assert!(
        limited
            .iter()
            .all(|(_, m)| m.contains("127.0.0.1") || m.contains("busy")),
        "{limited:?}"
    );
    assert!(
        loaded < Duration::from_secs(2) + idle * 4,
        "Measure took {loaded:?} under the quote burst ({idle:?} idle)"
    );
    drop(bus);
}

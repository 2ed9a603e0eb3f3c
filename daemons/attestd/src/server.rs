//! The HTTPS JSON endpoint (rustls): `GET /v1/identity`, `POST /v1/enroll`,
//! `POST /v1/quote`, `GET /v1/status`. One request per connection; every
//! TPM operation runs on the blocking pool.
//!
//! The network cannot starve measurements: TPM work asked over the network
//! is bounded ([`Limits`]): at most `concurrent` requests use the TPM at a
//! time (others wait briefly, then get 503), each client address gets
//! `burst` quotes or enrollments at once and `per_minute` after that (then
//! 429), and at most `max_connections` connections are open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_attestation::api::{EnrollRequest, ErrorBody, QuoteRequest};
use hearth_attestation::http;
use rustls::ServerConfig;
use serde::Serialize;
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::engine::{Engine, EngineError};
use crate::tls::{CertResolver, TlsError};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Time a client gets to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Endpoint setup failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Certificate or key unusable.
    #[error("{path}: {reason}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Binding failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The TLS server configuration from PEM files (the seam with hearth-pkid:
/// it writes these files; the chain ends with the appliance's root CA),
/// served as they are (no renewal).
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ServerError> {
    tls_config_with(Arc::new(resolver(cert, key)?))
}

/// The certificate resolver over the PEM files, for [`tls_config_with`] and
/// [`crate::tls::renew_loop`].
pub fn resolver(cert: &Path, key: &Path) -> Result<CertResolver, ServerError> {
    CertResolver::from_files(cert, key).map_err(|e| match e {
        TlsError::Unusable { path, reason } => ServerError::Tls { path, reason },
        other => ServerError::Tls {
            path: cert.display().to_string(),
            reason: other.to_string(),
        },
    })
}

/// The TLS server configuration serving whatever `resolver` holds at each
/// handshake (so a renewed certificate is served without a restart).
pub fn tls_config_with(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, ServerError> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls {
                path: "(TLS provider)".into(),
                reason: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

/// Binds the listener.
pub async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Bounds on the TPM work the endpoint takes from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests using the TPM at the same time (quote, enroll, identity,
    /// status); more wait up to [`Limits::queue_wait`], then get 503.
    pub concurrent: usize,
    /// How long a request waits for a TPM slot before 503.
    pub queue_wait: Duration,
    /// Quotes and enrollments one client address may ask at once.
    pub burst: u32,
    /// Quotes and enrollments per minute per client address, after `burst`.
    pub per_minute: u32,
    /// Open connections; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrent: 2,
            queue_wait: Duration::from_secs(2),
            burst: 8,
            per_minute: 30,
            max_connections: 64,
        }
    }
}

/// Per-address token buckets.
struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Addresses remembered before full buckets are forgotten.
const MAX_TRACKED: usize = 4096;

impl RateLimiter {
    fn new(limits: &Limits) -> Self {
        RateLimiter {
            burst: f64::from(limits.burst.max(1)),
            per_sec: f64::from(limits.per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `ip`, or says in how many seconds one is there.
    fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_TRACKED && !b.contains_key(&ip) {
            let (burst, per_sec) = (self.burst, self.per_sec);
            b.retain(|_, (t, last)| *t + now.duration_since(*last).as_secs_f64() * per_sec < burst);
        }
        let (tokens, last) = b.entry(ip).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_sec).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil() as u64)
        }
    }
}

/// What a 503 tells a client to wait: a quote holds the TPM for well under
/// a second, so the queue ahead of it is gone by then.
const BUSY_RETRY_S: u64 = 2;

struct Shared {
    engine: Arc<Engine>,
    limits: Limits,
    tpm_slots: Arc<Semaphore>,
    rate: RateLimiter,
}

/// Serves until the task is dropped, with the default [`Limits`].
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, engine: Arc<Engine>) {
    serve_with(listener, tls, engine, Limits::default()).await;
}

/// Serves until the task is dropped, within `limits`.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    engine: Arc<Engine>,
    limits: Limits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let shared = Arc::new(Shared {
        engine,
        limits,
        tpm_slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
        rate: RateLimiter::new(&limits),
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(conn_permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(
                "{peer}: {} connections open; closed",
                limits.max_connections
            );
            drop(tcp);
            continue;
        };
        // Small TLS records both ways: no Nagle / delayed-ACK stalls.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _conn_permit = conn_permit;
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let tls = acceptor.accept(tcp).await?;
                let mut stream = BufReader::new(tls);
                let req = http::read_request(&mut stream, MAX_BODY).await?;
                let (status, body, retry_after) = limited(&shared, peer.ip(), req).await;
                http::write_response(stream.get_mut(), status, &body, retry_after).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("{peer}: {e}"),
                Err(_) => tracing::debug!("{peer}: request timed out"),
            }
        });
    }
}

fn json<T: Serialize>(status: u16, v: &T) -> (u16, Vec<u8>) {
    match serde_json::to_vec(v) {
        Ok(b) => (status, b),
        Err(e) => error(500, &e.to_string()),
    }
}

fn error(status: u16, msg: &str) -> (u16, Vec<u8>) {
    (
        status,
        serde_json::to_vec(&ErrorBody {
            error: msg.to_string(),
        })
        .unwrap_or_default(),
    )
}

fn engine_error(e: &EngineError) -> (u16, Vec<u8>) {
    match e {
        EngineError::Invalid { .. } => error(400, &e.to_string()),
        _ => error(500, &e.to_string()),
    }
}

/// Runs `f` on the blocking pool, holding the TPM slot until it returns
/// (even when the request is given up meanwhile).
async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    slot: &Slot,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let engine = engine.clone();
    let slot = slot.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&engine)
    })
    .await
    .unwrap_or_else(|e| Err(EngineError::Setup(format!("worker failed: {e}"))))
}

/// Applies the per-address rate (quotes, enrollments) and the TPM slots
/// (every endpoint that uses the TPM), then routes.
/// The answer, with the seconds of a `Retry-After` header when the client
/// is told to come back later (429, 503).
async fn limited(shared: &Shared, ip: IpAddr, req: http::Request) -> (u16, Vec<u8>, Option<u64>) {
    let path = req.path.as_str();
    let uses_tpm = matches!(
        path,
        "/v1/identity" | "/v1/status" | "/v1/enroll" | "/v1/quote"
    );
    if !uses_tpm {
        let (status, body) = route(&shared.engine, req, None).await;
        return (status, body, None);
    }
    if req.method == "POST" && matches!(path, "/v1/quote" | "/v1/enroll") {
        if let Err(wait) = shared.rate.take(ip) {
            tracing::debug!(%ip, path, "rate limited");
            let (status, body) = error(
                429,
                &format!(
                    "too many requests from {ip}: at most {} at once and {} per minute; retry in {wait} s",
                    shared.limits.burst, shared.limits.per_minute
                ),
            );
            return (status, body, Some(wait.max(1)));
        }
    }
    let permit = tokio::time::timeout(
        shared.limits.queue_wait,
        shared.tpm_slots.clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(permit)) = permit else {
        let (status, body) = error(
            503,
            &format!(
                "busy: {} requests are using the TPM; retry in {BUSY_RETRY_S} s",
                shared.limits.concurrent
            ),
        );
        return (status, body, Some(BUSY_RETRY_S));
    };
    let (status, body) = route(&shared.engine, req, Some(Arc::new(permit))).await;
    (status, body, None)
}

/// The TPM slot a request holds (none for requests that do not use it).
type Slot = Option<Arc<tokio::sync::OwnedSemaphorePermit>>;

async fn route(engine: &Arc<Engine>, req: http::Request, slot: Slot) -> (u16, Vec<u8>) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/identity") => match blocking(engine, &slot, |e| Ok(e.identity())).await {
            Ok(id) => json(200, &id),
            Err(e) => engine_error(&e),
        },
        ("GET", "/v1/status") => match blocking(engine, &slot, |e| e.status()).await {
            Ok(s) => json(200, &s),
            Err(e) => engine_error(&e),
        },
        ("POST", "/v1/enroll") => {
            let Ok(r) = serde_json::from_slice::<EnrollRequest>(&req.body) else {
                return error(
                    400,
                    "body must be {\"credential_blob\": hex, \"secret\": hex}",
                );
            };
            match blocking(engine, &slot, move |e| e.activate(&r)).await {
                Ok(r) => json(200, &r),
                Err(e) => error(403, &format!("credential activation failed: {e}")),
            }
        }
        ("POST", "/v1/quote") => {
            let Ok(r) = serde_json::from_slice::<QuoteRequest>(&req.body) else {
                return error(400, "body must be {\"nonce\": hex}");
            };
            match blocking(engine, &slot, move |e| e.quote(&r.nonce)).await {
                Ok(q) => json(200, &q),
                Err(e) => engine_error(&e),
            }
        }
        (_, "/v1/identity" | "/v1/status" | "/v1/enroll" | "/v1/quote") => {
            error(405, "method not allowed")
        }
        _ => error(404, "no such endpoint"),
    }
}

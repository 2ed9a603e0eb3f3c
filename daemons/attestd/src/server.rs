//! The HTTPS JSON endpoint (rustls): `GET /v1/identity`, `POST /v1/enroll`,
//! `POST /v1/quote`, `GET /v1/status`. One request per connection; every
//! TPM operation runs on the blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hearth_attestation::api::{EnrollRequest, ErrorBody, QuoteRequest};
use hearth_attestation::http;
use rustls::ServerConfig;
use serde::Serialize;
use tokio::io::BufReader;
use tokio::net::TcpListener;
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

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, engine: Arc<Engine>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small TLS records both ways: no Nagle / delayed-ACK stalls.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let engine = engine.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let tls = acceptor.accept(tcp).await?;
                let mut stream = BufReader::new(tls);
                let req = http::read_request(&mut stream, MAX_BODY).await?;
                let (status, body) = route(&engine, req).await;
                http::write_response(stream.get_mut(), status, &body).await?;
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

async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .unwrap_or_else(|e| Err(EngineError::Setup(format!("worker failed: {e}"))))
}

async fn route(engine: &Arc<Engine>, req: http::Request) -> (u16, Vec<u8>) {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/identity") => match blocking(engine, |e| Ok(e.identity())).await {
            Ok(id) => json(200, &id),
            Err(e) => engine_error(&e),
        },
        ("GET", "/v1/status") => match blocking(engine, |e| e.status()).await {
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
            match blocking(engine, move |e| e.activate(&r)).await {
                Ok(r) => json(200, &r),
                Err(e) => error(403, &format!("credential activation failed: {e}")),
            }
        }
        ("POST", "/v1/quote") => {
            let Ok(r) = serde_json::from_slice::<QuoteRequest>(&req.body) else {
                return error(400, "body must be {\"nonce\": hex}");
            };
            match blocking(engine, move |e| e.quote(&r.nonce)).await {
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

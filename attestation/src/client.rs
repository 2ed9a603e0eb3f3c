//! The verifier's HTTPS client. Every request that carries attestation data
//! goes over a TLS connection whose server certificate must chain to the
//! pinned root CA (and name the host); the only unpinned connection is
//! [`peek_root_ca`], which reads the presented certificate chain to learn
//! (and let the admin compare) the root CA's fingerprint, and sends nothing.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::api::ErrorBody;
use crate::http;

/// Most bytes of a response accepted (event logs can grow).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// HOST:PORT is malformed.
    #[error("{0:?} is not HOST:PORT")]
    BadHost(String),
    /// TCP or TLS failed; a certificate that does not chain to the pinned
    /// root CA ends here.
    #[error("connecting to {host}: {source}")]
    Connect {
        /// HOST:PORT.
        host: String,
        /// The cause.
        source: std::io::Error,
    },
    /// HTTP error.
    #[error("{0}")]
    Http(#[from] http::HttpError),
    /// The appliance answered with an error.
    #[error("the appliance answered {status}: {message}{}", retry_hint(*retry_after))]
    Status {
        /// HTTP status.
        status: u16,
        /// Its error message.
        message: String,
        /// When it is busy or rate-limits this client (429, 503): seconds
        /// after which to try again (its `Retry-After`).
        retry_after: Option<u64>,
    },
    /// The answer is not the expected JSON.
    #[error("bad answer: {0}")]
    Json(#[from] serde_json::Error),
    /// TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn split_host(host: &str) -> Result<(String, ServerName<'static>), ClientError> {
    let (name, port) = host
        .rsplit_once(':')
        .ok_or_else(|| ClientError::BadHost(host.into()))?;
    port.parse::<u16>()
        .map_err(|_| ClientError::BadHost(host.into()))?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let server =
        ServerName::try_from(name.to_string()).map_err(|_| ClientError::BadHost(host.into()))?;
    Ok((host.to_string(), server))
}

/// An HTTPS client pinned to one appliance's root CA.
#[derive(Clone)]
pub struct Client {
    host: String,
    server: ServerName<'static>,
    connector: TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("host", &self.host).finish()
    }
}

impl Client {
    /// A client for HOST:PORT that trusts only `root_ca_pem`.
    pub fn pinned(host: &str, root_ca_pem: &str) -> Result<Client, ClientError> {
        let (host, server) = split_host(host)?;
        let mut roots = RootCertStore::empty();
        let der = openssl::x509::X509::from_pem(root_ca_pem.as_bytes())
            .and_then(|c| c.to_der())
            .map_err(|e| ClientError::Tls(format!("pinned root CA: {e}")))?;
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| ClientError::Tls(format!("pinned root CA: {e}")))?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            host,
            server,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// HOST:PORT.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let connect_err = |source| ClientError::Connect {
            host: self.host.clone(),
            source,
        };
        let tcp = TcpStream::connect(&self.host).await.map_err(connect_err)?;
        // Small request and response writes: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let mut tls = self
            .connector
            .connect(self.server.clone(), tcp)
            .await
            .map_err(connect_err)?;
        http::write_request(&mut tls, method, &self.host, path, body.as_deref()).await?;
        let mut r = BufReader::new(tls);
        let resp = http::read_response_full(&mut r, MAX_RESPONSE).await?;
        if resp.status != 200 {
            let message = serde_json::from_slice::<ErrorBody>(&resp.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&resp.body).into_owned());
            return Err(ClientError::Status {
                status: resp.status,
                message,
                retry_after: resp.retry_after,
            });
        }
        Ok(serde_json::from_slice(&resp.body)?)
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request("GET", path, None).await
    }

    /// POST a JSON document, get one back.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request("POST", path, Some(serde_json::to_vec(body)?))
            .await
    }
}

fn retry_hint(after: Option<u64>) -> String {
    after.map_or(String::new(), |s| format!(" (Retry-After: {s} s)"))
}

#[derive(Debug)]
struct Capture {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.chain.lock() {
            c.push(end_entity.clone().into_owned());
            c.extend(intermediates.iter().map(|i| i.clone().into_owned()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Completes a TLS handshake without trusting anything, sends nothing, and
/// returns the root CA the server presented (the last certificate of its
/// chain, which must be a self-signed CA), as PEM. Used only to learn the
/// fingerprint to pin; nothing from this connection is otherwise believed.
pub async fn peek_root_ca(host: &str) -> Result<String, ClientError> {
    let (host, server) = split_host(host)?;
    let capture = Arc::new(Capture {
        chain: Mutex::new(Vec::new()),
        provider: provider(),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let connect_err = |source| ClientError::Connect {
        host: host.clone(),
        source,
    };
    let tcp = TcpStream::connect(&host).await.map_err(connect_err)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server, tcp)
        .await
        .map_err(connect_err)?;
    drop(tls);
    let chain = capture
        .chain
        .lock()
        .map(|c| c.clone())
        .map_err(|_| ClientError::Tls("poisoned".into()))?;
    let last = chain
        .last()
        .ok_or_else(|| ClientError::Tls("the server presented no certificate".into()))?;
    let cert = openssl::x509::X509::from_der(last)
        .map_err(|e| ClientError::Tls(format!("presented certificate: {e}")))?;
    let self_signed = cert
        .public_key()
        .and_then(|k| cert.verify(&k))
        .unwrap_or(false);
    if chain.len() < 2 || !self_signed {
        return Err(ClientError::Tls(
            "the server does not present its root CA at the end of its chain".into(),
        ));
    }
    let pem = cert.to_pem().map_err(|e| ClientError::Tls(e.to_string()))?;
    String::from_utf8(pem).map_err(|e| ClientError::Tls(e.to_string()))
}

//! The verifier's network flows: enroll an appliance, check it.

use crate::api::{EnrollResponse, Identity, QuoteRequest, QuoteResponse};
use crate::client::{self, Client, ClientError};
use crate::crypto;
use crate::verify::{self, EnrollError, Enrollment, Golden, Report};

/// A flow that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Network, TLS or protocol failure (could not check).
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The root CA presented is not the one whose fingerprint was given.
    #[error(
        "the appliance's root CA has fingerprint {got}, not the expected {expected}: refusing"
    )]
    Fingerprint {
        /// Presented.
        got: String,
        /// Expected.
        expected: String,
    },
    /// Enrollment refused.
    #[error("enrollment refused: {0}")]
    Enroll(#[from] EnrollError),
    /// Other.
    #[error("{0}")]
    Other(String),
}

/// The outcome of an enrollment.
#[derive(Debug)]
pub struct Enrolled {
    /// The record to store.
    pub record: Enrollment,
    /// True when the root CA was trusted on first use (no fingerprint given).
    pub tofu: bool,
}

/// Enrolls HOST:PORT: pins its root CA (checking `expected_fingerprint`
/// when given), fetches its identity over the pinned connection, checks the
/// EK certificate, and runs credential activation.
pub async fn enroll(
    host: &str,
    expected_fingerprint: Option<&str>,
    vendor_bundle_pem: Option<&[u8]>,
) -> Result<Enrolled, FlowError> {
    let root_pem = client::peek_root_ca(host).await?;
    let root =
        crypto::parse_cert(root_pem.as_bytes()).map_err(|e| FlowError::Other(e.to_string()))?;
    let fp = crypto::fingerprint(&root).map_err(|e| FlowError::Other(e.to_string()))?;
    if let Some(expected) = expected_fingerprint {
        let expected = crypto::normalize_fingerprint(expected);
        if expected != fp {
            return Err(FlowError::Fingerprint { got: fp, expected });
        }
    }
    let client = Client::pinned(host, &root_pem)?;
    let identity: Identity = client.get("/v1/identity").await?;
    let id_root = crypto::parse_cert(identity.root_ca_pem.as_bytes())
        .and_then(|c| crypto::fingerprint(&c))
        .map_err(|e| FlowError::Other(format!("identity root CA: {e}")))?;
    if id_root != fp {
        return Err(FlowError::Other(
            "the identity names another root CA than the one serving it".into(),
        ));
    }
    let (request, challenge) =
        verify::begin_enroll(host, &root_pem, &fp, &identity, vendor_bundle_pem)?;
    let response: EnrollResponse = match client.post("/v1/enroll", &request).await {
        Ok(r) => r,
        Err(ClientError::Status { .. }) => return Err(EnrollError::ActivationFailed.into()),
        Err(e) => return Err(e.into()),
    };
    let record = verify::finish_enroll(challenge, &response)?;
    Ok(Enrolled {
        record,
        tofu: expected_fingerprint.is_none(),
    })
}

/// Asks the appliance for a quote with a fresh nonce and checks it.
/// Errors mean the check could not be made (not a verdict).
pub async fn check(record: &Enrollment, golden: Option<&Golden>) -> Result<Report, FlowError> {
    let (report, _) = check_with(record, golden).await?;
    Ok(report)
}

/// As [`check`], also returning the raw answer (for tests and golden files).
pub async fn check_with(
    record: &Enrollment,
    golden: Option<&Golden>,
) -> Result<(Report, QuoteResponse), FlowError> {
    let client = Client::pinned(&record.host, &record.root_ca_pem)?;
    let nonce = verify::fresh_nonce();
    let resp: QuoteResponse = client
        .post(
            "/v1/quote",
            &QuoteRequest {
                nonce: hex::encode(&nonce),
            },
        )
        .await?;
    let report = verify::check_quote(record, &nonce, &resp, golden);
    Ok((report, resp))
}

//! A minimal HTTP/1.1 for the attestation endpoint: one request per
//! connection, `Content-Length` bodies, no chunking. Small on purpose; the
//! endpoint serves a handful of JSON documents.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limits and syntax errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Network error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Malformed message.
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    /// Too large.
    #[error("HTTP {0} too large")]
    TooLarge(&'static str),
}

/// Most bytes of headers accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET, POST, ...
    pub method: String,
    /// The path.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

async fn read_head<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<String>, HttpError> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = (&mut *r)
            .take((MAX_HEAD - total + 1) as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(HttpError::Malformed(
                "connection closed in the header".into(),
            ));
        }
        total += n;
        if total > MAX_HEAD {
            return Err(HttpError::TooLarge("header"));
        }
        let line = String::from_utf8(line)
            .map_err(|_| HttpError::Malformed("header is not UTF-8".into()))?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn content_length(headers: &[String]) -> Result<usize, HttpError> {
    for h in headers {
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                return v
                    .trim()
                    .parse()
                    .map_err(|_| HttpError::Malformed(format!("bad Content-Length {v:?}")));
            }
            if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(HttpError::Malformed(
                    "chunked bodies are not supported".into(),
                ));
            }
        }
    }
    Ok(0)
}

async fn read_body<R: AsyncBufRead + Unpin>(
    r: &mut R,
    len: usize,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, HttpError> {
    if len > max {
        return Err(HttpError::TooLarge(what));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one request (body at most `max_body` bytes).
pub async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max_body: usize,
) -> Result<Request, HttpError> {
    let head = read_head(r).await?;
    let first = head
        .first()
        .ok_or_else(|| HttpError::Malformed("empty request".into()))?;
    let mut parts = first.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(format!("bad request line {first:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "unsupported version {version:?}"
        )));
    }
    let len = content_length(&head[1..])?;
    let body = read_body(r, len, max_body, "request body").await?;
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a JSON response and flushes; `retry_after` (seconds) goes in a
/// `Retry-After` header (RFC 9110 10.2.3) of a 429 or 503.
pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> Result<(), HttpError> {
    let retry = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}

/// Writes a request with an optional JSON body and flushes.
pub async fn write_request<W: AsyncWrite + Unpin>(
    w: &mut W,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(), HttpError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes()).await?;
    if let Some(b) = body {
        w.write_all(b).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Reads a response: (status, body).
pub async fn read_response<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max_body: usize,
) -> Result<(u16, Vec<u8>), HttpError> {
    read_response_full(r, max_body)
        .await
        .map(|resp| (resp.status, resp.body))
}

/// A response as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Seconds from a `Retry-After` header given as a number (a date form
    /// is not used by the appliance and reads as none).
    pub retry_after: Option<u64>,
}

/// Reads a response with the headers the client uses.
pub async fn read_response_full<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max_body: usize,
) -> Result<Response, HttpError> {
    let head = read_head(r).await?;
    let first = head
        .first()
        .ok_or_else(|| HttpError::Malformed("empty response".into()))?;
    let status = first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("bad status line {first:?}")))?;
    let len = content_length(&head[1..])?;
    let retry_after = head[1..].iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())?
    });
    Ok(Response {
        status,
        body: read_body(r, len, max_body, "response body").await?,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_roundtrips() {
        let mut buf = Vec::new();
        write_request(&mut buf, "POST", "h:1", "/v1/quote", Some(b"{}"))
            .await
            .unwrap();
        let mut r = tokio::io::BufReader::new(&buf[..]);
        let req = read_request(&mut r, 100).await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/quote");
        assert_eq!(req.body, b"{}");
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let mut buf = Vec::new();
        write_request(&mut buf, "POST", "h:1", "/", Some(&[b'x'; 200]))
            .await
            .unwrap();
        let mut r = tokio::io::BufReader::new(&buf[..]);
        assert!(matches!(
            read_request(&mut r, 100).await,
            Err(HttpError::TooLarge(_))
        ));
    }

    #[tokio::test]
    async fn retry_after_reaches_the_client() {
        let mut buf = Vec::new();
        write_response(&mut buf, 429, b"{}", Some(7)).await.unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        assert!(
            text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{text}"
        );
        let mut r = tokio::io::BufReader::new(&buf[..]);
        let resp = read_response_full(&mut r, 100).await.unwrap();
        assert_eq!((resp.status, resp.retry_after), (429, Some(7)));
        assert_eq!(resp.body, b"{}");

        let mut buf = Vec::new();
        write_response(&mut buf, 200, b"{}", None).await.unwrap();
        assert!(!String::from_utf8_lossy(&buf).contains("Retry-After"));
        let mut r = tokio::io::BufReader::new(&buf[..]);
        assert_eq!(
            read_response_full(&mut r, 100).await.unwrap().retry_after,
            None
        );
    }
}

//! `http`: the attestation endpoint's hand-written HTTP/1.1, as
//! hearth-attestd reads requests from the LAN and hearth-verify reads
//! answers.
//!
//! Input: a selector byte, then the bytes on the wire. Properties: no
//! panic; nothing larger than the body limit is returned; a request that
//! [`write_request`] makes from a method, path and body is read back as
//! the same three.

use std::cell::RefCell;

use hearth_attestation::http::{read_request, read_response, write_request, HttpError};
use tokio::io::BufReader;

/// The body limit the harness gives the readers.
pub const MAX_BODY: usize = 4096;

thread_local! {
    static RT: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    );
}

fn token(b: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(b).ok()?;
    (!s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic())).then_some(s)
}

/// The target.
pub fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    RT.with(|rt| {
        rt.borrow().block_on(async {
            match sel % 3 {
                0 => {
                    let mut r = BufReader::new(rest);
                    if let Ok(req) = read_request(&mut r, MAX_BODY).await {
                        assert!(req.body.len() <= MAX_BODY);
                        assert!(!req.method.is_empty() && !req.path.is_empty());
                        assert!(!req.method.contains(char::is_whitespace));
                        assert!(!req.path.contains(char::is_whitespace));
                    }
                }
                1 => {
                    let mut r = BufReader::new(rest);
                    if let Ok((_, body)) = read_response(&mut r, MAX_BODY).await {
                        assert!(body.len() <= MAX_BODY);
                    }
                }
                _ => {
                    let mut parts = rest.splitn(3, |b| *b == b' ');
                    let (Some(method), Some(path)) =
                        (parts.next().and_then(token), parts.next().and_then(token))
                    else {
                        return;
                    };
                    let body = parts.next();
                    let mut wire = Vec::new();
                    write_request(&mut wire, method, "hearth.fuzz:8443", path, body)
                        .await
                        .unwrap();
                    let mut r = BufReader::new(wire.as_slice());
                    match read_request(&mut r, MAX_BODY).await {
                        Ok(req) => {
                            assert_eq!(req.method, method);
                            assert_eq!(req.path, path);
                            assert_eq!(req.body, body.unwrap_or_default());
                        }
                        Err(HttpError::TooLarge(_)) => {
                            assert!(
                                body.map_or(0, <[u8]>::len) > MAX_BODY || wire.len() > 16 * 1024
                            )
                        }
                        Err(e) => {
                            panic!("{method} {path}: its own request does not read back: {e}")
                        }
                    }
                }
            }
        })
    });
}

//! The shapes of every daemon's results (decision 001): the daemon writes
//! them, every client reads them, as JSON on the wire. One module per
//! interface, each with typed calls over the raw proxy methods of
//! [`crate::proxies`]. [`cli`] holds what hearthctl prints besides them
//! (its error envelope, `status`'s report).

use serde::de::DeserializeOwned;

use crate::HearthError;

pub mod attestation;
pub mod cli;
pub mod daemon;
pub mod describe;
pub mod dhcp;
pub mod dns;
pub mod intent;
pub mod network;
pub mod pki;

/// Reads the JSON result of `method` as a `T`; a document of another shape
/// is an `Internal` error naming the method and the type.
pub fn decode<T: DeserializeOwned>(method: &str, text: &str) -> Result<T, HearthError> {
    serde_json::from_str(text).map_err(|e| {
        HearthError::Internal(format!(
            "{method}: the answer is not a {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// Writes a result for the wire.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<String, HearthError> {
    serde_json::to_string(value).map_err(|e| HearthError::Internal(format!("encoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn decode_names_the_method_and_the_type() {
        let e = decode::<T>("net.Show", r#"{"b": 1}"#).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("net.Show") && m.contains("contract::tests::T"),
            "{m}"
        );
        assert!(decode::<T>("x", r#"{"a": 1}"#).is_ok());
    }
}

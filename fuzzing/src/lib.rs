//! The properties Hearth's fuzz targets check, one function per target.
//!
//! Each function takes the fuzzer's bytes, feeds them to a parser of
//! untrusted input (the real one, from the crate that uses it) and panics
//! when a property fails: a panic is what libFuzzer reports as a crash.
//! `fuzz/` (a cargo-fuzz project, nightly) wraps each function in a
//! `fuzz_target!`; this crate's tests feed the checked-in corpus
//! (`fuzz/corpus/<target>/`) through the same functions on stable, so CI
//! replays every seed and every input that once crashed.
//!
//! Targets: [`TARGETS`].
#![forbid(unsafe_code)]
// A harness asserts on purpose: a failed property must crash.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod audit_log;
pub mod csr;
pub mod dsse_envelope;
pub mod http;
pub mod playbook_toml;
pub mod quote;
pub mod structured_intent;
pub mod tcg_log;
pub mod tpm_wire;
pub mod types;

/// One fuzz target: its name (the file under `fuzz/fuzz_targets/` and the
/// folder under `fuzz/corpus/`) and the function it runs.
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// What it parses and which property it checks.
    pub what: &'static str,
    /// The property check.
    pub run: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "types",
        what: "hearth-common's validated types (D-Bus and JSON arguments), subnet rules",
        run: types::run,
    },
    Target {
        name: "playbook_toml",
        what: "the playbook file (TOML) parser",
        run: playbook_toml::run,
    },
    Target {
        name: "dsse_envelope",
        what: "DSSE envelopes through the trust store's verification",
        run: dsse_envelope::run,
    },
    Target {
        name: "structured_intent",
        what: "intentd's structured intent: params JSON against the shipped catalog",
        run: structured_intent::run,
    },
    Target {
        name: "audit_log",
        what: "intentd's audit log reader and verifier",
        run: audit_log::run,
    },
    Target {
        name: "tpm_wire",
        what: "the TPM 2.0 structures hearth-verify reads from the network",
        run: tpm_wire::run,
    },
    Target {
        name: "quote",
        what: "hearth-verify's check of a /v1/quote answer",
        run: quote::run,
    },
    Target {
        name: "http",
        what: "the attestation endpoint's HTTP/1.1 reader (both sides)",
        run: http::run,
    },
    Target {
        name: "csr",
        what: "hearth-pkid's CSR parser",
        run: csr::run,
    },
    Target {
        name: "tcg_log",
        what: "the firmware's TCG event log (crypto-agile) hearth-verify parses and replays",
        run: tcg_log::run,
    },
];

/// The target of that name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

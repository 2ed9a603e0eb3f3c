//! `org.hearth.attestation` results (filled in by issue 19).

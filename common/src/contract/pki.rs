//! `org.hearth.pki` results (filled in by issue 19).

//! `org.hearth.network` results (filled in by issue 19).

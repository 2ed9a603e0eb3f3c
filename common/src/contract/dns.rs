//! `org.hearth.dns` results (filled in by issue 19).

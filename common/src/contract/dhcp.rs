//! `org.hearth.dhcp` results (filled in by issue 19).

//! hearth-dnsd (placeholder until the daemon skeleton lands).
fn main() {}

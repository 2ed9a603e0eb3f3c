//! `hearth-intentd eval …`: the evaluation entry point.
//!
//! HOOK FOR THE LEAD: `main.rs` sends every invocation whose first argument
//! is `eval` here, before the daemon skeleton parses anything, so the
//! evaluation of the text path (hearth-inference's interpreter run over a set
//! of requests against the verified catalog) can be wired in one place
//! without touching the daemon. It must never start the bus service, run a
//! playbook or write the audit log.

use std::process::ExitCode;

/// Runs `hearth-intentd eval ARGS…` (`args` excludes `eval`). Until the
/// evaluation is wired this says so and exits with 2 (usage).
pub fn main(args: &[String]) -> ExitCode {
    eprintln!(
        "hearth-intentd eval: not wired in this build (arguments: {}); \
         the evaluation of the text path plugs in at hearth_intentd::eval::main",
        if args.is_empty() {
            "none".to_string()
        } else {
            args.join(" ")
        }
    );
    ExitCode::from(2)
}

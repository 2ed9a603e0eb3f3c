//! `hearth-intentd eval --cases FILE.jsonl --report OUT.json`: the offline
//! evaluation of the text path (no bus, no daemons): the same models and
//! the default catalog as the daemon, every case's outcome and latency in
//! the report, `N passed, M failed` as the last line. It never starts the
//! bus service, runs a playbook or writes the audit log.

use std::process::ExitCode;

/// Runs `hearth-intentd eval ARGS…` (`args` excludes `eval`); see
/// [`hearth_inference::eval::run_eval_cli`] for the options.
pub fn main(args: &[String]) -> ExitCode {
    hearth_inference::eval::run_eval_cli(args)
}

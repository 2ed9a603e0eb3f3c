//! hearthctl, the appliance's command line. Everything it does goes through
//! the daemons over the system bus; it holds no state and no privilege.
#![forbid(unsafe_code)]

mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;
use hearth_common::contract::cli::ErrorReport;
use hearth_common::HearthError;

use cli::{Cli, Command};

const MAN_PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/hearthctl.1"));
const COMPLETION_BASH: &str = include_str!(concat!(env!("OUT_DIR"), "/hearthctl.bash"));
const COMPLETION_ZSH: &str = include_str!(concat!(env!("OUT_DIR"), "/_hearthctl"));
const COMPLETION_FISH: &str = include_str!(concat!(env!("OUT_DIR"), "/hearthctl.fish"));

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let verbose = cli.verbose;
    match cli.command {
        Command::Man => {
            emit(MAN_PAGE);
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            let script = match shell.as_str() {
                "bash" => COMPLETION_BASH,
                "zsh" => COMPLETION_ZSH,
                "fish" => COMPLETION_FISH,
                other => {
                    eprintln!("hearthctl: no completions for {other:?}: use bash, zsh or fish");
                    return ExitCode::from(2);
                }
            };
            emit(script);
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearthctl: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(cli.command, json, verbose))
}

async fn run(command: Command, json: bool, verbose: bool) -> ExitCode {
    let conn = match connect().await {
        Ok(c) => c,
        Err(e) => return report_error(&e, json, true),
    };
    let result = match command {
        Command::Status => cmd::status::run(&conn).await,
        Command::Ask(a) => cmd::intent::ask(a, json, verbose, &conn).await,
        Command::Net(c) => cmd::net::run(c, &conn).await,
        Command::Pki(c) => cmd::pki::run(c, &conn).await,
        Command::Attest(c) => cmd::attest::run(c, &conn).await,
        Command::Dns(c) => cmd::dns::run(c, &conn).await,
        Command::Devices(c) => cmd::devices::run(c, &conn).await,
        Command::Playbook(c) => cmd::intent::playbook(c, verbose, &conn).await,
        Command::Audit(c) => cmd::intent::audit(c, &conn).await,
        Command::Man | Command::Completions { .. } => unreachable_local(),
    };
    match result {
        Ok(out) => {
            if json {
                emitln(&serde_json::to_string_pretty(&out.json).unwrap_or_default());
            } else if !out.text.is_empty() {
                emitln(&out.text);
            }
            if out.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let transport = e.is_transport() || is_missing_service(&e);
            report_error(&e, json, transport)
        }
    }
}

fn unreachable_local() -> Result<cmd::Output, HearthError> {
    Err(HearthError::Internal("handled before connecting".into()))
}

async fn connect() -> Result<zbus::Connection, HearthError> {
    zbus::connection::Builder::system()
        .map_err(HearthError::ZBus)?
        .build()
        .await
        .map_err(HearthError::ZBus)
}

fn is_missing_service(e: &HearthError) -> bool {
    let m = e.message();
    m.contains("ServiceUnknown") || m.contains("NameHasNoOwner")
}

/// Prints an error and chooses the exit code: 2 for the bus or a missing
/// daemon (could not ask), 1 for a daemon's refusal.
fn report_error(e: &HearthError, json: bool, transport: bool) -> ExitCode {
    if json {
        emitln(&serde_json::to_string_pretty(&ErrorReport::from(e)).unwrap_or_default());
    } else {
        eprintln!("hearthctl: {}: {}", e.kind(), e.message());
    }
    ExitCode::from(if transport { 2 } else { 1 })
}

/// Writes to stdout; a reader that went away (`hearthctl … | head`) is not
/// an error worth a panic.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn emitln(text: &str) {
    emit(&format!("{text}\n"));
}

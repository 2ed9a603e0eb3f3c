//! hearth-pkid: the appliance CA on the bus (`org.hearth.Pki1`). All logic
//! is in the library; this opens the engine (running the ceremony when the
//! configuration asks) and serves it.
//!
//! `hearth-pkid init-token MODULE LABEL` is the one other use: it makes the
//! token at first boot, reading the SO PIN and then the user PIN as two
//! lines on standard input (never argv, unlike `softhsm2-util --pin`).
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("init-token") {
        return init_token(&args[1..]);
    }
    hearth_runtime::main::<hearth_pkid::PkiConfig, _, _, _>(
        hearth_common::names::PKI,
        |ctx, cfg| async move {
            ctx.notifier.status("opening the token");
            let state_dir = ctx.state_dir.clone();
            let engine =
                tokio::task::spawn_blocking(move || hearth_pkid::Engine::open(&cfg, &state_dir))
                    .await??;
            let iface = hearth_pkid::dbus::PkiInterface::new(engine, ctx.access.clone());
            iface.spawn_crl_refresher();
            ctx.notifier.status("CA ready: keys in the token");
            Ok(iface)
        },
    )
}

fn init_token(args: &[String]) -> ExitCode {
    let [module, label] = args else {
        eprintln!("usage: hearth-pkid init-token MODULE LABEL  (stdin: the SO PIN, then the user PIN, one line each)");
        return ExitCode::from(2);
    };
    let mut input = zeroize::Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().take(4096).read_to_string(&mut input) {
        eprintln!("hearth-pkid init-token: cannot read the PINs from stdin: {e}");
        return ExitCode::from(2);
    }
    let mut lines = input.lines();
    let (Some(so), Some(user), None) = (lines.next(), lines.next(), lines.next()) else {
        eprintln!("hearth-pkid init-token: stdin must hold exactly two lines: the SO PIN, then the user PIN");
        return ExitCode::from(2);
    };
    if so.len() < 4 || user.len() < 4 {
        eprintln!("hearth-pkid init-token: a PIN is shorter than 4 characters");
        return ExitCode::from(2);
    }
    let (so, user) = (
        hearth_hsm::AuthPin::from(so),
        hearth_hsm::AuthPin::from(user),
    );
    match hearth_hsm::init_token(std::path::Path::new(module), label, &so, &user) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-pkid init-token: {e}");
            ExitCode::FAILURE
        }
    }
}

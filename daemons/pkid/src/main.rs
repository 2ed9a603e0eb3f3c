//! hearth-pkid: until the daemon runtime lands, the binary only checks its
//! configuration and opens the CA (running the ceremony if configured).
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = PathBuf::from("/etc/hearth/hearth-pkid.toml");
    let mut state = PathBuf::from("/var/lib/hearth/hearth-pkid");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--config", Some(v)) => config = v.into(),
            ("--state-dir", Some(v)) => state = v.into(),
            _ => {
                eprintln!("usage: hearth-pkid [--config PATH] [--state-dir DIR]");
                return ExitCode::from(2);
            }
        }
    }
    let cfg: hearth_pkid::PkiConfig = match hearth_common::config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match hearth_pkid::Engine::open(&cfg, &state) {
        Ok(engine) => {
            eprintln!("{engine:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hearth-pkid: {e}");
            ExitCode::FAILURE
        }
    }
}

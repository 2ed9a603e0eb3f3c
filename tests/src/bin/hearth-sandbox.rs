//! `hearth-sandbox up DIR` / `hearth-sandbox down DIR`: starts (or stops) the
//! sandbox of real components and every built daemon. `scripts/sandbox`
//! builds the binaries and calls this.

use std::path::PathBuf;
use std::process::ExitCode;

use hearth_testbed::{Options, Sandbox};

const USAGE: &str = "usage: hearth-sandbox up DIR [--bin-dir DIR] [--repo DIR] [--only a,b] [--log FILTER] [--in-netns hearth-dnsd]\n       hearth-sandbox down DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let (Some(verb), Some(dir)) = (args.first(), args.get(1)) else {
        anyhow::bail!("{USAGE}");
    };
    let dir = PathBuf::from(dir);
    match verb.as_str() {
        "down" => {
            Sandbox::down(&dir)?;
            println!("sandbox {} stopped and removed", dir.display());
            Ok(())
        }
        "up" => {
            let exe = std::env::current_exe()?;
            let bin_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
            let mut opts = Options {
                dir: dir.clone(),
                repo: std::env::current_dir()?,
                bin_dir,
                only: None,
                log: "info".into(),
                in_netns: Vec::new(),
            };
            let mut rest = args[2..].iter();
            while let Some(flag) = rest.next() {
                let mut value = || {
                    rest.next()
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))
                };
                match flag.as_str() {
                    "--bin-dir" => opts.bin_dir = value()?.into(),
                    "--repo" => opts.repo = value()?.into(),
                    "--only" => opts.only = Some(value()?.split(',').map(str::to_string).collect()),
                    "--log" => opts.log = value()?,
                    "--in-netns" => {
                        opts.in_netns = value()?.split(',').map(str::to_string).collect()
                    }
                    _ => anyhow::bail!("unknown option {flag}\n{USAGE}"),
                }
            }
            let sb = Sandbox::up(&opts)?;
            for d in &sb.daemons {
                println!(
                    "{:<16} ready (pid {}, log {})",
                    d.service.unit,
                    d.child.id(),
                    d.log.display()
                );
            }
            println!(
                "netns {}; bus {}",
                sb.netns, sb.env["DBUS_SYSTEM_BUS_ADDRESS"]
            );
            println!(
                "source {}/env to use it; `scripts/sandbox down {}` stops it",
                sb.dir.display(),
                dir.display()
            );
            sb.detach();
            Ok(())
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

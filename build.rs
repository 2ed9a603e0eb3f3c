//! Generates hearthctl's man page and shell completions at build time, from
//! the same clap definitions the binary parses with.

use std::path::PathBuf;

use clap::CommandFactory;

#[allow(dead_code, missing_docs)]
#[path = "hearthctl/cli/mod.rs"]
mod cli;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=hearthctl/cli");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(std::io::ErrorKind::NotFound)?);
    let mut cmd = cli::Cli::command();

    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(out.join("hearthctl.1"), man)?;

    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "hearthctl", &out)?;
    }
    Ok(())
}

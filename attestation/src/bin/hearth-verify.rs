//! hearth-verify: the admin's remote attestation verifier for Hearth
//! appliances. No D-Bus; talks HTTPS to hearth-attestd, pinned to the
//! appliance's root CA. Exit status: 0 trusted (or done), 1 not trusted
//! (or enrollment refused), 2 could not check.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hearth_attestation::flow::{self, FlowError};
use hearth_attestation::verify::{
    golden_from_report, register_protection, EkCheck, Enrollment, FirmwareLogStatus, Golden,
    RegisterProtection, Report,
};
use hearth_attestation::wire::NvPublic;

/// `println!` that treats a closed stdout (`hearth-verify check ... | head`)
/// as the end of the output, not as a panic.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "hearth-verify",
    version,
    about = "Remote attestation of Hearth appliances"
)]
struct Cli {
    /// Where enrollment records are kept.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Pin the appliance's root CA, check its EK certificate, prove its AK
    /// lives in the same TPM (credential activation), and store the record.
    Enroll {
        /// The appliance, HOST:PORT.
        host: String,
        /// SHA-256 fingerprint of the appliance's root CA, obtained out of
        /// band. Without it, trust on first use (the fingerprint is printed).
        #[arg(long, value_name = "HEX")]
        ca_fingerprint: Option<String>,
        /// PEM bundle of TPM vendor CAs the EK certificate must chain to.
        /// Required: without it a software TPM would be enrolled.
        #[arg(long, value_name = "FILE")]
        ek_ca_bundle: Option<PathBuf>,
        /// Enroll without checking the EK certificate against any vendor
        /// (any TPM, a software one included, is accepted). Recorded in the
        /// enrollment and shown by every check.
        #[arg(long, conflicts_with = "ek_ca_bundle")]
        insecure_no_ek_check: bool,
    },
    /// Check an enrolled appliance against a golden policy.
    Check {
        /// The appliance, HOST:PORT.
        host: String,
        /// Golden policy (TOML).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Repeat the check every N seconds, reporting what changed.
    Watch {
        /// The appliance, HOST:PORT.
        host: String,
        /// Golden policy (TOML).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Seconds between checks.
        #[arg(long, default_value_t = 60)]
        interval: u64,
        /// Stop after this many checks (default: never).
        #[arg(long)]
        count: Option<u64>,
        /// Print each report as one JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Write a golden policy from a known-good enrolled appliance.
    Golden {
        /// The appliance, HOST:PORT.
        host: String,
        /// Output file.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Exit codes.
const TRUSTED: u8 = 0;
const NOT_TRUSTED: u8 = 1;
const COULD_NOT_CHECK: u8 = 2;

fn store_dir(cli: &Option<PathBuf>) -> PathBuf {
    cli.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        home.join(".local/share/hearth-verify")
    })
}

fn record_path(store: &Path, host: &str) -> PathBuf {
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    store.join(format!("{safe}.json"))
}

fn load_record(store: &Path, host: &str) -> Result<Enrollment, String> {
    let p = record_path(store, host);
    let data = std::fs::read(&p).map_err(|e| {
        format!(
            "{host} is not enrolled ({}: {e}); run `hearth-verify enroll {host}`",
            p.display()
        )
    })?;
    serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
}

fn load_policy(path: &Path) -> Result<Golden, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn print_report(r: &Report) {
    println!(
        "{}: {}",
        r.host,
        if r.trusted { "TRUSTED" } else { "NOT TRUSTED" }
    );
    println!(
        "  {} EK check at enrollment: {}",
        if r.ek_check == EkCheck::VendorCaBundle {
            "✓"
        } else {
            "!"
        },
        r.ek_check.describe()
    );
    match &r.register_protection {
        Some(p) => {
            println!(
                "  {} measurement register: {}",
                if p.protection == RegisterProtection::Undeletable {
                    "✓"
                } else {
                    "!"
                },
                p.detail
            );
            println!("    residual risk: {}", p.residual_risk);
        }
        None => println!("  ! measurement register: its definition could not be read"),
    }
    if r.firmware_log == FirmwareLogStatus::NotSent {
        println!(
            "  ! firmware event log: no firmware event log was sent; PCRs 0-7 are not backed by one"
        );
    }
    for c in &r.checks {
        println!(
            "  {} {}: {}",
            if c.ok { "✓" } else { "✗" },
            c.name,
            c.detail
        );
    }
    if !r.measured.is_empty() {
        println!("Measured:");
        for m in &r.measured {
            println!("  {:<17} {}  {}", m.kind.as_str(), m.name, m.sha256);
        }
    }
    if !r.actions.is_empty() {
        println!("Actions executed:");
        for a in &r.actions {
            println!("  - {a}");
        }
    }
}

fn print_changes(old: &Report, new: &Report) {
    if old.trusted != new.trusted {
        println!(
            "{}: now {}",
            new.host,
            if new.trusted {
                "TRUSTED"
            } else {
                "NOT TRUSTED"
            }
        );
    }
    for c in &new.checks {
        let before = old.checks.iter().find(|o| o.name == c.name);
        if before.map(|b| b.ok) != Some(c.ok) {
            println!(
                "  {} {}: {}",
                if c.ok { "✓" } else { "✗" },
                c.name,
                c.detail
            );
        }
    }
    for m in new.measured.iter().filter(|m| !old.measured.contains(m)) {
        println!("  + measured {} {} {}", m.kind, m.name, m.sha256);
    }
    for a in new.actions.iter().skip(old.actions.len()) {
        println!("  + action {a}");
    }
}

async fn run(cli: Cli) -> u8 {
    let store = store_dir(&cli.store);
    match cli.cmd {
        Cmd::Enroll {
            host,
            ca_fingerprint,
            ek_ca_bundle,
            insecure_no_ek_check,
        } => {
            if ek_ca_bundle.is_none() && !insecure_no_ek_check {
                eprintln!(
                    "✗ enrollment refused: no --ek-ca-bundle. Without the TPM vendor's CA bundle the EK certificate proves nothing (a software TPM would be enrolled). Give --ek-ca-bundle FILE, or --insecure-no-ek-check to enroll without that check (it is recorded and shown by every check)."
                );
                return NOT_TRUSTED;
            }
            let bundle = match ek_ca_bundle.as_ref().map(std::fs::read).transpose() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("hearth-verify: EK CA bundle: {e}");
                    return COULD_NOT_CHECK;
                }
            };
            match flow::enroll(&host, ca_fingerprint.as_deref(), bundle.as_deref()).await {
                Ok(enrolled) => {
                    let r = &enrolled.record;
                    if enrolled.tofu {
                        println!(
                            "Trusting {host}'s root CA on first use. Compare its fingerprint with the one the appliance shows:\n  {}",
                            r.root_ca_fingerprint
                        );
                    } else {
                        println!("✓ root CA fingerprint matches {}", r.root_ca_fingerprint);
                    }
                    match (&r.ek_cert_pem, r.ek_check) {
                        (Some(_), EkCheck::VendorCaBundle) => {
                            println!("✓ EK certificate chains to the vendor CA bundle")
                        }
                        (Some(_), _) => println!(
                            "! EK certificate NOT checked (--insecure-no-ek-check): any TPM, a software one included, is accepted"
                        ),
                        (None, _) => println!(
                            "! the TPM has no EK certificate, NOT checked (--insecure-no-ek-check)"
                        ),
                    }
                    println!("✓ credential activation: the AK lives in the TPM that holds the EK");
                    if let Some(p) = hex::decode(&r.nv_public)
                        .ok()
                        .and_then(|b| NvPublic::parse(&b).ok())
                        .map(|nv| register_protection(&nv))
                    {
                        println!(
                            "{} measurement register: {}\n  residual risk: {}",
                            if p == RegisterProtection::Undeletable {
                                "✓"
                            } else {
                                "!"
                            },
                            p.describe(),
                            p.residual_risk()
                        );
                    }
                    let path = record_path(&store, &host);
                    let saved = std::fs::create_dir_all(&store)
                        .map_err(|e| e.to_string())
                        .and_then(|_| {
                            let mut data =
                                serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
                            data.push(b'\n');
                            std::fs::write(&path, data).map_err(|e| e.to_string())
                        });
                    match saved {
                        Ok(()) => {
                            println!("enrolled {host}: {}", path.display());
                            TRUSTED
                        }
                        Err(e) => {
                            eprintln!("hearth-verify: {}: {e}", path.display());
                            COULD_NOT_CHECK
                        }
                    }
                }
                Err(e @ (FlowError::Enroll(_) | FlowError::Fingerprint { .. })) => {
                    eprintln!("✗ {e}");
                    NOT_TRUSTED
                }
                Err(e) => {
                    eprintln!("hearth-verify: could not enroll {host}: {e}");
                    COULD_NOT_CHECK
                }
            }
        }
        Cmd::Check { host, policy, json } => {
            let (record, golden) = match (load_record(&store, &host), load_policy(&policy)) {
                (Ok(r), Ok(g)) => (r, g),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("hearth-verify: {e}");
                    return COULD_NOT_CHECK;
                }
            };
            match flow::check(&record, Some(&golden)).await {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&report).unwrap_or_default()
                        );
                    } else {
                        print_report(&report);
                    }
                    if report.trusted {
                        TRUSTED
                    } else {
                        NOT_TRUSTED
                    }
                }
                Err(e) => {
                    eprintln!("hearth-verify: could not check {host}: {e}");
                    COULD_NOT_CHECK
                }
            }
        }
        Cmd::Watch {
            host,
            policy,
            interval,
            count,
            json,
        } => {
            let (record, golden) = match (load_record(&store, &host), load_policy(&policy)) {
                (Ok(r), Ok(g)) => (r, g),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("hearth-verify: {e}");
                    return COULD_NOT_CHECK;
                }
            };
            let mut last: Option<Report> = None;
            let mut n = 0u64;
            loop {
                let code;
                match flow::check(&record, Some(&golden)).await {
                    Ok(report) => {
                        code = if report.trusted { TRUSTED } else { NOT_TRUSTED };
                        if json {
                            println!("{}", serde_json::to_string(&report).unwrap_or_default());
                        } else {
                            match &last {
                                None => print_report(&report),
                                Some(old) => print_changes(old, &report),
                            }
                        }
                        last = Some(report);
                    }
                    Err(e) => {
                        code = COULD_NOT_CHECK;
                        eprintln!("hearth-verify: could not check {host}: {e}");
                    }
                }
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    return code;
                }
                tokio::time::sleep(Duration::from_secs(interval)).await;
            }
        }
        Cmd::Golden { host, output } => {
            let record = match load_record(&store, &host) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hearth-verify: {e}");
                    return COULD_NOT_CHECK;
                }
            };
            match flow::check(&record, None).await {
                Ok(report) if report.trusted => {
                    let golden = golden_from_report(&report);
                    let text = match toml::to_string_pretty(&golden) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("hearth-verify: {e}");
                            return COULD_NOT_CHECK;
                        }
                    };
                    let text = format!(
                        "# Golden policy written by hearth-verify from {host}.\n# Review it: every digest below is trusted from now on.\n{text}"
                    );
                    match std::fs::write(&output, text) {
                        Ok(()) => {
                            println!(
                                "wrote {} ({} PCRs, {} measurements)",
                                output.display(),
                                golden.pcrs.len(),
                                golden.measurement.len()
                            );
                            if !golden.require_firmware_log {
                                println!(
                                    "! require_firmware_log = false: the appliance sent no firmware event log, PCRs 0-7 are compared without one"
                                );
                            }
                            if !golden.require_protected_register {
                                println!(
                                    "! require_protected_register = false: the measurement register is {}",
                                    report
                                        .register_protection
                                        .as_ref()
                                        .map(|p| p.detail.as_str())
                                        .unwrap_or("of unknown protection")
                                );
                            }
                            TRUSTED
                        }
                        Err(e) => {
                            eprintln!("hearth-verify: {}: {e}", output.display());
                            COULD_NOT_CHECK
                        }
                    }
                }
                Ok(report) => {
                    print_report(&report);
                    eprintln!(
                        "hearth-verify: the appliance does not verify; no golden policy written"
                    );
                    NOT_TRUSTED
                }
                Err(e) => {
                    eprintln!("hearth-verify: could not check {host}: {e}");
                    COULD_NOT_CHECK
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hearth-verify: {e}");
            return ExitCode::from(COULD_NOT_CHECK);
        }
    };
    ExitCode::from(rt.block_on(run(cli)))
}

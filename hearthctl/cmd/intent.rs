//! `hearthctl ask`, `playbook` and `audit` over `org.hearth.Intent1`, read
//! through the typed calls of [`hearth_common::contract::intent`].

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use hearth_common::contract::cli::{SignReport, VerifiedFile};
use hearth_common::contract::intent::{
    self as contract, Answer, Clarify, ClarifyOption, Ended, Outcome, Plan, PreviewAnswer, Status,
    TrialEnd, TrialStatus,
};
use hearth_common::proxies::intent::IntentProxy;
use hearth_common::HearthError;
use serde_json::{json, Value};

use super::{table_of, Output};
use crate::cli::intent::{AskArgs, AuditCommand, PlaybookCommand};

async fn proxy(conn: &zbus::Connection) -> Result<IntentProxy<'static>, HearthError> {
    Ok(IntentProxy::new(conn).await?)
}

/// The `--json` form of a contract value.
fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Parses `NAME=VALUE` pairs; numbers stay numbers.
fn params_json(pairs: &[String]) -> Result<String, HearthError> {
    let mut m = BTreeMap::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            HearthError::InvalidArgument(format!("invalid --param {p:?}: expected NAME=VALUE"))
        })?;
        let val = match v.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(v),
        };
        m.insert(k.trim().to_string(), val);
    }
    Ok(serde_json::to_string(&m).unwrap_or_default())
}

/// A change answer's one line (`None` when `call` is not a change).
fn change_line(call: &str, text: &str) -> Option<String> {
    hearth_common::contract::describe::change(call, text).map(|d| d.line)
}

/// Arguments by name, as compact JSON.
fn args_text<T: serde::Serialize>(args: &T) -> String {
    serde_json::to_string(args).unwrap_or_default()
}

/// The plan for people: what it does, what will change (the daemons'
/// previews, one line each), and who must agree. `verbose` adds the
/// playbook, every call with its arguments and undo, and the raw previews.
fn render_plan(plan: &Plan, verbose: bool) -> String {
    render_plan_with(plan, verbose, true)
}

/// [`render_plan`]; `previews` false once the steps ran (their answers say
/// what changed).
fn render_plan_with(plan: &Plan, verbose: bool, previews: bool) -> String {
    let mut out = vec![format!("Plan {}", plan.plan_id)];
    out.push(format!("  {}", plan.explanation));
    if verbose {
        out.push(format!(
            "  playbook {} v{} (sha256 {})",
            plan.playbook.id,
            plan.playbook.version,
            plan.playbook.digest.chars().take(16).collect::<String>()
        ));
        for (i, s) in plan.steps.iter().enumerate() {
            out.push(format!("  {}. {} {}", i + 1, s.call, args_text(&s.args)));
            if let Some(u) = &s.undo {
                out.push(format!("     undo: {} {}", u.call, args_text(&u.args)));
            }
        }
    }
    let shown = if previews { &plan.preview[..] } else { &[] };
    for x in shown {
        let call = &x.call;
        let p = &x.preview;
        match (change_line(call, &p.text()), p) {
            (Some(line), _) => out.push(format!("  {line}")),
            (None, PreviewAnswer::Failed(f)) => {
                out.push(format!("  {call} may fail: {} ({})", f.error, f.note))
            }
            (None, PreviewAnswer::Answer(_)) if verbose => {
                out.push(format!("  preview {call}: {p}"))
            }
            (None, PreviewAnswer::Answer(_)) => {}
        }
    }
    out.push(format!(
        "  risk {}, approval {}",
        plan.risk.as_str(),
        plan.approval.as_str()
    ));
    out.join("\n")
}

fn render_outcome(o: &Outcome, verbose: bool) -> String {
    let ran = !o.steps.is_empty();
    let mut out = vec![render_plan_with(&o.plan, verbose, !ran)];
    for s in &o.steps {
        let call = &s.call;
        if !s.ok {
            out.push(format!(
                "  ran {call} FAILED: {}",
                s.error.as_deref().unwrap_or_default()
            ));
            continue;
        }
        let result = s.result.as_deref().unwrap_or_default();
        if let Some(line) = change_line(call, s.result.as_deref().unwrap_or("null")) {
            out.push(format!("  {line}"));
            if verbose {
                out.push(format!("  ran {call} ok: {result}"));
            }
        } else if let Some(t) = super::read_answer(call, result) {
            out.push(String::new());
            out.push(t);
            out.push(String::new());
        } else {
            out.push(format!("  ran {call} ok: {result}"));
        }
    }
    for s in &o.rollback {
        let mark = if s.ok { "ok" } else { "FAILED" };
        out.push(format!("  undid {} {mark}", s.call));
    }
    match o.status {
        Status::Pending => {
            out.push(format!("Pending: waiting for {}.", o.missing.join(" and ")));
        }
        Status::Executed => out.push("Done.".into()),
        Status::Failed => {
            let undone = o.rollback.len();
            let all_ok = o.rollback.iter().all(|r| r.ok);
            let tail = match (undone, all_ok) {
                (0, _) => "no step had completed, nothing to undo".to_string(),
                (n, true) => format!("{n} completed step(s) undone in reverse order"),
                (n, false) => format!("{n} undo call(s) made, NOT ALL SUCCEEDED (see above)"),
            };
            out.push(format!(
                "Failed: {}; {tail}.",
                o.error.as_deref().unwrap_or_default()
            ))
        }
        Status::Cancelled => out.push("Cancelled; nothing ran.".into()),
        Status::Trial => out.push(format!(
            "On trial: reverted automatically {} unless you run `hearthctl playbook keep {}`.",
            until(o.trial_until_ms),
            o.plan.plan_id
        )),
    }
    out.join("\n")
}

/// "in 58 s" for a Unix-milliseconds deadline.
fn until(ms: Option<u64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match ms {
        Some(t) if t > now => format!("in {} s", (t - now).div_ceil(1000)),
        Some(_) => "now".into(),
        None => "at the end of its window".into(),
    }
}

/// How a trial ended (`Keep`, or `Cancel` of a change on trial).
fn trial_end(v: TrialEnd) -> Output {
    let id = &v.plan_id;
    let text = match v.status {
        TrialStatus::Kept => format!("Kept: plan {id} is no longer on trial."),
        TrialStatus::Reverted => {
            let ok = v.undo.iter().all(|u| u.ok);
            let mut lines = vec![format!(
                "Reverted plan {id} ({}): {} undo call(s){}.",
                v.reason.as_deref().unwrap_or_default(),
                v.undo.len(),
                if ok { "" } else { ", NOT ALL SUCCEEDED" }
            )];
            for u in &v.undo {
                lines.push(format!(
                    "  undid {} {}",
                    u.call,
                    if u.ok {
                        "ok".to_string()
                    } else {
                        format!("FAILED: {}", u.error.as_deref().unwrap_or_default())
                    }
                ));
            }
            lines.join("\n")
        }
    };
    Output::ok(json(&v), text)
}

fn outcome(o: Outcome, verbose: bool) -> Output {
    let text = render_outcome(&o, verbose);
    match o.status {
        Status::Failed | Status::Cancelled => Output::failed(json(&o), text),
        _ => Output::ok(json(&o), text),
    }
}

/// `Cancel`'s answer: a plan's outcome, or how a trial ended.
fn ended(e: Ended, verbose: bool) -> Output {
    match e {
        Ended::Outcome(o) => outcome(*o, verbose),
        Ended::Trial(t) => trial_end(t),
    }
}

fn prompt(question: &str) -> bool {
    let stdin = std::io::stdin();
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// A clarifying question and its numbered options.
fn render_clarify(o: &Clarify) -> String {
    let mut out = vec![o.question.clone()];
    for (i, opt) in o.options.iter().enumerate() {
        out.push(format!("  {}. {} [{}]", i + 1, opt.summary, opt.playbook));
    }
    out.push("Nothing was run.".into());
    out.join("\n")
}

/// The option the owner picks: `--choose N`, or asked on the terminal.
/// None when nothing was chosen (no terminal, `--json`, or no answer).
fn choose(
    o: &Clarify,
    given: Option<usize>,
    json: bool,
) -> Result<Option<ClarifyOption>, HearthError> {
    let options = &o.options;
    let pick = |n: usize| {
        options.get(n.wrapping_sub(1)).cloned().ok_or_else(|| {
            HearthError::InvalidArgument(format!(
                "--choose {n}: there are {} option(s)",
                options.len()
            ))
        })
    };
    if let Some(n) = given {
        return pick(n).map(Some);
    }
    let stdin = std::io::stdin();
    if json || !stdin.is_terminal() {
        if !json {
            eprintln!("(no terminal: run again with --choose N to pick an option)");
        }
        return Ok(None);
    }
    eprintln!("{}", render_clarify(o).trim_end_matches("Nothing was run."));
    match options.len() {
        1 => eprint!("Choose it? [1, Enter for none] "),
        n => eprint!("Which one? [1-{n}, Enter for none] "),
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return Ok(None);
    }
    match line.trim().parse::<usize>() {
        Ok(n) => pick(n).map(Some),
        Err(_) => Ok(None),
    }
}

/// `hearthctl ask`.
pub async fn ask(
    args: AskArgs,
    json: bool,
    verbose: bool,
    conn: &zbus::Connection,
) -> Result<Output, HearthError> {
    let p = proxy(conn).await?;
    let first = match &args.playbook {
        Some(id) => Answer::Outcome(Box::new(
            contract::ask_structured(&p, id, &params_json(&args.params)?).await?,
        )),
        None => contract::ask(&p, &args.text.join(" ")).await?,
    };
    let o = match first {
        Answer::Outcome(o) => *o,
        Answer::Clarify(c) => match choose(&c, args.choose, json)? {
            Some(opt) => {
                let params = serde_json::to_string(&opt.params).unwrap_or_default();
                contract::ask_structured(&p, &opt.playbook, &params).await?
            }
            None => {
                let text = render_clarify(&c);
                return Ok(Output::failed(self::json(&c), text));
            }
        },
    };
    let needs_me = o.status == Status::Pending && o.missing.iter().any(|x| x.contains("requester"));
    if !needs_me {
        return Ok(outcome(o, verbose));
    }
    let id = o.plan.plan_id.clone();
    let go = if args.yes {
        true
    } else if json {
        // Scripts decide with --yes; the pending plan is the answer.
        return Ok(outcome(o, verbose));
    } else if !std::io::stdin().is_terminal() {
        // Nobody to ask: the plan is shown once, with what to do.
        return Ok(match contract::cancel(&p, &id).await? {
            Ended::Outcome(answer) => {
                let text = format!(
                    "{}
Not run: no terminal to confirm on. Ask again with --yes to run it.",
                    render_outcome(&answer, verbose)
                );
                Output::failed(self::json(&answer), text)
            }
            Ended::Trial(t) => trial_end(t),
        });
    } else {
        eprintln!("{}", render_plan(&o.plan, verbose));
        prompt("Run this plan?")
    };
    Ok(if go {
        let answer = match args.trial {
            Some(secs) => contract::confirm_trial(&p, &id, secs).await?,
            None => contract::confirm(&p, &id).await?,
        };
        outcome(answer, verbose)
    } else {
        ended(contract::cancel(&p, &id).await?, verbose)
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String, HearthError> {
    std::fs::read_to_string(path)
        .map_err(|e| HearthError::InvalidArgument(format!("{}: cannot read: {e}", path.display())))
}

/// The signing tool beside hearthctl, or in /usr/libexec/hearth.
fn signing_tool() -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("hearth-playbook")));
    match beside {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("/usr/libexec/hearth/hearth-playbook"),
    }
}

/// `hearthctl playbook …`.
pub async fn playbook(
    cmd: PlaybookCommand,
    verbose: bool,
    conn: &zbus::Connection,
) -> Result<Output, HearthError> {
    match cmd {
        PlaybookCommand::Sign {
            pkid,
            key,
            chain,
            out,
            files,
        } => {
            // hearth-playbook signs (no shell: the arguments are passed as
            // they are): with a key file, or through hearth-pkid, whose key
            // never leaves the HSM.
            let tool = signing_tool();
            let mut cmd = std::process::Command::new(&tool);
            match (pkid, key, chain) {
                (true, _, _) => {
                    cmd.arg("sign-pkid");
                }
                (false, Some(key), Some(chain)) => {
                    cmd.arg("sign")
                        .arg("--key")
                        .arg(key)
                        .arg("--chain")
                        .arg(chain);
                }
                _ => {
                    return Err(HearthError::InvalidArgument(
                        "give --pkid, or --key and --chain".into(),
                    ))
                }
            }
            let res = cmd
                .arg("--out")
                .arg(&out)
                .args(&files)
                .output()
                .map_err(|e| {
                    HearthError::Internal(format!("cannot run {}: {e}", tool.display()))
                })?;
            let stdout = String::from_utf8_lossy(&res.stdout).trim().to_string();
            let stderr = String::from_utf8_lossy(&res.stderr).trim().to_string();
            let signed = stdout.lines().map(str::to_string).collect();
            if res.status.success() {
                let report = SignReport {
                    signed,
                    error: None,
                };
                Ok(Output::ok(json(&report), stdout))
            } else {
                let report = SignReport {
                    signed,
                    error: Some(stderr.clone()),
                };
                Ok(Output::failed(json(&report), stderr))
            }
        }
        other => {
            let p = proxy(conn).await?;
            playbook_bus(other, verbose, &p).await
        }
    }
}

async fn playbook_bus(
    cmd: PlaybookCommand,
    verbose: bool,
    p: &IntentProxy<'_>,
) -> Result<Output, HearthError> {
    match cmd {
        PlaybookCommand::List => {
            let v = contract::catalog(p).await?;
            let mut text = table_of(
                ["ID", "VERSION", "RISK", "DESCRIPTION"],
                &v.playbooks,
                |s| {
                    [
                        s.id.clone(),
                        s.version.to_string(),
                        s.risk.as_str().to_string(),
                        s.description.clone(),
                    ]
                },
            );
            if !v.refused.is_empty() {
                text.push_str("\n\nRefused:");
                for x in &v.refused {
                    text.push_str(&format!("\n  {}: {} ({})", x.file, x.reason, x.kind));
                }
            }
            Ok(Output::ok(json(&v), text))
        }
        PlaybookCommand::Show { id } => {
            let v = json(&contract::show_playbook(p, &id).await?);
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Verify { files } => {
            let mut items = Vec::new();
            let mut lines = Vec::new();
            let mut all_ok = true;
            for f in files {
                let content = read(&f)?;
                match contract::verify_playbook(p, &file_name(&f), &content).await {
                    Ok(v) => {
                        lines.push(format!("{}: ok ({} v{})", f.display(), v.id, v.version));
                        items.push(VerifiedFile {
                            file: f.display().to_string(),
                            ok: true,
                            playbook: Some(v),
                            error: None,
                        });
                    }
                    Err(e) if !e.is_transport() => {
                        all_ok = false;
                        lines.push(format!("{}: {}", f.display(), e.message()));
                        items.push(VerifiedFile {
                            file: f.display().to_string(),
                            ok: false,
                            playbook: None,
                            error: Some(e.message()),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            let v = json(&items);
            Ok(if all_ok {
                Output::ok(v, lines.join("\n"))
            } else {
                Output::failed(v, lines.join("\n"))
            })
        }
        PlaybookCommand::Install { file } => {
            let content = read(&file)?;
            let v = contract::install_playbook(p, &file_name(&file), &content).await?;
            let text = format!("installed {} v{}", v.id, v.version);
            Ok(Output::ok(json(&v), text))
        }
        PlaybookCommand::Pending => {
            let v = contract::pending(p).await?;
            let text = table_of(["PLAN", "UID", "APPROVAL", "EXPLANATION"], &v, |x| {
                [
                    x.plan_id.clone(),
                    x.requester.to_string(),
                    x.approval.as_str().to_string(),
                    x.explanation.clone(),
                ]
            });
            Ok(Output::ok(json(&v), text))
        }
        PlaybookCommand::Approve { plan_id } => {
            Ok(outcome(contract::approve(p, &plan_id).await?, verbose))
        }
        PlaybookCommand::Confirm { plan_id, trial } => Ok(outcome(
            match trial {
                Some(secs) => contract::confirm_trial(p, &plan_id, secs).await?,
                None => contract::confirm(p, &plan_id).await?,
            },
            verbose,
        )),
        PlaybookCommand::Cancel { plan_id } => {
            Ok(ended(contract::cancel(p, &plan_id).await?, verbose))
        }
        PlaybookCommand::Keep { plan_id } => Ok(trial_end(contract::keep(p, &plan_id).await?)),
        PlaybookCommand::Trials => {
            let v = contract::trials(p).await?;
            let text = table_of(["PLAN", "UID", "PLAYBOOK", "REVERTED"], &v, |x| {
                [
                    x.plan_id.clone(),
                    x.requester.to_string(),
                    x.playbook.id.clone(),
                    until(Some(x.until_ms)),
                ]
            });
            Ok(Output::ok(json(&v), text))
        }
        PlaybookCommand::Sign { .. } => Err(HearthError::Internal("signing is local".into())),
    }
}

/// `hearthctl audit …`.
pub async fn audit(cmd: AuditCommand, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let p = proxy(conn).await?;
    match cmd {
        AuditCommand::List { limit } => {
            let v = contract::audit_list(&p, limit).await?;
            let headers = ["SEQ", "KIND", "UID", "PLAYBOOK/REQUEST", "HASH"];
            let text = table_of(headers, &v, |r| {
                let ev = &r.event;
                let what = match &ev.playbook {
                    Some(pb) => pb.id.clone(),
                    None => ev
                        .request
                        .as_ref()
                        .and_then(|q| q.text.as_deref())
                        .unwrap_or_default()
                        .chars()
                        .take(40)
                        .collect(),
                };
                [
                    r.seq.to_string(),
                    ev.kind.clone(),
                    ev.caller_uid.map(|u| u.to_string()).unwrap_or_default(),
                    what,
                    r.hash.chars().take(16).collect(),
                ]
            });
            Ok(Output::ok(json(&v), text))
        }
        AuditCommand::Verify { against_tpm } => {
            let v = if against_tpm {
                // hearth-attestd's event log, vouched for by the TPM register
                // it replays to; hearth-intentd compares its audit log with it.
                let a = hearth_common::proxies::attestation::AttestationProxy::new(conn).await?;
                let st = hearth_common::contract::attestation::status(&a).await?;
                if !st.consistent {
                    let text = format!(
                        "the attestation event log does not match the TPM register: {}",
                        st.detail.as_deref().unwrap_or("-")
                    );
                    let v = serde_json::to_value(&st).unwrap_or_default();
                    return Ok(Output::failed(v, text));
                }
                let log = a.log().await?;
                contract::audit_verify_against(&p, &log).await?
            } else {
                contract::audit_verify(&p).await?
            };
            let mut text = format!(
                "{} records: {}",
                v.records,
                match (v.ok, against_tpm) {
                    (true, true) => "chain intact, every action record in the TPM's event log",
                    (true, false) => "chain intact",
                    (false, true) => "CHAIN BROKEN OR NOT ATTESTED",
                    (false, false) => "CHAIN BROKEN",
                }
            );
            for x in &v.problems {
                text.push_str(&format!("\n  {x}"));
            }
            Ok(if v.ok {
                Output::ok(json(&v), text)
            } else {
                Output::failed(json(&v), text)
            })
        }
    }
}

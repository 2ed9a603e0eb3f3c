//! `hearthctl ask`, `playbook` and `audit` over `org.hearth.Intent1`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use hearth_common::proxies::intent::IntentProxy;
use hearth_common::HearthError;
use serde_json::{json, Value};

use super::{table, Output};
use crate::cli::intent::{AskArgs, AuditCommand, PlaybookCommand};

async fn proxy(conn: &zbus::Connection) -> Result<IntentProxy<'static>, HearthError> {
    Ok(IntentProxy::new(conn).await?)
}

fn parse(s: &str) -> Result<Value, HearthError> {
    serde_json::from_str(s)
        .map_err(|e| HearthError::Internal(format!("hearth-intentd sent invalid JSON: {e}")))
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
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
fn change_line(call: &str, result: &Value) -> Option<String> {
    let text = match result {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    hearth_common::contract::describe::change(call, &text).map(|d| d.line)
}

/// The plan for people: what it does, what will change (the daemons'
/// previews, one line each), and who must agree. `verbose` adds the
/// playbook, every call with its arguments and undo, and the raw previews.
fn render_plan(plan: &Value, verbose: bool) -> String {
    render_plan_with(plan, verbose, true)
}

/// [`render_plan`]; `previews` false once the steps ran (their answers say
/// what changed).
fn render_plan_with(plan: &Value, verbose: bool, previews: bool) -> String {
    let mut out = vec![format!("Plan {}", str_of(&plan["plan_id"]))];
    out.push(format!("  {}", str_of(&plan["explanation"])));
    if verbose {
        out.push(format!(
            "  playbook {} v{} (sha256 {})",
            str_of(&plan["playbook"]["id"]),
            str_of(&plan["playbook"]["version"]),
            str_of(&plan["playbook"]["digest"])
                .chars()
                .take(16)
                .collect::<String>()
        ));
        if let Some(steps) = plan["steps"].as_array() {
            for (i, s) in steps.iter().enumerate() {
                out.push(format!("  {}. {} {}", i + 1, str_of(&s["call"]), s["args"]));
                if let Some(u) = s.get("undo") {
                    out.push(format!("     undo: {} {}", str_of(&u["call"]), u["args"]));
                }
            }
        }
    }
    let shown = if previews {
        plan["preview"].as_array()
    } else {
        None
    };
    for x in shown.into_iter().flatten() {
        let call = str_of(&x["call"]);
        let p = &x["preview"];
        match (change_line(&call, p), p.get("error")) {
            (Some(line), _) => out.push(format!("  {line}")),
            (None, Some(e)) => out.push(format!(
                "  {call} may fail: {} ({})",
                str_of(e),
                str_of(&p["note"])
            )),
            (None, None) if verbose => out.push(format!("  preview {call}: {p}")),
            (None, None) => {}
        }
    }
    out.push(format!(
        "  risk {}, approval {}",
        str_of(&plan["risk"]),
        str_of(&plan["approval"])
    ));
    out.join("\n")
}

fn render_outcome(o: &Value, verbose: bool) -> String {
    let ran = o["steps"].as_array().is_some_and(|s| !s.is_empty());
    let mut out = vec![render_plan_with(&o["plan"], verbose, !ran)];
    let status = str_of(&o["status"]);
    if let Some(steps) = o["steps"].as_array() {
        for s in steps {
            let call = str_of(&s["call"]);
            if s["ok"] != json!(true) {
                out.push(format!("  ran {call} FAILED: {}", str_of(&s["error"])));
                continue;
            }
            let result = str_of(&s["result"]);
            if let Some(line) = change_line(&call, &s["result"]) {
                out.push(format!("  {line}"));
                if verbose {
                    out.push(format!("  ran {call} ok: {result}"));
                }
            } else if let Some(t) = super::read_answer(&call, &result) {
                out.push(String::new());
                out.push(t);
                out.push(String::new());
            } else {
                out.push(format!("  ran {call} ok: {result}"));
            }
        }
    }
    if let Some(rb) = o["rollback"].as_array() {
        for s in rb {
            let mark = if s["ok"] == json!(true) {
                "ok"
            } else {
                "FAILED"
            };
            out.push(format!("  undid {} {mark}", str_of(&s["call"])));
        }
    }
    match status.as_str() {
        "pending" => {
            let missing: Vec<String> = o["missing"]
                .as_array()
                .map(|a| a.iter().map(str_of).collect())
                .unwrap_or_default();
            out.push(format!("Pending: waiting for {}.", missing.join(" and ")));
        }
        "executed" => out.push("Done.".into()),
        "failed" => {
            let undone = o["rollback"].as_array().map(Vec::len).unwrap_or(0);
            let all_ok = o["rollback"]
                .as_array()
                .is_none_or(|a| a.iter().all(|r| r["ok"] == true));
            let tail = match (undone, all_ok) {
                (0, _) => "no step had completed, nothing to undo".to_string(),
                (n, true) => format!("{n} completed step(s) undone in reverse order"),
                (n, false) => format!("{n} undo call(s) made, NOT ALL SUCCEEDED (see above)"),
            };
            out.push(format!("Failed: {}; {tail}.", str_of(&o["error"])))
        }
        "cancelled" => out.push("Cancelled; nothing ran.".into()),
        "trial" => out.push(format!(
            "On trial: reverted automatically {} unless you run `hearthctl playbook keep {}`.",
            until(&o["trial_until_ms"]),
            str_of(&o["plan"]["plan_id"])
        )),
        other => out.push(other.to_string()),
    }
    out.join("\n")
}

/// "in 58 s" for a Unix-milliseconds deadline.
fn until(ms: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match ms.as_u64() {
        Some(t) if t > now => format!("in {} s", (t - now).div_ceil(1000)),
        Some(_) => "now".into(),
        None => "at the end of its window".into(),
    }
}

/// How a trial ended (`Keep`, or `Cancel` of a change on trial).
fn trial_end(v: Value) -> Output {
    let id = str_of(&v["plan_id"]);
    let text = match v["status"].as_str() {
        Some("kept") => format!("Kept: plan {id} is no longer on trial."),
        _ => {
            let undo = v["undo"].as_array().cloned().unwrap_or_default();
            let ok = undo.iter().all(|u| u["ok"] == json!(true));
            let mut lines = vec![format!(
                "Reverted plan {id} ({}): {} undo call(s){}.",
                str_of(&v["reason"]),
                undo.len(),
                if ok { "" } else { ", NOT ALL SUCCEEDED" }
            )];
            for u in &undo {
                lines.push(format!(
                    "  undid {} {}",
                    str_of(&u["call"]),
                    if u["ok"] == json!(true) {
                        "ok".to_string()
                    } else {
                        format!("FAILED: {}", str_of(&u["error"]))
                    }
                ));
            }
            lines.join("\n")
        }
    };
    Output::ok(v, text)
}

fn outcome(o: Value, verbose: bool) -> Output {
    if o.get("plan").is_none() && o.get("audit").is_some() {
        return trial_end(o);
    }
    let text = render_outcome(&o, verbose);
    match o["status"].as_str() {
        Some("failed") | Some("cancelled") => Output::failed(o, text),
        _ => Output::ok(o, text),
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
fn render_clarify(o: &Value) -> String {
    let mut out = vec![str_of(&o["question"])];
    for (i, opt) in o["options"].as_array().into_iter().flatten().enumerate() {
        out.push(format!(
            "  {}. {} [{}]",
            i + 1,
            str_of(&opt["summary"]),
            str_of(&opt["playbook"])
        ));
    }
    out.push("Nothing was run.".into());
    out.join("\n")
}

/// The option the owner picks: `--choose N`, or asked on the terminal.
/// None when nothing was chosen (no terminal, `--json`, or no answer).
fn choose(o: &Value, given: Option<usize>, json: bool) -> Result<Option<Value>, HearthError> {
    let options = o["options"].as_array().cloned().unwrap_or_default();
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
    eprint!("Which one? [1-{}, Enter for none] ", options.len());
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
        Some(id) => p.ask_structured(id, &params_json(&args.params)?).await?,
        None => p.ask(&args.text.join(" ")).await?,
    };
    let mut o = parse(&first)?;
    if o["status"] == "clarify" {
        match choose(&o, args.choose, json)? {
            Some(opt) => {
                let params = serde_json::to_string(&opt["params"]).unwrap_or_default();
                o = parse(&p.ask_structured(&str_of(&opt["playbook"]), &params).await?)?;
            }
            None => {
                let text = render_clarify(&o);
                return Ok(Output::failed(o, text));
            }
        }
    }
    let needs_me = o["status"] == "pending"
        && o["missing"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| str_of(x).contains("requester")));
    if !needs_me {
        return Ok(outcome(o, verbose));
    }
    let id = str_of(&o["plan"]["plan_id"]);
    let go = if args.yes {
        true
    } else if json {
        // Scripts decide with --yes; the pending plan is the answer.
        return Ok(outcome(o, verbose));
    } else if !std::io::stdin().is_terminal() {
        // Nobody to ask: the plan is shown once, with what to do.
        let answer = parse(&p.cancel(&id).await?)?;
        let text = format!(
            "{}
Not run: no terminal to confirm on. Ask again with --yes to run it.",
            render_outcome(&answer, verbose)
        );
        return Ok(Output::failed(answer, text));
    } else {
        eprintln!("{}", render_plan(&o["plan"], verbose));
        prompt("Run this plan?")
    };
    let answer = if go {
        match args.trial {
            Some(secs) => p.confirm_trial(&id, secs).await?,
            None => p.confirm(&id).await?,
        }
    } else {
        p.cancel(&id).await?
    };
    Ok(outcome(parse(&answer)?, verbose))
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
            let signed: Vec<&str> = stdout.lines().collect();
            if res.status.success() {
                Ok(Output::ok(json!({"signed": signed}), stdout))
            } else {
                Ok(Output::failed(
                    json!({"signed": signed, "error": stderr}),
                    stderr,
                ))
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
            let v = parse(&p.catalog().await?)?;
            let rows: Vec<Vec<String>> = v["playbooks"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            vec![
                                str_of(&s["id"]),
                                str_of(&s["version"]),
                                str_of(&s["risk"]),
                                str_of(&s["description"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut text = table(&["ID", "VERSION", "RISK", "DESCRIPTION"], &rows);
            if let Some(r) = v["refused"].as_array().filter(|r| !r.is_empty()) {
                text.push_str("\n\nRefused:");
                for x in r {
                    text.push_str(&format!(
                        "\n  {}: {} ({})",
                        str_of(&x["file"]),
                        str_of(&x["reason"]),
                        str_of(&x["kind"])
                    ));
                }
            }
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Show { id } => {
            let v = parse(&p.show_playbook(&id).await?)?;
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Verify { files } => {
            let mut items = Vec::new();
            let mut lines = Vec::new();
            let mut all_ok = true;
            for f in files {
                let content = read(&f)?;
                match p.verify_playbook(&file_name(&f), &content).await {
                    Ok(s) => {
                        let v = parse(&s)?;
                        lines.push(format!(
                            "{}: ok ({} v{})",
                            f.display(),
                            str_of(&v["id"]),
                            str_of(&v["version"])
                        ));
                        items.push(json!({"file": f, "ok": true, "playbook": v}));
                    }
                    Err(e) if !e.is_transport() => {
                        all_ok = false;
                        lines.push(format!("{}: {}", f.display(), e.message()));
                        items.push(json!({"file": f, "ok": false, "error": e.message()}));
                    }
                    Err(e) => return Err(e),
                }
            }
            let v = json!(items);
            Ok(if all_ok {
                Output::ok(v, lines.join("\n"))
            } else {
                Output::failed(v, lines.join("\n"))
            })
        }
        PlaybookCommand::Install { file } => {
            let content = read(&file)?;
            let v = parse(&p.install_playbook(&file_name(&file), &content).await?)?;
            let text = format!("installed {} v{}", str_of(&v["id"]), str_of(&v["version"]));
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Pending => {
            let v = parse(&p.list_pending().await?)?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            vec![
                                str_of(&x["plan_id"]),
                                str_of(&x["requester"]),
                                str_of(&x["approval"]),
                                str_of(&x["explanation"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = table(&["PLAN", "UID", "APPROVAL", "EXPLANATION"], &rows);
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Approve { plan_id } => {
            Ok(outcome(parse(&p.approve(&plan_id).await?)?, verbose))
        }
        PlaybookCommand::Confirm { plan_id, trial } => Ok(outcome(
            parse(&match trial {
                Some(secs) => p.confirm_trial(&plan_id, secs).await?,
                None => p.confirm(&plan_id).await?,
            })?,
            verbose,
        )),
        PlaybookCommand::Cancel { plan_id } => {
            Ok(outcome(parse(&p.cancel(&plan_id).await?)?, verbose))
        }
        PlaybookCommand::Keep { plan_id } => Ok(trial_end(parse(&p.keep(&plan_id).await?)?)),
        PlaybookCommand::Trials => {
            let v = parse(&p.list_trials().await?)?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| {
                            vec![
                                str_of(&x["plan_id"]),
                                str_of(&x["requester"]),
                                str_of(&x["playbook"]["id"]),
                                until(&x["until_ms"]),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = table(&["PLAN", "UID", "PLAYBOOK", "REVERTED"], &rows);
            Ok(Output::ok(v, text))
        }
        PlaybookCommand::Sign { .. } => Err(HearthError::Internal("signing is local".into())),
    }
}

/// `hearthctl audit …`.
pub async fn audit(cmd: AuditCommand, conn: &zbus::Connection) -> Result<Output, HearthError> {
    let p = proxy(conn).await?;
    match cmd {
        AuditCommand::List { limit } => {
            let v = parse(&p.audit_list(limit).await?)?;
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let ev = &r["event"];
                            let what = if ev["playbook"].is_object() {
                                str_of(&ev["playbook"]["id"])
                            } else {
                                str_of(&ev["request"]["text"]).chars().take(40).collect()
                            };
                            vec![
                                str_of(&r["seq"]),
                                str_of(&ev["kind"]),
                                str_of(&ev["caller_uid"]),
                                what,
                                str_of(&r["hash"]).chars().take(16).collect(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            let text = table(&["SEQ", "KIND", "UID", "PLAYBOOK/REQUEST", "HASH"], &rows);
            Ok(Output::ok(v, text))
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
                parse(&p.audit_verify_against(&log).await?)?
            } else {
                parse(&p.audit_verify().await?)?
            };
            let ok = v["ok"] == json!(true);
            let mut text = format!(
                "{} records: {}",
                str_of(&v["records"]),
                match (ok, against_tpm) {
                    (true, true) => "chain intact, every action record in the TPM's event log",
                    (true, false) => "chain intact",
                    (false, true) => "CHAIN BROKEN OR NOT ATTESTED",
                    (false, false) => "CHAIN BROKEN",
                }
            );
            if let Some(ps) = v["problems"].as_array() {
                for x in ps {
                    text.push_str(&format!("\n  {}", str_of(x)));
                }
            }
            Ok(if ok {
                Output::ok(v, text)
            } else {
                Output::failed(v, text)
            })
        }
    }
}

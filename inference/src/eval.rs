//! The evaluation command's logic (a contract): JSON-lines cases in, a JSON
//! report out, `N passed, M failed` as the last line printed.
//!
//! A case: `{"text": ..., "domains": [...]?, "expect": {"playbook": ...,
//! "params": {...}} | {"refuse": true}}`. A case passes when the playbook and
//! the parameters after defaults match exactly (strings case-insensitively,
//! DNS names without a trailing dot, addresses as parsed addresses, numbers
//! as numbers), or, for a refusal, when no plan is produced.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use hearth_common::spec::Context;
use hearth_common::types::DomainId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{DevicePreference, Engine, Interpretation};

/// The domains a case has when it names none: the data file
/// `inference/eval/default-domains` (one id per line, `#` comments).
const DEFAULT_DOMAINS: &str = include_str!("../eval/default-domains");

/// The ids of [`DEFAULT_DOMAINS`].
pub fn default_domains() -> Vec<String> {
    DEFAULT_DOMAINS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The domain hearth-netd protects by default (its `admin` setting).
pub const PROTECTED_DOMAIN: &str = "admin";

/// One evaluation case.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Case {
    /// The request.
    pub text: String,
    /// Existing domains; [`default_domains`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// What must come out.
    pub expect: Value,
    /// An optional category; the report then gives a pass rate per
    /// category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// One case's result in the report.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The request.
    pub text: String,
    /// The case's `expect`.
    pub expected: Value,
    /// What the engine produced.
    pub got: Value,
    /// Whether it matched.
    pub pass: bool,
    /// A plan that changes state and differs from the expected outcome
    /// (counted in the summary's `harmful`).
    pub harmful: bool,
    /// The case's category, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Milliseconds for this request.
    pub latency_ms: f64,
}

/// The report's summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 95th percentile latency.
    pub p95_ms: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Per category (cases that have one): passed and total.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, CategorySummary>,
    /// Plans that change state and differ from the expected outcome
    /// (wrong playbook or parameters, or a change where none was
    /// expected): the failures that matter most.
    pub harmful: usize,
}

/// One category's results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CategorySummary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases.
    pub total: usize,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every case.
    pub cases: Vec<CaseResult>,
    /// Totals.
    pub summary: Summary,
}

/// Reads JSON-lines cases (blank lines and lines starting with `//` skipped).
pub fn read_cases(path: &Path) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .map(|(n, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: bad case", path.display(), n + 1))
        })
        .collect()
}

/// The context of a case.
pub fn case_context(case: &Case) -> Context {
    let names: Vec<String> = match &case.domains {
        Some(d) => d.clone(),
        None => default_domains(),
    };
    let domains: Vec<DomainId> = names
        .iter()
        .filter_map(|d| DomainId::parse(&d.to_ascii_lowercase()).ok())
        .collect();
    // hearth-netd's default admin domain is protected.
    let protected = domains
        .iter()
        .filter(|d| d.as_str() == PROTECTED_DOMAIN)
        .cloned()
        .collect();
    Context { domains, protected }
}

fn norm_str(s: &str) -> String {
    s.trim().trim_end_matches('.').to_lowercase()
}

/// Whether two parameter values match under the contract's rules.
pub fn values_match(a: &Value, b: &Value) -> bool {
    let as_num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return x == y;
    }
    let (Some(x), Some(y)) = (a.as_str(), b.as_str()) else {
        return a == b;
    };
    let (x, y) = (norm_str(x), norm_str(y));
    if let (Ok(p), Ok(q)) = (x.parse::<IpAddr>(), y.parse::<IpAddr>()) {
        return p == q;
    }
    if let (Some((pa, pl)), Some((qa, ql))) = (x.split_once('/'), y.split_once('/')) {
        if let (Ok(p), Ok(q)) = (pa.parse::<IpAddr>(), qa.parse::<IpAddr>()) {
            return p == q && pl.parse::<u8>().ok() == ql.parse::<u8>().ok();
        }
    }
    x == y
}

/// Whether an interpretation satisfies a case's `expect`.
pub fn matches(expect: &Value, got: &Interpretation) -> bool {
    if expect.get("refuse").and_then(Value::as_bool) == Some(true) {
        return !matches!(got, Interpretation::Plan { .. });
    }
    let Interpretation::Plan {
        playbook, params, ..
    } = got
    else {
        return false;
    };
    let Some(want) = expect.get("playbook").and_then(Value::as_str) else {
        return false;
    };
    if !want.eq_ignore_ascii_case(playbook) {
        return false;
    }
    let empty = serde_json::Map::new();
    let want_params = expect
        .get("params")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    want_params.len() == params.len()
        && want_params
            .iter()
            .all(|(k, v)| params.get(k).is_some_and(|g| values_match(v, g)))
}

/// Peak resident set of this process in MiB (VmHWM), 0 when unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// True when `got` is a plan that changes state and the case expected
/// something else: a refusal, or another playbook or other parameters.
pub fn harmful(engine: &Engine, expect: &Value, got: &Interpretation) -> bool {
    let Interpretation::Plan { playbook, .. } = got else {
        return false;
    };
    !matches(expect, got) && !engine.is_read(playbook)
}

/// Runs cases through a loaded engine and builds the report.
pub fn evaluate(engine: &Engine, cases: &[Case]) -> Report {
    let mut results = Vec::with_capacity(cases.len());
    let mut categories: BTreeMap<String, CategorySummary> = BTreeMap::new();
    let mut harm = 0;
    for case in cases {
        let ctx = case_context(case);
        let t = Instant::now();
        let got = engine.interpret(&case.text, &ctx);
        let latency_ms = t.elapsed().as_secs_f64() * 1e3;
        let pass = matches(&case.expect, &got);
        let harm_done = harmful(engine, &case.expect, &got);
        harm += usize::from(harm_done);
        if let Some(c) = &case.category {
            let e = categories.entry(c.clone()).or_default();
            e.total += 1;
            e.passed += usize::from(pass);
        }
        results.push(CaseResult {
            text: case.text.clone(),
            expected: case.expect.clone(),
            got: serde_json::to_value(&got).unwrap_or(Value::Null),
            pass,
            harmful: harm_done,
            category: case.category.clone(),
            latency_ms,
        });
    }
    let mut lat: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let passed = results.iter().filter(|r| r.pass).count();
    Report {
        summary: Summary {
            passed,
            failed: results.len() - passed,
            p50_ms: percentile(&lat, 50.0),
            p95_ms: percentile(&lat, 95.0),
            peak_rss_mb: peak_rss_mb(),
            categories,
            harmful: harm,
        },
        cases: results,
    }
}

/// Loads the models and the catalog, evaluates `cases`, writes the report
/// to `report`, prints `N passed, M failed` last and returns (passed,
/// failed).
pub fn run_eval(
    cases: &Path,
    report: &Path,
    models_dir: &Path,
    catalog_dir: &Path,
) -> Result<(usize, usize)> {
    let specs = crate::specs::load_dir(catalog_dir)?;
    let mut engine = Engine::load(models_dir, DevicePreference::Auto)?;
    engine.set_catalog(&specs)?;
    run_eval_with(&engine, cases, report)
}

/// [`run_eval`] with an engine already loaded (for ablations).
pub fn run_eval_with(engine: &Engine, cases: &Path, report: &Path) -> Result<(usize, usize)> {
    let cases = read_cases(cases)?;
    let rep = evaluate(engine, &cases);
    let text = serde_json::to_string_pretty(&rep)?;
    hearth_common::fsutil::write_atomic(report, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", report.display()))?;
    let (p, f) = (rep.summary.passed, rep.summary.failed);
    for (c, s) in &rep.summary.categories {
        eprintln!(
            "  {c:<14} {:>3}/{:<3} {:5.1}%",
            s.passed,
            s.total,
            100.0 * s.passed as f64 / s.total.max(1) as f64
        );
    }
    eprintln!(
        "harmful plans (a change other than the expected outcome): {}; p50 {:.1} ms, p95 {:.1} ms, peak RSS {:.0} MB",
        rep.summary.harmful, rep.summary.p50_ms, rep.summary.p95_ms, rep.summary.peak_rss_mb
    );
    println!("{p} passed, {f} failed");
    Ok((p, f))
}

/// Parameter maps as the report shows them.
pub type Params = BTreeMap<String, Value>;

/// The evaluation command's arguments.
#[derive(clap::Parser, Debug)]
#[command(
    name = "eval",
    about = "Evaluate the request interpreter on JSON-lines cases, offline"
)]
pub struct EvalArgs {
    /// JSON-lines cases.
    #[arg(long)]
    pub cases: PathBuf,
    /// Where the JSON report goes.
    #[arg(long)]
    pub report: PathBuf,
    /// Models directory [default: $HEARTH_MODELS_DIR, else ./models, else
    /// the source tree's models/].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Playbook directory [default: $HEARTH_PLAYBOOKS_DIR, else ./catalog,
    /// else the source tree's catalog/].
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Print every case's outcome and cost to stderr.
    #[arg(long)]
    pub explain: bool,
    /// Ablation: plan from the whole request only, without reading its
    /// parts alone (docs/perf.md).
    #[arg(long)]
    pub whole_only: bool,
    /// A threshold of the decision procedure for this run, `NAME=VALUE`
    /// (the fields of `engine::Options`), for threshold studies.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// A directory from the environment, else relative to the working
/// directory, else in the source tree this crate was built from.
pub fn default_dir(env: &str, name: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(env) {
        return PathBuf::from(d);
    }
    let here = PathBuf::from(name);
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// The whole evaluation command, for `hearth-intentd eval` and
/// `hearth-intent-eval`: `args` are the arguments after the subcommand
/// (`--cases FILE --report OUT [--models DIR] [--catalog DIR]
/// [--explain]`). Exit status: 0 when every case
/// passed, 1 when some failed, 2 on a usage or load error. The last line
/// printed on stdout is `N passed, M failed`.
pub fn run_eval_cli(args: &[String]) -> std::process::ExitCode {
    use clap::Parser as _;
    use std::process::ExitCode;
    let argv = std::iter::once("eval".to_string()).chain(args.iter().cloned());
    let args = match EvalArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run_eval_args(&args) {
        Ok((_, 0)) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the evaluation described by parsed arguments.
pub fn run_eval_args(args: &EvalArgs) -> Result<(usize, usize)> {
    let models = args
        .models
        .clone()
        .unwrap_or_else(|| default_dir("HEARTH_MODELS_DIR", "models"));
    let catalog = args
        .catalog
        .clone()
        .unwrap_or_else(|| default_dir("HEARTH_PLAYBOOKS_DIR", "catalog"));
    let t = Instant::now();
    let specs = crate::specs::load_dir(&catalog)?;
    let mut engine = Engine::load(&models, DevicePreference::Auto)?;
    let t_models = t.elapsed();
    engine.set_catalog(&specs)?;
    engine.options.check_parts = !args.whole_only;
    if !args.set.is_empty() {
        let mut o = serde_json::to_value(&engine.options)?;
        for kv in &args.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv:?}: expected NAME=VALUE"))?;
            let field = o
                .get_mut(k)
                .with_context(|| format!("--set {kv:?}: no option {k}"))?;
            *field = serde_json::from_str(v)
                .with_context(|| format!("--set {kv:?}: {v} is not a value"))?;
        }
        engine.options = serde_json::from_value(o).context("--set")?;
    }
    eprintln!(
        "loaded models in {:.0} ms, catalog in {:.0} ms",
        t_models.as_secs_f64() * 1e3,
        (t.elapsed() - t_models).as_secs_f64() * 1e3,
    );
    if args.explain {
        for case in read_cases(&args.cases)? {
            let ctx = case_context(&case);
            let t = Instant::now();
            let (got, st) = engine.interpret_with_stats(&case.text, &ctx);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let pass = matches(&case.expect, &got);
            eprintln!(
                "{} {:6.1}ms enc {:5.1} heads {:5.1} tok {} | {} => {}",
                if pass { "PASS" } else { "FAIL" },
                ms,
                st.encode_ms,
                st.heads_ms,
                st.tokens,
                case.text.chars().take(100).collect::<String>(),
                serde_json::to_string(&got)?
            );
            if !pass {
                eprintln!("     expected {}", case.expect);
            }
        }
    }
    run_eval_with(&engine, &args.cases, &args.report)
}

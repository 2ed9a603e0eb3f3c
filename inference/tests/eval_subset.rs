//! The real models on a subset of the development set: pass rate, no plan
//! for a refusal case, and no parameter value outside the request, the
//! enums and the existing domains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use hearth_inference::eval::{evaluate, read_cases};
use hearth_inference::{DevicePreference, Engine};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn dev_subset_passes_and_plans_only_use_request_values() {
    // Every third case: all kinds of cases, about a third of the time.
    run_set("inference/eval/dev.jsonl", 3, 200);
}

/// The hold-out set was written apart from the development set and the
/// tuning of the rules, as a check that they generalize.
#[test]
fn holdout_set_passes_and_plans_only_use_request_values() {
    run_set("inference/eval/holdout.jsonl", 1, 90);
}

/// Evaluates every `step`-th case of `file` (at least `min_cases` long):
/// pass rate at least 0.90, no plan for a refusal case, every value from
/// the request, a default, an enum or an existing domain.
fn run_set(file: &str, step: usize, min_cases: usize) {
    let specs = hearth_inference::catalog::load_dir(&root().join("playbooks")).expect("catalog");
    assert_eq!(specs.len(), 13);
    let mut engine =
        Engine::load(&root().join("models"), DevicePreference::Cpu).expect("models load");
    assert_eq!(engine.digests().len(), 4);
    assert!(engine.digests().iter().all(|d| d.sha256.len() == 64));
    engine.set_catalog(&specs).expect("catalog installs");
    let all = read_cases(&root().join(file)).expect("cases");
    assert!(all.len() >= min_cases);
    let subset: Vec<_> = all.into_iter().step_by(step).collect();
    let report = evaluate(&engine, &subset);
    let n = subset.len();
    let rate = report.summary.passed as f64 / n as f64;
    let failures: Vec<String> = report
        .cases
        .iter()
        .filter(|c| !c.pass)
        .map(|c| format!("{} => {}", c.text, c.got))
        .collect();
    assert!(
        rate >= 0.90,
        "pass rate {rate:.3} on {n} cases; failures:\n{}",
        failures.join("\n")
    );
    // No refusal case may yield a plan (the full development set has two
    // known out-of-catalog reads left, docs/perf.md; neither is in the
    // subset).
    let mut refusal_plans = Vec::new();
    for (case, res) in subset.iter().zip(&report.cases) {
        let refuse = case.expect.get("refuse").and_then(Value::as_bool) == Some(true);
        if refuse && res.got["kind"] == "plan" {
            refusal_plans.push(format!("{} => {}", case.text, res.got));
        }
        if res.got["kind"] == "plan" {
            let playbook = res.got["playbook"].as_str().expect("playbook");
            let params = res.got["params"].as_object().expect("params");
            let spec = specs.iter().find(|s| s.id == playbook).expect("known id");
            let lower = case.text.to_lowercase();
            for (k, v) in params {
                let p = spec
                    .params
                    .iter()
                    .find(|p| &p.name == k)
                    .expect("known param");
                let from_default = p.default.as_ref() == Some(v);
                let _ = &engine;
                let in_text = match v {
                    Value::String(s) => {
                        lower.contains(s.as_str())
                            || s.parse::<std::net::IpAddr>().is_ok_and(|a| {
                                lower
                                    .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
                                    .any(|w| {
                                        w.trim_end_matches(['.', ',']).parse::<std::net::IpAddr>()
                                            == Ok(a)
                                    })
                            })
                    }
                    other => lower.contains(&other.to_string()),
                };
                assert!(
                    from_default || in_text,
                    "{playbook}.{k} = {v} is not in {:?}",
                    case.text
                );
            }
        }
    }
    assert!(
        refusal_plans.is_empty(),
        "refusal cases produced plans:\n{}",
        refusal_plans.join("\n")
    );
}

/// When several playbooks could take every value of the request, the
/// instruct model chooses among them (constrained to their ids); when one
/// can, it is not consulted.
#[test]
fn the_instruct_model_chooses_only_between_candidates_that_fit() {
    let specs = hearth_inference::catalog::load_dir(&root().join("playbooks")).expect("catalog");
    let mut engine =
        Engine::load(&root().join("models"), DevicePreference::Cpu).expect("models load");
    engine.options.use_llm = true;
    engine.set_catalog(&specs).expect("catalog installs");
    let ctx = hearth_common::catalog::Context {
        domains: ["admin", "lan", "iot", "guest", "work"]
            .iter()
            .map(|d| hearth_common::types::DomainId::parse(d).expect("domain"))
            .collect(),
    };
    let (got, stats) = engine.interpret_with_stats("unregister the name kodi.home.arpa", &ctx);
    let got = serde_json::to_value(&got).unwrap();
    assert_eq!(got["playbook"], "dns.remove_record", "{got}");
    assert!(stats.forwards >= 1, "the model chose: {stats:?}");
    let (got, stats) = engine.interpret_with_stats("point nas.home.arpa at 192.168.1.20", &ctx);
    let got = serde_json::to_value(&got).unwrap();
    assert_eq!(got["playbook"], "dns.add_record", "{got}");
    assert_eq!(stats.forwards, 0, "one candidate fits, no model: {stats:?}");
}

//! hearth-intentd: serves the intent gate on `org.hearth.Intent1`.

use std::process::ExitCode;
use std::sync::Arc;

use hearth_intentd::config::IntentConfig;
use hearth_intentd::dbus::IntentInterface;
use hearth_intentd::exec::Measurer as _;
use hearth_intentd::exec::{DbusExecutor, DbusMeasurer};
use hearth_intentd::interpret::{Interpreter, NoInterpreter};
use hearth_intentd::model::ModelInterpreter;
use hearth_intentd::Gate;

fn main() -> ExitCode {
    // `hearth-intentd eval …` is the evaluation, not the daemon (hook: eval.rs).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("eval") {
        return hearth_intentd::eval::main(&args[2..]);
    }
    hearth_runtime::main::<IntentConfig, _, _, _>(
        hearth_common::names::INTENT,
        |ctx, cfg| async move {
            let settings = cfg.settings(&ctx.state_dir);
            std::fs::create_dir_all(&settings.catalog_dir)?;
            let text_path = cfg.models_dir.is_some();
            let mut unmeasured = Vec::new();
            let interpreter: Arc<dyn Interpreter> = match cfg.models_dir.clone() {
                Some(dir) => {
                    ctx.notifier.status("loading the models");
                    let model =
                        tokio::task::spawn_blocking(move || ModelInterpreter::load(&dir)).await??;
                    // What will read the owner's requests is measured first.
                    let measurer = DbusMeasurer::new(ctx.connection.clone());
                    for d in model.model_digests() {
                        if let Err(e) = measurer.measure("model", &d.name, &d.sha256).await {
                            tracing::warn!(model = d.name, "model not measured: {e}");
                            unmeasured.push(hearth_intentd::exec::Unmeasured {
                                kind: "model".into(),
                                name: d.name.clone(),
                                sha256: d.sha256.clone(),
                            });
                        }
                    }
                    Arc::new(model)
                }
                None => {
                    tracing::warn!("no models_dir configured: only structured intents run");
                    Arc::new(NoInterpreter)
                }
            };
            unmeasured.extend(
                hearth_intentd::exec::measure_trusted_inputs(
                    &DbusMeasurer::new(ctx.connection.clone()),
                    &settings.catalog_dir,
                    &ctx.config_path,
                )
                .await,
            );
            if !unmeasured.is_empty() {
                let measurer = DbusMeasurer::new(ctx.connection.clone());
                tokio::spawn(async move {
                    hearth_intentd::exec::measure_until_done(
                        &measurer,
                        unmeasured,
                        std::time::Duration::from_secs(15),
                    )
                    .await;
                });
            }
            let gate = Gate::open(
                settings,
                &ctx.state_dir,
                DbusExecutor::new(ctx.connection.clone()),
                interpreter,
                DbusMeasurer::new(ctx.connection.clone()),
            )?;
            // A trial left by a daemon that stopped during its window is
            // reverted now; the others when their window ends.
            let gate = Arc::new(gate);
            for end in gate.revert_left_trials().await {
                tracing::warn!(plan = end.plan_id, "trial reverted at start");
            }
            let ticker = gate.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    ticker.revert_due().await;
                }
            });
            ctx.notifier.status(if text_path {
                "gate open: text requests through the models, structured intents"
            } else {
                "gate open: structured intents only (no models_dir)"
            });
            Ok(IntentInterface::new(gate, ctx.access.clone()))
        },
    )
}

//! hearth-attestd: thin binary over the `hearth_attestd` library, run by the
//! shared daemon skeleton (`--config PATH --state-dir DIR`). It opens the
//! engine (TPM provisioning, log replay, binary measurements), starts the
//! HTTPS endpoint and (with `tls_from_pkid`) the certificate renewal task,
//! then serves `org.hearth.Attestation1`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use hearth_attestd::{dbus::AttestationInterface, server, Config, Engine};

fn main() -> ExitCode {
    hearth_runtime::main::<Config, _, _, _>(
        hearth_common::names::ATTESTATION,
        |ctx, cfg| async move {
            cfg.validate()?;
            if hearth_attestd::tls::fetch_from_pkid(&ctx.connection, &cfg).await? {
                tracing::info!(cert = %cfg.tls_cert.display(), "endpoint certificate issued by hearth-pkid");
            }
            if hearth_attestd::tls::ensure_throwaway_chain(&cfg)? {
                tracing::warn!(
                    cert = %cfg.tls_cert.display(),
                    "made a throwaway self-signed chain for the HTTPS endpoint (tls_generate)"
                );
            }
            let resolver = Arc::new(server::resolver(&cfg.tls_cert, &cfg.tls_key)?);
            let tls = server::tls_config_with(resolver.clone())?;
            let listener = server::bind(&cfg.listen).await?;
            ctx.notifier
                .status("provisioning the TPM and replaying the event log");
            let engine = {
                let state_dir = ctx.state_dir.clone();
                let cfg = cfg.clone();
                tokio::task::spawn_blocking(move || Engine::open(&cfg, &state_dir))
                    .await
                    .context("engine start-up panicked")??
            };
            let engine = Arc::new(engine);
            engine.set_tls(resolver.info());
            if !cfg.tls_from_pkid.is_empty() {
                tokio::spawn(hearth_attestd::tls::renew_loop(
                    ctx.connection.clone(),
                    cfg.clone(),
                    resolver,
                    engine.clone(),
                ));
            }
            let addr = listener.local_addr()?;
            tracing::info!(listen = %addr, "HTTPS endpoint up");
            ctx.notifier
                .status(&format!("measuring; quotes over TLS on {addr}"));
            tokio::spawn(server::serve_with(
                listener,
                tls,
                engine.clone(),
                cfg.limits(),
            ));
            Ok(AttestationInterface::new(engine, ctx.access.clone()))
        },
    )
}

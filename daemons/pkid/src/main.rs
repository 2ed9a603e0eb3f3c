//! hearth-pkid: the appliance CA on the bus (`org.hearth.Pki1`). All logic
//! is in the library; this opens the engine (running the ceremony when the
//! configuration asks) and serves it.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hearth_daemon::main::<hearth_pkid::PkiConfig, _, _, _>(
        hearth_common::names::PKI,
        |ctx, cfg| async move {
            ctx.notifier.status("opening the token");
            let state_dir = ctx.state_dir.clone();
            let engine =
                tokio::task::spawn_blocking(move || hearth_pkid::Engine::open(&cfg, &state_dir))
                    .await??;
            let iface = hearth_pkid::dbus::PkiInterface::new(engine, ctx.access.clone());
            iface.spawn_crl_refresher();
            ctx.notifier.status("CA ready: keys in the token");
            Ok(iface)
        },
    )
}

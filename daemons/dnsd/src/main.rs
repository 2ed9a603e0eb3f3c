//! hearth-dnsd: the home zones' authoritative DNS server, changed over
//! `org.hearth.Dns1`. All logic lives in the `hearth_dnsd` library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hearth_runtime::main::<hearth_dnsd::DaemonSettings, _, _, _>(
        hearth_common::names::DNS,
        |ctx, cfg| async move { hearth_dnsd::dbus::start(ctx, cfg).await },
    )
}

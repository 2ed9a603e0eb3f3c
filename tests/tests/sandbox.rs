//! The foundation's end-to-end check: the sandbox of real components starts
//! every daemon, each sends READY=1 to a notify socket this test owns,
//! answers over the private system bus, refuses a caller outside the
//! configured groups with NotAuthorized, shows in `hearthctl status`, and
//! exits cleanly (STOPPING=1, status 0) on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use hearth_common::contract::cli::StatusReport;
use hearth_common::names::{Service, ALL};
use hearth_common::proxies::daemon::DaemonProxy;
use hearth_testbed::Sandbox;

async fn daemon_proxy<'a>(conn: &'a zbus::Connection, s: Service) -> DaemonProxy<'a> {
    DaemonProxy::builder(conn)
        .destination(s.bus_name)
        .unwrap()
        .path(s.path)
        .unwrap()
        .build()
        .await
        .unwrap()
}

#[test]
fn sandbox_starts_every_daemon_which_answers_refuses_outsiders_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sb = Sandbox::up_every_daemon(&tmp.path().join("sb"))
        .unwrap_or_else(|e| panic!("sandbox up: {e:#}"));
    assert_eq!(sb.daemons.len(), ALL.len(), "every daemon started");

    // READY=1 came to our socket (up() waited for it) and a STATUS= line too.
    for d in &sb.daemons {
        assert!(d.sent("READY=1"), "{} sent READY=1", d.service.unit);
        assert!(
            d.messages.iter().any(|m| m.contains("STATUS=")),
            "{} sent a STATUS= line: {:?}",
            d.service.unit,
            d.messages
        );
    }

    let address = sb.env["DBUS_SYSTEM_BUS_ADDRESS"].clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        for s in ALL {
            let p = daemon_proxy(&conn, s).await;
            assert_eq!(p.ping().await.unwrap(), "pong", "{} answers Ping", s.unit);
            assert_eq!(p.name().await.unwrap(), s.unit);
            // We are root: an admin by default.
            let me = hearth_common::contract::daemon::who_am_i(&p).await.unwrap();
            assert_eq!(me.uid, 0, "{}: {me:?}", s.unit);
            assert_eq!(
                me.role,
                hearth_common::contract::daemon::CallerRole::Admin,
                "{}: {me:?}",
                s.unit
            );
        }
    });

    // An outsider (nobody, no groups) reaches the bus but every daemon
    // refuses it by name.
    for s in ALL {
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "dbus-send",
            ])
            .arg(format!("--bus={address}"))
            .args(["--print-reply", &format!("--dest={}", s.bus_name), s.path])
            .arg("org.hearth.Daemon1.WhoAmI")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: outsider call succeeded", s.unit);
        assert!(
            err.contains("org.hearth.Error.NotAuthorized"),
            "{}: outsider got {err}",
            s.unit
        );
    }

    // hearthctl status shows every daemon up, as a table and as JSON.
    let hearthctl = sb.bin_dir.join("hearthctl");
    let out = Command::new(&hearthctl)
        .args(["--json", "status"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .output()
        .unwrap();
    assert!(out.status.success(), "hearthctl status: {out:?}");
    let v: StatusReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.all_up, "{v:?}");
    let units: Vec<&str> = v.daemons.iter().map(|d| d.daemon.as_str()).collect();
    let all: Vec<&str> = ALL.iter().map(|s| s.unit).collect();
    assert_eq!(units, all, "{v:?}");
    assert!(v.daemons.iter().all(|d| d.up && d.error.is_none()), "{v:?}");

    // SIGTERM: STOPPING=1, then a clean exit, in reverse start order.
    for i in (0..sb.daemons.len()).rev() {
        let d = &mut sb.daemons[i];
        let status = d.terminate(Duration::from_secs(10)).unwrap();
        assert!(status.success(), "{} exited with {status}", d.service.unit);
        assert!(d.sent("STOPPING=1"), "{} sent STOPPING=1", d.service.unit);
    }
    sb.teardown();
}

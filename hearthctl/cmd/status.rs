//! `hearthctl status`: every daemon, up or not.

use std::time::Duration;

use hearth_common::contract::cli::{DaemonState, StatusReport};
use hearth_common::names::ALL;
use hearth_common::proxies::daemon::DaemonProxy;
use hearth_common::HearthError;

use super::{json, table, Output};

/// Asks each daemon's `org.hearth.Daemon1` for its state.
pub async fn run(conn: &zbus::Connection) -> Result<Output, HearthError> {
    let mut rows = Vec::new();
    let mut daemons = Vec::new();
    for s in ALL {
        let probe = async {
            let p = DaemonProxy::builder(conn)
                .destination(s.bus_name)?
                .path(s.path)?
                .build()
                .await?;
            p.ping().await?;
            Ok::<_, HearthError>((p.version().await?, p.uptime().await?, p.status().await?))
        };
        let mut state = DaemonState {
            daemon: s.unit.to_string(),
            bus_name: s.bus_name.to_string(),
            up: false,
            version: None,
            uptime_s: None,
            status: None,
            error: None,
        };
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok((version, uptime, status))) => {
                rows.push(vec![
                    s.unit.to_string(),
                    "up".into(),
                    version.clone(),
                    format!("{uptime}s"),
                    status.clone(),
                ]);
                state.up = true;
                state.version = Some(version);
                state.uptime_s = Some(uptime);
                state.status = Some(status);
            }
            Ok(Err(e)) => {
                let why = describe_down(&e);
                rows.push(vec![
                    s.unit.into(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    why.clone(),
                ]);
                state.error = Some(why);
            }
            Err(_) => {
                let why = "no answer in 5 s".to_string();
                rows.push(vec![
                    s.unit.into(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    why.clone(),
                ]);
                state.error = Some(why);
            }
        }
        daemons.push(state);
    }
    let text = table(&["DAEMON", "STATE", "VERSION", "UPTIME", "STATUS"], &rows);
    let all_up = daemons.iter().all(|d| d.up);
    let report = StatusReport { daemons, all_up };
    let json = json(&report)?;
    Ok(if all_up {
        Output::ok(json, text)
    } else {
        Output::failed(json, text)
    })
}

fn describe_down(e: &HearthError) -> String {
    let m = e.message();
    if m.contains("ServiceUnknown")
        || m.contains("was not provided")
        || m.contains("NameHasNoOwner")
    {
        "not running".into()
    } else {
        m
    }
}

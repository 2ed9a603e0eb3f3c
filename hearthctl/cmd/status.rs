//! `hearthctl status`: every daemon, up or not.

use std::time::Duration;

use hearth_common::names::ALL;
use hearth_common::proxies::daemon::DaemonProxy;
use hearth_common::HearthError;
use serde_json::json;

use super::{table, Output};

/// Asks each daemon's `org.hearth.Daemon1` for its state.
pub async fn run(conn: &zbus::Connection) -> Result<Output, HearthError> {
    let mut rows = Vec::new();
    let mut items = Vec::new();
    let mut all_up = true;
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
        match tokio::time::timeout(Duration::from_secs(5), probe).await {
            Ok(Ok((version, uptime, status))) => {
                rows.push(vec![
                    s.unit.to_string(),
                    "up".into(),
                    version.clone(),
                    format!("{uptime}s"),
                    status.clone(),
                ]);
                items.push(json!({"daemon": s.unit, "bus_name": s.bus_name, "up": true,
                    "version": version, "uptime_s": uptime, "status": status}));
            }
            Ok(Err(e)) => {
                all_up = false;
                let why = describe_down(&e);
                rows.push(vec![
                    s.unit.into(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    why.clone(),
                ]);
                items.push(
                    json!({"daemon": s.unit, "bus_name": s.bus_name, "up": false, "error": why}),
                );
            }
            Err(_) => {
                all_up = false;
                rows.push(vec![
                    s.unit.into(),
                    "down".into(),
                    "-".into(),
                    "-".into(),
                    "no answer in 5 s".into(),
                ]);
                items.push(json!({"daemon": s.unit, "bus_name": s.bus_name, "up": false, "error": "no answer in 5 s"}));
            }
        }
    }
    let text = table(&["DAEMON", "STATE", "VERSION", "UPTIME", "STATUS"], &rows);
    let json = json!({"daemons": items, "all_up": all_up});
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

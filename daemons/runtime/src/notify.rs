//! sd_notify: READY, STATUS, WATCHDOG and STOPPING messages to systemd (or to
//! whatever owns `NOTIFY_SOCKET`, such as the sandbox or a test).

use std::sync::Arc;
use std::time::Duration;

use hearth_common::names::Service;
use sd_notify::NotifyState;
use tokio::sync::Mutex;

use crate::StatusCell;

/// Sends notifications and keeps the current status line.
#[derive(Clone)]
pub struct Notifier {
    service: Service,
    status: StatusCell,
}

impl Notifier {
    pub(crate) fn new(service: Service) -> Self {
        Notifier {
            service,
            status: Arc::new(Mutex::new("starting".into())),
        }
    }

    fn send(states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(false, states) {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    pub(crate) fn raw(line: &str) {
        if let Some(status) = line.strip_prefix("STATUS=") {
            Self::send(&[NotifyState::Status(status)]);
        }
    }

    /// Sets the status line (`STATUS=` for systemd, `Status` on the bus).
    pub fn status(&self, line: &str) {
        Self::send(&[NotifyState::Status(line)]);
        if let Ok(mut s) = self.status.try_lock() {
            *s = line.to_string();
        }
        tracing::debug!(status = line, daemon = self.service.unit);
    }

    pub(crate) async fn current(&self) -> String {
        self.status.lock().await.clone()
    }

    pub(crate) fn ready(&self, line: &str) {
        if let Ok(mut s) = self.status.try_lock() {
            *s = line.to_string();
        }
        Self::send(&[NotifyState::Ready, NotifyState::Status(line)]);
    }

    pub(crate) fn stopping(&self) {
        Self::send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Pings the watchdog at half its interval when the unit sets
    /// `WatchdogSec` (systemd passes `WATCHDOG_USEC`).
    pub(crate) fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let mut usec = 0u64;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        let period = Duration::from_micros(usec / 2);
        tracing::info!(period_ms = period.as_millis() as u64, "watchdog enabled");
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                Self::send(&[NotifyState::Watchdog]);
            }
        }))
    }
}

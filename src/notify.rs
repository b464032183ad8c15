//! The systemd notification protocol (`sd_notify`): `STATUS=`, `READY=1`, `WATCHDOG=1`,
//! `STOPPING=1`. Without `NOTIFY_SOCKET` (a developer's shell) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notifications to the service manager, if there is one.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC`/`WATCHDOG_PID` from the environment.
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        Self {
            enabled,
            watchdog: if enabled {
                sd_notify::watchdog_enabled()
            } else {
                None
            },
        }
    }

    /// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
    /// recommends, so one late tick does not get us killed.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// The configured watchdog timeout, for diagnostics.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn status(&self, text: &str) {
        self.send(&[NotifyState::Status(text)]);
    }

    pub fn ready(&self, text: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(text)]);
    }

    pub fn stopping(&self, text: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(text)]);
    }

    /// Asks systemd for `d` more time to start (a large model loading from an SD card).
    pub fn extend_timeout(&self, d: Duration) {
        let usec = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        // A lost notification must not stop the daemon; systemd will time us out if it
        // matters, and the journal says why.
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {e}");
        }
    }
}

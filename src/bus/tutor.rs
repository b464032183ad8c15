//! `org.tutord.Tutor1` on `/org/tutord/Tutor1`: the interface the tutor UI and `tutorctl`
//! use. Methods are thin: they read the daemon's context or hand work to it, and return.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::InterfaceRef;
use zbus::{OwnedVariant, Str, interface};

use super::TutorError;
use crate::config::LogLevel;
use crate::daemon::Context;
use crate::diagnostics::Value;
use crate::state::State;

/// What the daemon publishes as properties; changed only through [`Tutor::publish`].
#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub status_text: String,
    pub progress: f64,
    pub board: String,
    pub last_error: String,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: State::Booting,
            status_text: "Starting".into(),
            progress: 0.0,
            board: "unknown".into(),
            last_error: String::new(),
        }
    }
}

/// The interface object.
pub struct Tutor {
    ctx: Arc<Context>,
    status: Status,
}

impl Tutor {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            status: Status::default(),
        }
    }

    /// Replaces the published status and emits `PropertiesChanged` for what changed.
    pub async fn publish(iface: &InterfaceRef<Tutor>, status: Status) -> zbus::Result<()> {
        let mut this = iface.get_mut().await;
        let old = std::mem::replace(&mut this.status, status);
        let emitter = iface.signal_emitter();
        if old.state != this.status.state {
            this.state_changed(emitter).await?;
        }
        if old.status_text != this.status.status_text {
            this.status_text_changed(emitter).await?;
        }
        if old.progress != this.status.progress {
            this.progress_changed(emitter).await?;
        }
        if old.board != this.status.board {
            this.board_changed(emitter).await?;
        }
        if old.last_error != this.status.last_error {
            this.last_error_changed(emitter).await?;
        }
        Ok(())
    }

    /// The published status, for the daemon to derive the next one from.
    pub fn status(&self) -> &Status {
        &self.status
    }
}

/// The tutor appliance: its state, diagnostics, and (as the product grows) the tutor itself.
#[interface(name = "org.tutord.Tutor1")]
impl Tutor {
    /// Everything a person diagnosing the appliance wants in one call: version, pid, uptime,
    /// board, state, state directory and database, boot counts, watchdog and log settings.
    /// Keys are stable lowercase words with underscores; values are strings or numbers.
    async fn diagnostics(&self) -> HashMap<String, OwnedVariant> {
        self.ctx
            .diagnostics(&self.status)
            .into_iter()
            .map(|(k, v)| (k, to_variant(v)))
            .collect()
    }

    /// Changes the log verbosity until the next restart: `error`, `warn`, `info`, `debug` or
    /// `trace`. Fails with `InvalidArgument` for anything else.
    async fn set_log_level(&self, level: &str) -> Result<(), TutorError> {
        let parsed = LogLevel::parse(level).ok_or_else(|| TutorError::bad_log_level(level))?;
        self.ctx
            .set_log_level(parsed)
            .map_err(|e| TutorError::ZBus(zbus::Error::Failure(e)))
    }

    /// What the daemon is doing, one lowercase word: `booting`, `tuning`, `benchmarking`,
    /// `loading`, `ready`, `listening`, `thinking`, `speaking` or `error`.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.status.state.as_str().to_string()
    }

    /// The last status line, as systemd's `StatusText` shows it (e.g. "Ready").
    #[zbus(property)]
    async fn status_text(&self) -> String {
        self.status.status_text.clone()
    }

    /// Progress of the current boot step or long operation, from 0.0 to 1.0.
    #[zbus(property)]
    async fn progress(&self) -> f64 {
        self.status.progress
    }

    /// tutord's version.
    #[zbus(property)]
    async fn version(&self) -> String {
        crate::VERSION.to_string()
    }

    /// The board tutord detected: `rk3588`, `rk3576`, `orin-nano`, `generic`, or `unknown`
    /// while booting.
    #[zbus(property)]
    async fn board(&self) -> String {
        self.status.board.clone()
    }

    /// The last error that stopped an operation, empty when there was none.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.status.last_error.clone()
    }
}

fn to_variant(v: Value) -> OwnedVariant {
    match v {
        Value::Str(s) => OwnedVariant::from(Str::from(s)),
        Value::U64(n) => OwnedVariant::from(n),
        Value::I64(n) => OwnedVariant::from(n),
        Value::F64(n) => OwnedVariant::from(n),
        Value::Bool(b) => OwnedVariant::from(b),
    }
}

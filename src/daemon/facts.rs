//! What the daemon itself answers: `Diagnostics()` (a snapshot of every part, each part's
//! error reported in place so that one failure does not hide the rest) and `SetLogLevel()`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::cli::BusChoice;
use crate::config::{Config, LogLevel};
use crate::diagnostics::{Source, Value};
use crate::engine::{GaveUp, Slot};
use crate::logging::LogControl;
use crate::notify::Notifier;
use crate::plan::service::BASE_MODEL_WARNING;
use crate::state::Status;
use crate::store::Store;

pub(super) struct Facts {
    pub config: Config,
    pub config_path: PathBuf,
    pub bus: BusChoice,
    pub notifier: Notifier,
    pub log: LogControl,
    pub log_level: Mutex<String>,
    pub store: Arc<Mutex<Store>>,
    pub slot: Arc<Slot>,
    pub status: watch::Receiver<Status>,
    /// What tuning changed.
    pub tuning: crate::tuning::Shared,
    pub started: Instant,
}

impl Source for Facts {
    fn diagnostics(&self) -> Vec<(String, Value)> {
        let status = self.status.borrow().clone();
        let mut d: Vec<(String, Value)> = vec![
            ("version".into(), crate::VERSION.into()),
            ("pid".into(), std::process::id().into()),
            (
                "uptime_seconds".into(),
                self.started.elapsed().as_secs_f64().into(),
            ),
            ("state".into(), status.state.as_str().into()),
            ("status_text".into(), status.status_text.clone().into()),
            ("board".into(), status.board.clone().into()),
            (
                "config_file".into(),
                self.config_path.display().to_string().into(),
            ),
            (
                "state_dir".into(),
                self.config.daemon.state_dir.display().to_string().into(),
            ),
            ("bus".into(), self.bus.to_string().into()),
            (
                "log_sink".into(),
                format!("{:?}", self.log.sink).to_lowercase().into(),
            ),
            (
                "log_level".into(),
                super::lock(&self.log_level).clone().into(),
            ),
            (
                "watchdog_usec".into(),
                self.notifier
                    .watchdog_timeout()
                    .map_or(0, |d| d.as_micros() as u64)
                    .into(),
            ),
        ];
        match self.slot.engine() {
            None => {
                d.push(("engine".into(), "none".into()));
                if let Some(why) = self.slot.no_engine_reason() {
                    d.push(("engine_error".into(), why.into()));
                }
            }
            Some(e) => {
                let s = e.status();
                d.push((
                    "engine".into(),
                    if s.model.is_some() {
                        "loaded"
                    } else if s.gave_up {
                        "failed"
                    } else {
                        "loading"
                    }
                    .into(),
                ));
                if let Some(m) = &s.model {
                    d.push(("model".into(), m.path.display().to_string().into()));
                    d.push(("model_bytes".into(), m.file_bytes.into()));
                    d.push(("backend".into(), m.backend.as_str().into()));
                    d.push(("engine_runtime".into(), m.runtime.clone().into()));
                    d.push(("context_length".into(), m.context_length.into()));
                    d.push(("chat_format".into(), m.chat_format.clone().into()));
                    if m.is_base_model() {
                        d.push(("model_warning".into(), BASE_MODEL_WARNING.into()));
                    }
                }
                if let Some(because) = s.gave_up_because {
                    let why = match because {
                        GaveUp::Load => "load failed",
                        GaveUp::Crashes => "crashed answering",
                    };
                    d.push(("engine_given_up".into(), why.into()));
                }
                if let Some(pid) = s.worker_pid {
                    d.push(("engine_pid".into(), pid.into()));
                }
                d.push(("engine_restarts".into(), s.restarts.into()));
                if let Some(err) = &s.last_error {
                    d.push(("engine_error".into(), err.clone().into()));
                }
            }
        }
        let store = super::lock(&self.store);
        d.push(("database".into(), store.path().display().to_string().into()));
        d.push(("boot_id".into(), store.boot_id().into()));
        d.push((
            "previous_boot_unclean".into(),
            store.previous_boot_unclean().into(),
        ));
        if let Some(p) = store.recovered_from() {
            d.push((
                "database_recovered_to".into(),
                p.display().to_string().into(),
            ));
        }
        // A store error must not hide the rest of the diagnostics: report it in place.
        match store.schema_version() {
            Ok(v) => d.push(("schema_version".into(), v.into())),
            Err(e) => d.push(("store_error".into(), e.to_string().into())),
        }
        match store.boots_total() {
            Ok(n) => d.push(("boots_total".into(), n.into())),
            Err(e) => d.push(("store_error".into(), e.to_string().into())),
        }
        drop(store);
        // tuning (issue 5): stopped units, governors, affinity, throttling
        let tuning = self
            .tuning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        d.extend(tuning.entries());
        d
    }

    fn set_log_level(&self, level: LogLevel) -> Result<(), String> {
        self.log.set_level(level)?;
        *super::lock(&self.log_level) = level.as_str().to_string();
        tracing::info!("log level set to {}", level.as_str());
        Ok(())
    }
}

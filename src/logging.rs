//! Logging: to journald with structured fields when systemd runs us (`JOURNAL_STREAM` is set
//! and the journal socket answers), to stderr otherwise. The level comes from the config and
//! `RUST_LOG` overrides it; it can be changed at run time (D-Bus `SetLogLevel`).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, Registry, prelude::*, reload};

use crate::config::LogLevel;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

/// Lets the daemon change the level after start.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    pub sink: Sink,
}

impl LogControl {
    /// Replaces the filter with `level` for tutord and `warn` for libraries.
    pub fn set_level(&self, level: LogLevel) -> Result<(), String> {
        self.handle
            .reload(filter_for(level))
            .map_err(|e| format!("cannot change the log level: {e}"))
    }
}

fn filter_for(level: LogLevel) -> EnvFilter {
    // Libraries stay at warn unless asked: zbus at debug floods the journal on every call.
    let lib = if level == LogLevel::Trace {
        "debug"
    } else {
        "warn"
    };
    EnvFilter::new(format!("{lib},tutord={l},tutorctl={l}", l = level.as_str()))
}

/// Installs the global subscriber. Call once, after the config is known.
pub fn init(level: LogLevel) -> LogControl {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ => filter_for(level),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journal = if std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_journald::layer().ok().map(|l| {
            l.with_field_prefix(None)
                .with_syslog_identifier("tutord".into())
        })
    } else {
        None
    };
    let sink = if journal.is_some() {
        Sink::Journal
    } else {
        Sink::Stderr
    };
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .init();
    LogControl { handle, sink }
}

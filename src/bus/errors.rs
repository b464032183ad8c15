//! Named D-Bus errors, so a client can act on the kind of failure rather than parse text.
//! Every failure that crosses the bus is converted here and nowhere else.

use zbus::DBusError;

use crate::config::LogLevel;

/// `org.tutord.Tutor1.Error.*`
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.tutord.Tutor1.Error")]
pub enum TutorError {
    /// The daemon is still booting or has failed; try again when `State` is `ready`.
    NotReady(String),
    /// Another request is running (an answer, a benchmark); try again later or `Abort()`.
    Busy(String),
    /// An argument is malformed or out of range; the message names it.
    InvalidArgument(String),
    /// No model of that name in the catalog.
    UnknownModel(String),
    /// The inference engine failed or crashed; the turn is lost, the daemon goes on.
    EngineFailed(String),
    /// The database could not be read or written (e.g. a full disk); the message names the
    /// file. Answers go on; what could not be stored is logged.
    StoreFailed(String),
    /// An operation failed for a reason the message gives (e.g. speech recognition).
    Failed(String),
    /// The caller may use the tutor but not change the system (root or `[daemon]
    /// admin_group` only); the message names the method and the caller.
    AccessDenied(String),
    #[zbus(error)]
    ZBus(zbus::Error),
}

impl TutorError {
    /// The error for a log level a caller spelled wrong.
    pub fn bad_log_level(given: &str) -> Self {
        let choices = [
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ]
        .map(LogLevel::as_str)
        .join(", ");
        TutorError::InvalidArgument(format!(
            "level '{}' is not one of {choices}",
            given.escape_debug()
        ))
    }
}

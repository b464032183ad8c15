//! Diagnostics values: what `Diagnostics()` returns as `a{sv}` and `tutorctl diagnostics`
//! prints, kept free of D-Bus types so the daemon can build them without the bus.

/// One diagnostics value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::U64(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::U64(n.into())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::I64(n)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::F64(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// What the daemon itself answers on D-Bus: `Diagnostics()` and `SetLogLevel()`. The D-Bus
/// adapter holds it as a trait object, so it needs nothing of the daemon but this.
pub trait Source: Send + Sync {
    /// Everything a person diagnosing the appliance wants in one call.
    fn diagnostics(&self) -> Vec<(String, Value)>;
    /// Changes the log level until the next restart.
    fn set_log_level(&self, level: crate::config::LogLevel) -> Result<(), String>;
}

//! Command-line pieces shared by `tutord` and `tutorctl`.

use std::fmt;
use std::str::FromStr;

use zbus::connection;

/// Which D-Bus bus to use: `system` (the default on a board), `session`, or an address such
/// as `unix:path=/tmp/bus` (tests run a private dbus-daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    System,
    Session,
    Address(String),
}

impl FromStr for BusChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(BusChoice::System),
            "session" => Ok(BusChoice::Session),
            // A D-Bus address is `transport:key=value[,key=value…]`.
            a if a
                .split_once(':')
                .is_some_and(|(t, rest)| !t.is_empty() && rest.contains('=')) =>
            {
                Ok(BusChoice::Address(a.to_string()))
            }
            other => Err(format!(
                "'{other}' is not a bus: use system, session, or a D-Bus address such as unix:path=/run/tutord-test/bus"
            )),
        }
    }
}

impl fmt::Display for BusChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusChoice::System => f.write_str("system bus"),
            BusChoice::Session => f.write_str("session bus"),
            BusChoice::Address(a) => write!(f, "bus at {a}"),
        }
    }
}

impl BusChoice {
    /// A connection builder for this bus; a bad address is reported by `build()`.
    pub fn builder(&self) -> connection::Builder<'static> {
        match self {
            BusChoice::System => connection::Builder::system(),
            BusChoice::Session => connection::Builder::session(),
            BusChoice::Address(a) => connection::Builder::address(a.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bus_choices() {
        assert_eq!("system".parse(), Ok(BusChoice::System));
        assert_eq!("session".parse(), Ok(BusChoice::Session));
        assert_eq!(
            "unix:path=/tmp/x".parse(),
            Ok(BusChoice::Address("unix:path=/tmp/x".into()))
        );
        let err = "sytem".parse::<BusChoice>().unwrap_err();
        assert!(err.contains("'sytem' is not a bus"), "{err}");
        assert!("unix:".parse::<BusChoice>().is_err());
        assert!(":path=/x".parse::<BusChoice>().is_err());
    }
}

//! The names clients and the daemon agree on: the well-known bus name, the object and the
//! interface. Here, not in `bus`, so that `tutorctl`'s side (`ctl`) does not reach into the
//! daemon's adapters.

/// The well-known name tutord owns.
pub const NAME: &str = "org.tutord.Tutor1";
/// The object that carries the interfaces.
pub const PATH: &str = "/org/tutord/Tutor1";
/// The main interface.
pub const INTERFACE: &str = "org.tutord.Tutor1";

//! The D-Bus face of tutord: thin adapters over the library, one file per interface.
//!
//! The interface XML in `docs/dbus/org.tutord.Tutor1.xml` is generated from this code (the
//! `///` docs land in introspection) and a test fails when the two differ.

mod access;
pub mod errors;
pub mod tutor;
pub mod voice;

pub use errors::TutorError;
pub use tutor::{Status, Tutor};
pub use voice::publish_activity;

/// The well-known name tutord owns.
pub const NAME: &str = "org.tutord.Tutor1";
/// The object that carries the interfaces.
pub const PATH: &str = "/org/tutord/Tutor1";
/// The main interface.
pub const INTERFACE: &str = "org.tutord.Tutor1";

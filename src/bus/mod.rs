//! The D-Bus face of tutord: thin adapters over the domains, one file per interface, and
//! the task that turns the tutor's events and the published status into signals.
//!
//! The interface XML in `docs/dbus/org.tutord.Tutor1.xml` is generated from this code (the
//! `///` docs land in introspection) and a test fails when the two differ.

mod access;
pub mod errors;
pub mod signals;
pub mod tutor;

pub use crate::api::{INTERFACE, NAME, PATH};
pub use errors::TutorError;
pub use tutor::{Handles, Tutor1};

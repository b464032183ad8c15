//! tutord: an offline voice tutor appliance daemon.
//!
//! The binaries (`tutord`, `tutorctl`) are thin; everything they do lives here so that it can
//! be tested without a board, a system bus or root. See docs/architecture.md for the picture.

pub mod api;
pub mod bench;
pub mod bus;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod diagnostics;
pub mod engine;
pub mod events;
pub mod fuzzing;
pub mod logging;
pub mod models;
pub mod notify;
pub mod plan;
pub mod platform;
pub mod sentence;
pub mod state;
pub mod store;
pub mod sync;
pub mod tuning;
pub mod tutor;
pub mod voice;

/// The daemon's version, as reported on D-Bus and in the journal.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

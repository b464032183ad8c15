//! The tutor: the conversation, the sessions it is kept in, and what happens to every
//! question, whichever way it came (D-Bus `Ask`, `ListenWav`, `Listen`, the hands-free loop):
//! answered in order, stored when it runs and when answered, calibrated, spoken. One
//! handle ([`Service`]) owns all of it and publishes what happens as [`Event`]s; the D-Bus
//! side only forwards them as signals.
//!
//! - [`conversation`]: the prompt, the turns so far, one turn at a time through the engine.
//! - [`budget`]: whether a question can fit the context at all.
//! - [`service`]: a whole turn, `Speak()`, the events.
//! - [`session`]: sessions and turns in the store; resuming after a restart; `History`.
//! - [`retention`]: old sessions removed as `[history]` says.
//! - [`persona`]: the system prompt.

pub mod budget;
pub mod conversation;
pub mod persona;
pub mod retention;
pub mod service;
pub mod session;
#[cfg(test)]
mod tests;

pub use conversation::{
    AskError, AskOptions, Conversation, MAX_QUESTION_BYTES, Prepared, TurnOutcome,
};
pub use service::{Event, Origin, Service, SpeakError, TurnReport};
pub use session::SessionError;

//! The backend-neutral face of an LLM: load with a placement, generate from a chat as a
//! stream of pieces, abort, keep a multi-turn session, report stats.

use std::path::PathBuf;
use std::sync::Arc;

pub use tutord_protocol::{
    BackendKind, ChatMessage, GenStats, LoadSpec, ModelInfo, Placement, Sampling,
};

/// What went wrong in an engine; messages name the file or the call.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("backend {backend} is not available: {reason}")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Runtime(String),
    #[error(
        "the question is too long: with the instructions it is {tokens} tokens, and at most \
         {limit} fit (the context of {context} tokens less the answer's {answer} and a margin)"
    )]
    QuestionTooLong {
        tokens: usize,
        limit: usize,
        context: u32,
        answer: u32,
    },
}

/// Counts the tokens of a text with a loaded model's tokenizer; callable from any thread,
/// also while the engine generates.
pub type Counter = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// A loaded model that answers chats. One answer at a time; not shared across threads.
pub trait Engine {
    fn info(&self) -> &ModelInfo;

    /// The model's token counter, when the backend exposes its tokenizer (RKLLM does not:
    /// the daemon then accepts a long question and the runtime ends it if it does not fit).
    fn counter(&self) -> Option<Counter> {
        None
    }

    /// Answers the last user message of `chat`. Each piece of text goes to `on_piece` as
    /// soon as it is decoded; when `on_piece` returns false the answer stops (abort) and the
    /// stats say `aborted`. A chat that extends the previous one reuses the kept KV cache:
    /// only the new messages are processed.
    fn generate(
        &mut self,
        chat: &[ChatMessage],
        sampling: &Sampling,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenStats, EngineError>;

    /// Forgets the kept session (a new conversation starts from an empty KV cache).
    fn reset(&mut self);
}

/// Peak resident set size of this process (`VmHWM`), in bytes; 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

//! The conversation: the system prompt, the turns so far, and one turn at a time through the
//! engine. A turn is prepared when asked (validated, numbered, holding the engine slot) and
//! run in order after the turns before it, so every prompt holds the previous answers. The
//! engine keeps the conversation's KV cache, so each turn only processes the new question.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::budget::Budget;
use crate::engine::{
    ChatMessage, EngineFailure, EngineHandle, GenStats, Sampling, Slot, SlotError, TurnEvent,
    TurnGuard,
};
use crate::sentence;

/// The longest question accepted, in bytes, before anything else is looked at: a bound on
/// the work of counting it and on the size of a `History` page. Whether a question fits the
/// model's context is checked in tokens (`check_fits`); this is well above what any context
/// the daemon runs leaves for a question of typed text (a spoken one is far shorter).
pub const MAX_QUESTION_BYTES: usize = 24 * 1024;

/// Why a question was refused before it became a turn.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{0}")]
    Invalid(String),
    #[error("no model is loaded: {0}")]
    NotReady(String),
    #[error("{0} questions are already waiting; try again when one is answered")]
    Busy(usize),
}

/// Per-question options (from `Ask`'s `a{sv}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AskOptions {
    /// Forget the conversation so far and start a new one with this question.
    pub new_session: bool,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    /// The answer; one cut short by `max_tokens` (`stats.truncated`) ends at its last
    /// complete sentence, or is marked (`sentence::cut_answer`).
    pub answer: String,
    pub stats: GenStats,
    /// Set when the engine failed (the turn is lost; the conversation is unchanged).
    pub error: Option<EngineFailure>,
    /// Seconds from `Ask` to the first piece, queueing included.
    pub time_to_first_token: f64,
}

/// A question accepted and numbered, holding its place in the engine slot until it ends.
pub struct Prepared {
    pub n: u64,
    pub id: String,
    question: String,
    new_session: bool,
    sampling: Sampling,
    epoch: u64,
    engine: EngineHandle,
    _guard: TurnGuard,
}

/// The conversation and its turn machinery.
pub struct Conversation {
    /// The engine (shared with the planner's service, which swaps it).
    slot: Arc<Slot>,
    /// The session's instructions (its persona and subject).
    system_prompt: Mutex<String>,
    defaults: Sampling,
    history: Mutex<Vec<ChatMessage>>,
    next_turn: AtomicU64,
    /// Bumped by `abort`: waiting turns asked before it end without running. A mutex, not an
    /// atomic: a turn checks it and hands its question to the engine under the lock, and
    /// `abort` bumps it and aborts the engine under the lock, so a question cannot slip
    /// past an abort into the engine after the engine's abort went by.
    abort_epoch: Mutex<u64>,
    /// Held by the running turn: turns run one after another in order of asking.
    running: tokio::sync::Mutex<()>,
    /// The most text of earlier turns kept here: the engine's window takes what fits the
    /// context (older turns slide out of the prompt), so keeping more would only grow every
    /// request. A token is rarely more than 8 bytes of text: twice that per token of context
    /// keeps more than any window can use.
    history_bytes: usize,
}

/// Bytes of earlier turns kept per token of context (see `Conversation::history_bytes`).
pub const HISTORY_BYTES_PER_TOKEN: usize = 16;

/// Drops the oldest turns (question and answer together) while the text is over `limit`.
pub fn trim_history(history: &mut Vec<ChatMessage>, limit: usize) {
    let mut bytes: usize = history.iter().map(|m| m.content.len()).sum();
    let mut cut = 0;
    while bytes > limit && cut + 2 <= history.len() {
        bytes -= history[cut].content.len() + history[cut + 1].content.len();
        cut += 2;
    }
    history.drain(..cut);
}

impl Conversation {
    /// `context_length`: the model's context in tokens, which bounds the history kept.
    pub fn new(
        slot: Arc<Slot>,
        system_prompt: String,
        defaults: Sampling,
        context_length: u32,
    ) -> Self {
        Self {
            history_bytes: context_length as usize * HISTORY_BYTES_PER_TOKEN,
            slot,
            system_prompt: Mutex::new(system_prompt),
            defaults,
            history: Mutex::new(Vec::new()),
            next_turn: AtomicU64::new(1),
            abort_epoch: Mutex::new(0),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Numbers the next turn `last + 1`: turn ids go on across restarts.
    pub fn number_turns_after(&self, last: u64) {
        self.next_turn.store(last + 1, Ordering::SeqCst);
    }

    /// Whether questions are pending (being answered or waiting).
    pub fn busy(&self) -> bool {
        self.slot.pending() > 0
    }

    /// Starts a conversation with these instructions and (for a resumed session) these
    /// earlier turns; refused while questions are pending. The engine's kept KV cache is
    /// dropped: the next turn processes the whole conversation once.
    pub fn begin(&self, system_prompt: String, history: Vec<ChatMessage>) -> Result<(), AskError> {
        let pending = self.slot.pending();
        if pending > 0 {
            return Err(AskError::Busy(pending));
        }
        *self.system_prompt.lock().unwrap_or_else(|p| p.into_inner()) = system_prompt;
        let mut history = history;
        trim_history(&mut history, self.history_bytes);
        *self.history.lock().unwrap_or_else(|p| p.into_inner()) = history;
        if let Some(e) = self.slot.engine() {
            e.reset();
        }
        Ok(())
    }

    /// Refuses (`Invalid`, naming the limit in tokens) a question that cannot fit the loaded
    /// model's context even alone, with the instructions and room for the answer's
    /// `max_tokens`; the window leaves older turns out for any other. A question within the
    /// byte bound (`Budget::sure_bytes`) is not counted; a longer one is counted by the model's
    /// tokenizer in the worker. When that fails (no model loaded yet, a worker restarting, a
    /// backend without a tokenizer such as RKLLM, no answer in 2 s) the question is
    /// accepted: the engine ends it with its own "the question is too long" error if it does
    /// not fit, as before this check existed. Over `MAX_QUESTION_BYTES` it is `prepare`'s to
    /// refuse, uncounted.
    pub async fn check_fits(&self, text: &str, options: &AskOptions) -> Result<(), AskError> {
        let question = text.trim();
        if question.len() > MAX_QUESTION_BYTES {
            return Ok(());
        }
        let Some(engine) = self.slot.engine() else {
            return Ok(());
        };
        let Some(model) = engine.status().model else {
            return Ok(());
        };
        let budget = Budget {
            context: model.context_length,
            max_tokens: options.max_tokens.unwrap_or(self.defaults.max_tokens),
        };
        let instructions = self.system_prompt();
        let sure = budget.sure_bytes(instructions.len());
        if question.len() <= sure {
            tracing::debug!(
                "a question of {} bytes fits without counting (up to {sure} bytes surely fit)",
                question.len()
            );
            return Ok(());
        }
        let (q, i) = tokio::join!(engine.count(question), engine.count(&instructions));
        match (q, i) {
            (Ok(q), Ok(i)) => {
                tracing::debug!(
                    "counted a question of {} bytes: {q} tokens, the instructions {i}",
                    question.len()
                );
                budget.check(q, i).map_err(AskError::Invalid)
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("cannot count the question's tokens ({e}); accepting it");
                Ok(())
            }
        }
    }

    /// Validates a question and numbers its turn; [`Conversation::run`] runs it.
    pub fn prepare(&self, text: &str, options: &AskOptions) -> Result<Prepared, AskError> {
        let question = text.trim();
        if question.is_empty() {
            return Err(AskError::Invalid("the question is empty".into()));
        }
        if question.len() > MAX_QUESTION_BYTES {
            return Err(AskError::Invalid(format!(
                "the question is {} bytes long; at most {MAX_QUESTION_BYTES} are accepted",
                question.len()
            )));
        }
        if question.contains('\0') {
            return Err(AskError::Invalid(
                "the question contains a NUL character".into(),
            ));
        }
        let (engine, guard) = self.slot.take_turn().map_err(|e| match e {
            SlotError::NotReady(why) => AskError::NotReady(why),
            SlotError::Busy(n) => AskError::Busy(n),
        })?;
        let mut sampling = self.defaults.clone();
        if let Some(m) = options.max_tokens {
            sampling.max_tokens = m;
        }
        if let Some(t) = options.temperature {
            sampling.temperature = t as f32;
        }
        let n = self.next_turn.fetch_add(1, Ordering::SeqCst);
        Ok(Prepared {
            n,
            id: format!("turn-{n}"),
            question: question.to_string(),
            new_session: options.new_session,
            sampling,
            epoch: self.epoch(),
            engine,
            _guard: guard,
        })
    }

    /// Stops the running answer and every waiting question.
    pub fn abort(&self) {
        let mut epoch = self.abort_epoch.lock().unwrap_or_else(|p| p.into_inner());
        *epoch += 1;
        if let Some(e) = self.slot.engine() {
            e.abort_all();
        }
    }

    fn epoch(&self) -> u64 {
        *self.abort_epoch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The system prompt in use.
    pub fn system_prompt(&self) -> String {
        self.system_prompt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The most text of earlier turns the conversation keeps, in bytes: what a resumed
    /// session needs to read back at most.
    pub fn history_limit(&self) -> usize {
        self.history_bytes
    }

    /// A copy of the conversation so far (system prompt excluded).
    pub fn history(&self) -> Vec<ChatMessage> {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs a prepared turn after the turns before it: `started` once the engine took it,
    /// `piece` for each piece of the answer. The turn's place in the slot is given
    /// back when this returns.
    pub async fn run(
        &self,
        turn: Prepared,
        started: impl FnOnce(),
        mut piece: impl FnMut(&str),
    ) -> TurnOutcome {
        let Prepared {
            n,
            question,
            new_session,
            sampling,
            epoch,
            engine,
            _guard,
            ..
        } = turn;
        let engine = &engine;
        let asked = Instant::now();
        let _running = self.running.lock().await;
        let mut outcome = TurnOutcome {
            answer: String::new(),
            stats: GenStats::default(),
            error: None,
            time_to_first_token: 0.0,
        };
        if self.epoch() != epoch {
            outcome.stats.aborted = true;
            return outcome;
        }
        if new_session {
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            engine.reset();
        }
        let prompt = self
            .system_prompt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut chat = vec![ChatMessage::new("system", &prompt)];
        chat.extend(self.history());
        chat.push(ChatMessage::new("user", &question));
        let generated = {
            let now = self.abort_epoch.lock().unwrap_or_else(|p| p.into_inner());
            if *now != epoch {
                outcome.stats.aborted = true;
                return outcome;
            }
            engine.generate(n, chat, sampling)
        };
        let mut events = match generated {
            Ok(rx) => rx,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        };
        // Only now has the question run: one dropped by an abort while it waited, or refused
        // by the engine, never started (and is not stored as a turn).
        started();
        let mut first = None;
        while let Some(ev) = events.recv().await {
            match ev {
                TurnEvent::Piece(p) => {
                    first.get_or_insert_with(Instant::now);
                    outcome.answer.push_str(&p);
                    piece(&p);
                }
                TurnEvent::Finished(stats) => {
                    outcome.stats = stats;
                    break;
                }
                TurnEvent::Failed(e) => {
                    outcome.error = Some(e);
                    break;
                }
            }
        }
        if outcome.error.is_none() && outcome.stats == GenStats::default() && first.is_none() {
            outcome.error = Some(EngineFailure::Died(
                "the turn ended without a result".into(),
            ));
        }
        outcome.time_to_first_token = first.map_or(0.0, |t| (t - asked).as_secs_f64());
        if outcome.stats.truncated {
            // The pieces went out as written; what is stored, given as the final answer and
            // sent to the model with the next question ends where a sentence ends.
            outcome.answer = sentence::cut_answer(&outcome.answer);
        }
        if outcome.error.is_none() {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            h.push(ChatMessage::new("user", &question));
            h.push(ChatMessage::new("assistant", &outcome.answer));
            trim_history(&mut h, self.history_bytes);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(q: &str, a: &str) -> [ChatMessage; 2] {
        [
            ChatMessage::new("user", q),
            ChatMessage::new("assistant", a),
        ]
    }

    #[test]
    fn the_oldest_whole_turns_leave_the_history_first() {
        let mut h: Vec<ChatMessage> = [turn("q1", "aaaa"), turn("q2", "bbbb"), turn("q3", "cc")]
            .into_iter()
            .flatten()
            .collect();
        // 6 + 6 + 4 bytes: 12 allowed leaves the last two turns.
        trim_history(&mut h, 12);
        let texts: Vec<&str> = h.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["q2", "bbbb", "q3", "cc"]);
        trim_history(&mut h, 0);
        assert!(h.is_empty());
        let mut one = vec![ChatMessage::new("user", "only a question")];
        trim_history(&mut one, 0);
        assert_eq!(one.len(), 1, "a lone message is never cut in half");
    }
}

//! Tutoring sessions in the daemon: the current session, its subject and persona, and every
//! turn written to the store as it happens (the question when asked, the answer when it
//! ends), so a restart loses nothing and the open session is resumed.

use crate::daemon::Context;
use crate::engine::ChatMessage;
use crate::store::{SessionRow, StoreError, TurnEnd, TurnRow};
use crate::tutor::{AskError, TurnOutcome, persona};

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;

/// Why a session call failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Busy(#[from] AskError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no session {0}")]
    Unknown(String),
}

impl Context {
    /// At boot: resumes the newest session that was not ended, with its answered turns as
    /// the conversation so far.
    pub fn resume_session(&self) {
        let open = self.store_lock().session_open();
        match open {
            Ok(Some(s)) => {
                let turns = self.store_lock().turns(s.id).unwrap_or_else(|e| {
                    tracing::error!("cannot read session {}'s turns: {e}", s.id);
                    Vec::new()
                });
                let history = conversation(&turns);
                let prompt = self.prompt_for(&s.subject);
                if let Err(e) = self.tutor.begin(prompt, history) {
                    tracing::warn!("cannot resume session {}: {e}", s.id);
                    return;
                }
                tracing::info!(
                    session = s.id,
                    subject = %s.subject,
                    turns = turns.len(),
                    "resumed session {} on {} ({} turns)",
                    s.id,
                    s.subject,
                    turns.len()
                );
                *self.session_lock() = Some(s);
            }
            Ok(None) => {
                let prompt = self.prompt_for(&self.config.tutor.subject);
                let _ = self.tutor.begin(prompt, Vec::new());
            }
            Err(e) => tracing::error!("cannot look for a session to resume: {e}"),
        }
    }

    /// Ends the current session (if any) and starts one on `subject` (empty = the
    /// configured subject). Refused while questions are pending.
    pub fn start_session(&self, subject: &str) -> Result<SessionRow, SessionError> {
        let subject = subject.trim();
        if subject.len() > MAX_SUBJECT_BYTES || subject.contains('\0') {
            return Err(SessionError::Invalid(format!(
                "the subject must be at most {MAX_SUBJECT_BYTES} bytes, without NUL characters"
            )));
        }
        let subject = if subject.is_empty() {
            self.config.tutor.subject.clone()
        } else {
            subject.to_string()
        };
        // Lock order, everywhere: session, then store.
        let mut current = self.session_lock();
        let kept = (self.tutor.system_prompt(), self.tutor.history());
        self.tutor.begin(self.prompt_for(&subject), Vec::new())?;
        let switched = self
            .store_lock()
            .session_switch(current.as_ref().map(|s| s.id), &subject);
        let s = match switched {
            Ok(s) => s,
            Err(e) => {
                // Not stored (a full disk): the old session and its conversation go on.
                let _ = self.tutor.begin(kept.0, kept.1);
                return Err(e.into());
            }
        };
        tracing::info!(session = s.id, subject = %s.subject, "session {} on {subject} started", s.id);
        *current = Some(s.clone());
        Ok(s)
    }

    /// Ends the current session; the next question starts a new one.
    pub fn end_session(&self) -> Result<(), SessionError> {
        let mut current = self.session_lock();
        let kept = (self.tutor.system_prompt(), self.tutor.history());
        self.tutor
            .begin(self.prompt_for(&self.config.tutor.subject), Vec::new())?;
        if let Some(old) = current.as_ref() {
            if let Err(e) = self.store_lock().session_end(old.id) {
                // Not stored: the session and its conversation go on.
                let _ = self.tutor.begin(kept.0, kept.1);
                return Err(e.into());
            }
            tracing::info!(session = old.id, "session {} ended", old.id);
        }
        *current = None;
        Ok(())
    }

    /// The session a question goes to: the current one, or (none yet, or `new_session`) a
    /// new one on the current subject. Only the store's view: the conversation itself is
    /// reset by the turn when it runs, after the turns queued before it.
    pub fn session_for_question(&self, new_session: bool) -> Result<i64, SessionError> {
        let mut current = self.session_lock();
        let subject = match &*current {
            Some(s) if !new_session => return Ok(s.id),
            Some(s) => {
                self.store_lock().session_end(s.id)?;
                s.subject.clone()
            }
            None => self.config.tutor.subject.clone(),
        };
        let s = self.store_lock().session_start(&subject)?;
        tracing::info!(session = s.id, "session {} on {} started", s.id, s.subject);
        let id = s.id;
        *current = Some(s);
        Ok(id)
    }

    pub fn current_session(&self) -> Option<SessionRow> {
        self.session_lock().clone()
    }

    /// Stores a question as it is asked. A store error is logged, not fatal: the tutor
    /// answers even when the disk is full.
    pub fn record_question(&self, session: i64, turn: &str, source: &str, question: &str) {
        match self
            .store_lock()
            .turn_asked(session, turn, source, question)
        {
            Ok(row) => {
                self.turn_rows_lock().insert(turn.to_string(), row);
            }
            Err(e) => tracing::error!("cannot store the question of {turn}: {e}"),
        }
    }

    /// Completes a turn's row with its answer.
    pub fn record_answer(&self, turn: &str, o: &TurnOutcome) {
        let Some(row) = self.turn_rows_lock().remove(turn) else {
            return;
        };
        let error = o.error.as_ref().map(|e| e.to_string());
        let end = TurnEnd {
            answer: &o.answer,
            time_to_first_token: o.time_to_first_token,
            tokens_per_second: o.stats.decode_tokens_per_second,
            generated_tokens: o.stats.generated_tokens,
            aborted: o.stats.aborted,
            error: error.as_deref(),
            timings: None,
        };
        if let Err(e) = self.store_lock().turn_finished(row, &end) {
            tracing::error!("cannot store the answer of {turn}: {e}");
        }
    }

    /// A session's turns, for `History`.
    pub fn history(&self, session: &str) -> Result<Vec<TurnRow>, SessionError> {
        let id: i64 = session
            .trim()
            .parse()
            .map_err(|_| SessionError::Unknown(session.chars().take(64).collect()))?;
        let store = self.store_lock();
        if store.session(id)?.is_none() {
            return Err(SessionError::Unknown(id.to_string()));
        }
        Ok(store.turns(id)?)
    }

    fn prompt_for(&self, subject: &str) -> String {
        persona::system_prompt(&self.config.llm, &self.config.tutor, subject)
    }
}

/// The conversation a session's turns make: answered turns only (an aborted or failed turn
/// never reached the model's context).
fn conversation(turns: &[TurnRow]) -> Vec<ChatMessage> {
    turns
        .iter()
        .filter(|t| !t.aborted && t.error.is_none())
        .filter_map(|t| {
            let answer = t.answer.as_deref()?;
            Some([
                ChatMessage::new("user", &t.question),
                ChatMessage::new("assistant", answer),
            ])
        })
        .flatten()
        .collect()
}

//! Tutoring sessions: the current session, its subject and persona, and every turn written
//! to the store as it happens (the question when it runs, the answer when it ends), so a
//! restart loses nothing and the open session is resumed. A session change that cannot be
//! stored changes nothing: the conversation before it goes on.

use super::conversation::{AskError, HISTORY_BYTES_PER_TOKEN, TurnOutcome};
use super::persona;
use super::service::{Event, Service, lock};
use crate::engine::ChatMessage;
use crate::store::{SessionRow, StoreError, TurnEnd, TurnRow};

/// The longest subject accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 200;
/// Turns in a `History` page when the caller asks for 0.
pub const HISTORY_PAGE: u32 = 100;
/// The most turns one `History` call returns: a page of the longest turns (24 KiB of
/// question, 4096 tokens of answer, ~24 KiB) is ~24 MiB, within the system bus's 32 MiB
/// message limit.
pub const MAX_HISTORY_PAGE: u32 = 500;

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

impl Service {
    /// At boot: resumes the newest session that was not ended, with its newest answered
    /// turns as the conversation so far: only as many as the conversation keeps, so a long
    /// session resumes in the same time and memory as a short one.
    pub fn resume_session(&self) {
        let open = lock(&self.inner.store).session_open();
        match open {
            Ok(Some(s)) => {
                let bytes = self.inner.conversation.history_limit();
                let recent = lock(&self.inner.store).recent_turns(s.id, max_turns(bytes), bytes);
                let turns = recent.unwrap_or_else(|e| {
                    tracing::error!("cannot read session {}'s turns: {e}", s.id);
                    Vec::new()
                });
                let history = conversation(&turns);
                let prompt = self.prompt_for(&s.subject);
                if let Err(e) = self.inner.conversation.begin(prompt, history) {
                    tracing::warn!("cannot resume session {}: {e}", s.id);
                    return;
                }
                tracing::info!(
                    session = s.id,
                    subject = %s.subject,
                    turns = turns.len(),
                    "resumed session {} on {} (its newest {} answered turns)",
                    s.id,
                    s.subject,
                    turns.len()
                );
                lock(&self.inner.sessions).current = Some(s);
            }
            Ok(None) => {
                let prompt = self.prompt_for(&self.inner.config.subject);
                let _ = self.inner.conversation.begin(prompt, Vec::new());
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
            self.inner.config.subject.clone()
        } else {
            subject.to_string()
        };
        // Lock order, everywhere: session, then store.
        let mut sessions = lock(&self.inner.sessions);
        let conversation = &self.inner.conversation;
        let kept = (conversation.system_prompt(), conversation.history());
        conversation.begin(self.prompt_for(&subject), Vec::new())?;
        let switched = lock(&self.inner.store)
            .session_switch(sessions.current.as_ref().map(|s| s.id), &subject);
        let s = match switched {
            Ok(s) => s,
            Err(e) => {
                // Not stored (a full disk): the old session and its conversation go on.
                let _ = conversation.begin(kept.0, kept.1);
                return Err(e.into());
            }
        };
        tracing::info!(session = s.id, subject = %s.subject, "session {} on {subject} started", s.id);
        sessions.current = Some(s.clone());
        drop(sessions);
        self.publish(Event::SessionChanged);
        Ok(s)
    }

    /// Ends the current session; the next question starts a new one.
    pub fn end_session(&self) -> Result<(), SessionError> {
        let mut sessions = lock(&self.inner.sessions);
        let conversation = &self.inner.conversation;
        let kept = (conversation.system_prompt(), conversation.history());
        conversation.begin(self.prompt_for(&self.inner.config.subject), Vec::new())?;
        if let Some(old) = sessions.current.as_ref() {
            if let Err(e) = lock(&self.inner.store).session_end(old.id) {
                // Not stored: the session and its conversation go on.
                let _ = conversation.begin(kept.0, kept.1);
                return Err(e.into());
            }
            tracing::info!(session = old.id, "session {} ended", old.id);
        }
        sessions.current = None;
        drop(sessions);
        self.publish(Event::SessionChanged);
        Ok(())
    }

    /// The session a question goes to: the current one, or (none yet, or `new_session`) a
    /// new one on the current subject. Only the store's view: the conversation itself is
    /// reset by the turn when it runs, after the turns queued before it.
    pub(super) fn session_for_question(&self, new_session: bool) -> Result<i64, SessionError> {
        let mut sessions = lock(&self.inner.sessions);
        let subject = match &sessions.current {
            Some(s) if !new_session => return Ok(s.id),
            Some(s) => {
                lock(&self.inner.store).session_end(s.id)?;
                s.subject.clone()
            }
            None => self.inner.config.subject.clone(),
        };
        let s = lock(&self.inner.store).session_start(&subject)?;
        tracing::info!(session = s.id, "session {} on {} started", s.id, s.subject);
        let id = s.id;
        sessions.current = Some(s);
        drop(sessions);
        self.publish(Event::SessionChanged);
        Ok(id)
    }

    pub fn current_session(&self) -> Option<SessionRow> {
        lock(&self.inner.sessions).current.clone()
    }

    /// Stores a question as it reaches the engine. A store error is logged, not fatal: the
    /// tutor answers even when the disk is full.
    pub(super) fn record_question(&self, session: i64, turn: &str, source: &str, question: &str) {
        let mut sessions = lock(&self.inner.sessions);
        match lock(&self.inner.store).turn_asked(session, turn, source, question) {
            Ok(row) => {
                sessions.rows.insert(turn.to_string(), row);
            }
            Err(e) => tracing::error!("cannot store the question of {turn}: {e}"),
        }
    }

    /// Completes a turn's row with its answer.
    pub(super) fn record_answer(&self, turn: &str, o: &TurnOutcome) {
        let Some(row) = lock(&self.inner.sessions).rows.remove(turn) else {
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
        if let Err(e) = lock(&self.inner.store).turn_finished(row, &end) {
            tracing::error!("cannot store the answer of {turn}: {e}");
        }
    }

    /// A page of a session's turns, for `History`: `limit` turns (0 = [`HISTORY_PAGE`], at
    /// most [`MAX_HISTORY_PAGE`]) counted back from the newest, skipping the newest
    /// `offset`; oldest first.
    pub fn history(
        &self,
        session: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<TurnRow>, SessionError> {
        let limit = match limit {
            0 => HISTORY_PAGE,
            1..=MAX_HISTORY_PAGE => limit,
            _ => {
                return Err(SessionError::Invalid(format!(
                    "the limit is {limit} turns; at most {MAX_HISTORY_PAGE} are returned at \
                     once (0 = {HISTORY_PAGE})"
                )));
            }
        };
        let id: i64 = session
            .trim()
            .parse()
            .map_err(|_| SessionError::Unknown(session.chars().take(64).collect()))?;
        let store = lock(&self.inner.store);
        if store.session(id)?.is_none() {
            return Err(SessionError::Unknown(id.to_string()));
        }
        Ok(store.turns_page(id, offset, limit)?)
    }

    fn prompt_for(&self, subject: &str) -> String {
        persona::system_prompt(&self.inner.llm, &self.inner.config, subject)
    }
}

/// The most turns a resumed session reads for a history of `bytes`: every turn in a prompt
/// takes at least two tokens (its question, and a role marker or separator), so a window of
/// `bytes / HISTORY_BYTES_PER_TOKEN` tokens never holds more than half that many turns. The
/// byte bound alone would let a session of one-letter turns read tens of thousands of rows.
fn max_turns(bytes: usize) -> u32 {
    u32::try_from(bytes / HISTORY_BYTES_PER_TOKEN / 2).unwrap_or(u32::MAX)
}

/// The conversation a session's answered turns make.
fn conversation(turns: &[TurnRow]) -> Vec<ChatMessage> {
    turns
        .iter()
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

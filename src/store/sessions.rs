//! Tutoring sessions and their turns.

use rusqlite::OptionalExtension;

use super::{Store, StoreError, query_err};

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub id: i64,
    pub subject: String,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// A turn as stored; `answer` is None while (or if) it never finished.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRow {
    pub id: i64,
    pub session_id: i64,
    pub turn_id: String,
    pub source: String,
    pub question: String,
    pub answer: Option<String>,
    pub asked_at: String,
    pub finished_at: Option<String>,
    pub time_to_first_token: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub generated_tokens: Option<i64>,
    pub aborted: bool,
    pub error: Option<String>,
    pub timings: Option<String>,
}

/// How a turn ended, to complete its row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnEnd<'a> {
    pub answer: &'a str,
    pub time_to_first_token: f64,
    pub tokens_per_second: f64,
    pub generated_tokens: u32,
    pub aborted: bool,
    pub error: Option<&'a str>,
    pub timings: Option<&'a str>,
}

impl Store {
    pub fn session_start(&self, subject: &str) -> Result<SessionRow, StoreError> {
        self.conn
            .execute("INSERT INTO sessions (subject) VALUES (?1)", [subject])
            .map_err(|source| query_err(&self.path, "starting a session", source))?;
        let id = self.conn.last_insert_rowid();
        self.session(id)?.ok_or_else(|| {
            query_err(
                &self.path,
                "reading the new session",
                rusqlite::Error::QueryReturnedNoRows,
            )
        })
    }

    /// Ends session `old` (if any) and starts one on `subject`, in one transaction: on a
    /// failure (a full disk) neither happened.
    pub fn session_switch(
        &self,
        old: Option<i64>,
        subject: &str,
    ) -> Result<SessionRow, StoreError> {
        let err = |source| query_err(&self.path, "switching sessions", source);
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        if let Some(id) = old {
            self.session_end(id)?;
        }
        let s = self.session_start(subject)?;
        tx.commit().map_err(err)?;
        Ok(s)
    }

    pub fn session_end(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sessions SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE id = ?1 AND ended_at IS NULL",
                [id],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "ending a session", source))
    }

    pub fn session(&self, id: i64) -> Result<Option<SessionRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, subject, started_at, ended_at FROM sessions WHERE id = ?1",
                [id],
                session_row,
            )
            .optional()
            .map_err(|source| query_err(&self.path, "reading a session", source))
    }

    /// The newest session that was not ended: the one to resume after a restart.
    pub fn session_open(&self) -> Result<Option<SessionRow>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, subject, started_at, ended_at FROM sessions \
                 WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1",
                [],
                session_row,
            )
            .optional()
            .map_err(|source| query_err(&self.path, "finding the open session", source))
    }

    /// The highest N of the stored turn ids `turn-N` (0 when none): a restarted tutord
    /// numbers its turns on from it, so an id names one turn in History for good.
    pub fn last_turn_number(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(CAST(substr(turn_id, 6) AS INTEGER)), 0) FROM turns \
                 WHERE turn_id GLOB 'turn-[0-9]*'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|source| query_err(&self.path, "reading the last turn id", source))
    }

    /// Writes a question as it is asked; returns the turn's row id.
    pub fn turn_asked(
        &self,
        session_id: i64,
        turn_id: &str,
        source: &str,
        question: &str,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO turns (session_id, boot_id, turn_id, source, question) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![session_id, self.boot_id, turn_id, source, question],
            )
            .map_err(|source| query_err(&self.path, "storing a question", source))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Completes a turn's row with its answer and figures.
    pub fn turn_finished(&self, row: i64, end: &TurnEnd<'_>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE turns SET answer = ?2, finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 time_to_first_token = ?3, tokens_per_second = ?4, generated_tokens = ?5, \
                 aborted = ?6, error = ?7, timings = ?8 WHERE id = ?1",
                rusqlite::params![
                    row,
                    end.answer,
                    end.time_to_first_token,
                    end.tokens_per_second,
                    end.generated_tokens,
                    end.aborted,
                    end.error,
                    end.timings
                ],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "storing an answer", source))
    }

    /// A page of a session's turns for `History`: `limit` turns counted back from the newest
    /// (`offset` 0 = the newest `limit`), returned oldest first. Paged in SQL, so a long
    /// session never passes through memory whole.
    pub fn turns_page(
        &self,
        session_id: i64,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<TurnRow>, StoreError> {
        let err = |source| query_err(&self.path, "reading a session's turns", source);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT * FROM (SELECT {TURN_COLUMNS} FROM turns WHERE session_id = ?1 \
                 ORDER BY id DESC LIMIT ?2 OFFSET ?3) ORDER BY id"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params![session_id, limit, offset], turn_row)
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    /// The newest answered turns of a session (not aborted, not failed: those never reached
    /// the model's context), oldest first: at most `max_turns`, and only as many of the
    /// newest as fit in `max_bytes` of question and answer text together. Read newest first
    /// and stopped there, so resuming a session of any length costs the same.
    pub fn recent_turns(
        &self,
        session_id: i64,
        max_turns: u32,
        max_bytes: usize,
    ) -> Result<Vec<TurnRow>, StoreError> {
        let err = |source| query_err(&self.path, "reading a session's recent turns", source);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TURN_COLUMNS} FROM turns WHERE session_id = ?1 AND answer IS NOT NULL \
                 AND NOT aborted AND error IS NULL ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(err)?;
        let mut rows = stmt
            .query(rusqlite::params![session_id, max_turns])
            .map_err(err)?;
        let (mut taken, mut bytes) = (Vec::new(), 0);
        while let Some(r) = rows.next().map_err(err)? {
            let t = turn_row(r).map_err(err)?;
            bytes += t.question.len() + t.answer.as_deref().map_or(0, str::len);
            if bytes > max_bytes {
                break;
            }
            taken.push(t);
        }
        taken.reverse();
        Ok(taken)
    }
}

const TURN_COLUMNS: &str = "id, session_id, turn_id, source, question, answer, asked_at, \
    finished_at, time_to_first_token, tokens_per_second, generated_tokens, aborted, error, timings";

fn turn_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TurnRow> {
    Ok(TurnRow {
        id: r.get(0)?,
        session_id: r.get(1)?,
        turn_id: r.get(2)?,
        source: r.get(3)?,
        question: r.get(4)?,
        answer: r.get(5)?,
        asked_at: r.get(6)?,
        finished_at: r.get(7)?,
        time_to_first_token: r.get(8)?,
        tokens_per_second: r.get(9)?,
        generated_tokens: r.get(10)?,
        aborted: r.get(11)?,
        error: r.get(12)?,
        timings: r.get(13)?,
    })
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
    })
}

//! How long sessions are kept: the oldest go, with their turns, once they are older than a
//! number of days or beyond a number of sessions.

use super::{Store, StoreError, query_err};

/// What to keep; 0 = no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Sessions whose last activity (their end, or their start while never ended) is older
    /// than this many days go.
    pub keep_days: u32,
    /// Only the newest this many sessions stay.
    pub keep_sessions: u32,
}

/// What a pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub turns: u64,
}

impl Store {
    /// Deletes the sessions `keep` does not keep, with their turns, as of `now_unix`
    /// (seconds), in one transaction. `spare` (the session in use) always stays, and so do
    /// the newest session and the session of the newest turn: session and turn ids go on
    /// from the highest stored ones, so keeping those means an id never names two sessions
    /// or two turns.
    pub fn prune_sessions(
        &self,
        keep: Retention,
        now_unix: i64,
        spare: Option<i64>,
    ) -> Result<Pruned, StoreError> {
        let err = |source| query_err(&self.path, "removing old sessions", source);
        if keep.keep_days == 0 && keep.keep_sessions == 0 {
            return Ok(Pruned::default());
        }
        let cutoff = now_unix - i64::from(keep.keep_days) * 86_400;
        let tx = self.conn.unchecked_transaction().map_err(err)?;
        let doomed: Vec<i64> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id FROM sessions \
                     WHERE id IS NOT ?1 \
                     AND id <> (SELECT MAX(id) FROM sessions) \
                     AND id IS NOT (SELECT session_id FROM turns ORDER BY id DESC LIMIT 1) \
                     AND ((?2 > 0 AND id NOT IN \
                             (SELECT id FROM sessions ORDER BY id DESC LIMIT ?2)) \
                       OR (?3 > 0 AND COALESCE(ended_at, started_at) \
                             < strftime('%Y-%m-%dT%H:%M:%fZ', ?4, 'unixepoch'))) \
                     ORDER BY id",
                )
                .map_err(err)?;
            let ids = stmt
                .query_map(
                    rusqlite::params![spare, keep.keep_sessions, keep.keep_days, cutoff],
                    |r| r.get(0),
                )
                .map_err(err)?;
            ids.collect::<Result<_, _>>().map_err(err)?
        };
        let mut pruned = Pruned::default();
        for id in doomed {
            pruned.turns += tx
                .execute("DELETE FROM turns WHERE session_id = ?1", [id])
                .map_err(err)? as u64;
            pruned.sessions += tx
                .execute("DELETE FROM sessions WHERE id = ?1", [id])
                .map_err(err)? as u64;
        }
        tx.commit().map_err(err)?;
        Ok(pruned)
    }
}

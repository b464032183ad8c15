//! Old sessions removed as `[history]` says: the tutor decides what goes (never the session
//! in use), the store removes it, the journal says what went. The daemon runs it at boot and
//! daily.

use std::time::{SystemTime, UNIX_EPOCH};

use super::service::{Service, lock};
use super::session::SessionError;
use crate::config::HistoryConfig;
use crate::store::{Pruned, Retention};

impl Service {
    /// Removes the sessions older than `keep.keep_days` (as of `now`) or beyond the newest
    /// `keep.keep_sessions`, with their turns; the current session always stays.
    pub fn prune_history(
        &self,
        keep: &HistoryConfig,
        now: SystemTime,
    ) -> Result<Pruned, SessionError> {
        let policy = Retention {
            keep_days: keep.keep_days,
            keep_sessions: keep.keep_sessions,
        };
        let now_unix = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        // Held throughout, so the session in use cannot change while the pass runs (lock
        // order: sessions, then store).
        let sessions = lock(&self.inner.sessions);
        let current = sessions.current.as_ref().map(|s| s.id);
        let pruned = lock(&self.inner.store)
            .prune_sessions(policy, now_unix, current)
            .inspect_err(|e| tracing::error!("cannot remove old sessions: {e}"))?;
        drop(sessions);
        if pruned == Pruned::default() {
            tracing::debug!("no session is past [history] keep_days or keep_sessions");
        } else {
            tracing::info!(
                removed_sessions = pruned.sessions,
                removed_turns = pruned.turns,
                keep_days = keep.keep_days,
                keep_sessions = keep.keep_sessions,
                "removed {} old sessions with {} turns ([history] keep_days = {}, \
                 keep_sessions = {})",
                pruned.sessions,
                pruned.turns,
                keep.keep_days,
                keep.keep_sessions
            );
        }
        Ok(pruned)
    }
}

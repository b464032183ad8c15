//! `[history]`: how long tutoring sessions are kept in the database.

use serde::{Deserialize, Serialize};

/// The longest `keep_days` accepted: a century is "forever" in a typo-proof way.
const MAX_KEEP_DAYS: u32 = 36_500;
/// The most `keep_sessions` accepted.
const MAX_KEEP_SESSIONS: u32 = 1_000_000;

/// `[history]`: old sessions and their turns are removed at boot and once a day. The
/// session in use is never removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Sessions that ended more than this many days ago go. 0 = no age limit. 0..=36500,
    /// default 365.
    pub keep_days: u32,
    /// Only the newest this many sessions stay. 0 = no count limit. 0..=1000000, default
    /// 1000.
    pub keep_sessions: u32,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            keep_days: 365,
            keep_sessions: 1000,
        }
    }
}

impl HistoryConfig {
    /// Whether nothing is ever removed.
    pub fn keeps_everything(&self) -> bool {
        self.keep_days == 0 && self.keep_sessions == 0
    }

    /// The key and the reason when a value is out of range.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        for (key, v, hi) in [
            ("history.keep_days", self.keep_days, MAX_KEEP_DAYS),
            (
                "history.keep_sessions",
                self.keep_sessions,
                MAX_KEEP_SESSIONS,
            ),
        ] {
            if v > hi {
                return Err((
                    key.into(),
                    format!("{v} is out of range 0..={hi} (0 = keep forever)"),
                ));
            }
        }
        Ok(())
    }
}

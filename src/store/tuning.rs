//! The tuning journal (`tuning_changes`): what tuning changed on the system, written before
//! each change is made, so that a stop, or the next start after a crash, can undo it.

use super::{Store, StoreError, query_err};

/// One journal row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuningRow {
    pub id: i64,
    pub boot_id: i64,
    /// `stop-unit`, `start-unit` or `write`.
    pub kind: String,
    /// A unit name, or an absolute-looking sysfs path (read under `[platform] root`).
    pub target: String,
    /// The value to restore (`write`), empty for units.
    pub previous: String,
    /// What tuning set.
    pub value: String,
    /// `pending`, `applied`, `undone` or `abandoned`.
    pub state: String,
}

impl Store {
    /// Records a change about to be made (`pending`); returns its id.
    pub fn tuning_record(
        &self,
        kind: &str,
        target: &str,
        previous: &str,
        value: &str,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO tuning_changes (boot_id, kind, target, previous, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![self.boot_id, kind, target, previous, value],
            )
            .map_err(|source| query_err(&self.path, "recording a tuning change", source))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Moves a change to `state` (`applied`, `undone`, `abandoned`), with an optional note.
    pub fn tuning_set_state(
        &self,
        id: i64,
        state: &str,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE tuning_changes SET state = ?2, note = ?3, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                rusqlite::params![id, state, note],
            )
            .map(drop)
            .map_err(|source| query_err(&self.path, "updating a tuning change", source))
    }

    /// Changes not undone yet (`pending` or `applied`), newest first: the order to undo them.
    pub fn tuning_outstanding(&self) -> Result<Vec<TuningRow>, StoreError> {
        let read = || -> Result<Vec<TuningRow>, rusqlite::Error> {
            let mut stmt = self.conn.prepare(
                "SELECT id, boot_id, kind, target, previous, value, state FROM tuning_changes \
                 WHERE state IN ('pending', 'applied') ORDER BY id DESC",
            )?;
            stmt.query_map([], |r| {
                Ok(TuningRow {
                    id: r.get(0)?,
                    boot_id: r.get(1)?,
                    kind: r.get(2)?,
                    target: r.get(3)?,
                    previous: r.get(4)?,
                    value: r.get(5)?,
                    state: r.get(6)?,
                })
            })?
            .collect()
        };
        read().map_err(|source| query_err(&self.path, "reading the tuning journal", source))
    }
}

//! The journal tuning writes before each change: the store's `tuning_changes` table.

use std::sync::Mutex;

use super::{Change, TuningError};
use crate::store::{Store, TuningRow};

/// Where changes are recorded. The lock is taken per call, never across a slow change.
pub trait Journal {
    /// Records a change about to be made; returns its id.
    fn record(&self, change: &Change) -> Result<i64, TuningError>;
    /// `applied`, `undone` or `abandoned` (with why).
    fn set_state(&self, id: i64, state: &str, note: Option<&str>) -> Result<(), TuningError>;
    /// Changes not undone, newest first.
    fn outstanding(&self) -> Result<Vec<TuningRow>, TuningError>;
}

fn lock(m: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Journal for Mutex<Store> {
    fn record(&self, change: &Change) -> Result<i64, TuningError> {
        Ok(lock(self).tuning_record(
            change.kind(),
            change.target(),
            change.previous(),
            change.value(),
        )?)
    }

    fn set_state(&self, id: i64, state: &str, note: Option<&str>) -> Result<(), TuningError> {
        Ok(lock(self).tuning_set_state(id, state, note)?)
    }

    fn outstanding(&self) -> Result<Vec<TuningRow>, TuningError> {
        Ok(lock(self).tuning_outstanding()?)
    }
}

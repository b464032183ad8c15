//! The one kind of thing tuning journals: an undoable system change.

use crate::store::TuningRow;

/// One undoable system change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A running unit tutord stopped; undone by starting it.
    StopUnit { unit: String },
    /// A helper unit tutord started (Jetson clocks); undone by stopping it.
    StartUnit { unit: String },
    /// A sysfs attribute written (a path read under `[platform] root`); undone by writing
    /// `previous` back.
    Write {
        path: String,
        previous: String,
        value: String,
    },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::StopUnit { .. } => "stop-unit",
            Change::StartUnit { .. } => "start-unit",
            Change::Write { .. } => "write",
        }
    }

    pub fn target(&self) -> &str {
        match self {
            Change::StopUnit { unit } | Change::StartUnit { unit } => unit,
            Change::Write { path, .. } => path,
        }
    }

    pub(super) fn previous(&self) -> &str {
        match self {
            Change::Write { previous, .. } => previous,
            _ => "",
        }
    }

    pub(super) fn value(&self) -> &str {
        match self {
            Change::Write { value, .. } => value,
            _ => "",
        }
    }

    /// The change as a person reads it.
    pub fn describe(&self) -> String {
        match self {
            Change::StopUnit { unit } => format!("stop {unit}"),
            Change::StartUnit { unit } => format!("start {unit}"),
            Change::Write {
                path,
                previous,
                value,
            } => format!("write {value} to {path} (was {previous})"),
        }
    }

    /// What undoing the change does, as a person reads it.
    pub fn describe_undo(&self) -> String {
        match self {
            Change::StopUnit { unit } => format!("start {unit}"),
            Change::StartUnit { unit } => format!("stop {unit}"),
            Change::Write { path, previous, .. } => format!("write {previous} to {path}"),
        }
    }

    /// The change a journal row records, if the row is one this tutord knows.
    pub fn from_row(row: &TuningRow) -> Option<Self> {
        Some(match row.kind.as_str() {
            "stop-unit" => Change::StopUnit {
                unit: row.target.clone(),
            },
            "start-unit" => Change::StartUnit {
                unit: row.target.clone(),
            },
            "write" => Change::Write {
                path: row.target.clone(),
                previous: row.previous.clone(),
                value: row.value.clone(),
            },
            _ => return None,
        })
    }
}

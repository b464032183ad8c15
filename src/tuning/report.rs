//! What tuning did, shared with the thermal sampler and the bus (`Diagnostics()`,
//! `tutorctl tuning`).

use std::sync::{Arc, Mutex};

use super::{Change, affinity, thermal};
use crate::diagnostics::Value;
use crate::platform::topology::format_cpu_list;

/// What tuning did, for diagnostics and `tutorctl tuning`.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub mode: String,
    pub board: String,
    /// The cores tutord and the engine are pinned to; empty = not pinned.
    pub cpus: Vec<usize>,
    pub cpus_basis: String,
    pub stopped_units: Vec<String>,
    pub started_units: Vec<String>,
    pub writes: Vec<Change>,
    /// Dry run: the changes that would have been made.
    pub would: Vec<String>,
    pub warnings: Vec<String>,
    /// Changes of a previous run undone at this start.
    pub reconciled: u64,
    /// MemAvailable after stopping units minus before, bytes.
    pub mem_freed_bytes: i64,
    pub swap: String,
    pub thermal: Option<thermal::Sample>,
}

/// The report, shared between the tuner, the thermal sampler and the bus.
pub type Shared = Arc<Mutex<Report>>;

pub(crate) fn lock(r: &Shared) -> std::sync::MutexGuard<'_, Report> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

impl Report {
    /// `Diagnostics()` entries, all named `tuning_*`. The affinity is read live from
    /// `/proc/self/task`.
    pub fn entries(&self) -> Vec<(String, Value)> {
        let threads = affinity::threads(std::path::Path::new("/proc/self/task"));
        let want = (!self.cpus.is_empty()).then_some(self.cpus.as_slice());
        let join = |v: &[String], sep: &str| v.join(sep);
        let mut d: Vec<(String, Value)> = vec![
            ("tuning_mode".into(), self.mode.clone().into()),
            (
                "tuning_cpus".into(),
                if self.cpus.is_empty() {
                    "all (not pinned)".to_string()
                } else {
                    format_cpu_list(&self.cpus)
                }
                .into(),
            ),
            ("tuning_cpus_basis".into(), self.cpus_basis.clone().into()),
            (
                "tuning_affinity".into(),
                affinity::summary(&threads, want).into(),
            ),
            (
                "tuning_stopped_units".into(),
                join(&self.stopped_units, " ").into(),
            ),
            (
                "tuning_started_units".into(),
                join(&self.started_units, " ").into(),
            ),
            (
                "tuning_governors".into(),
                self.writes
                    .iter()
                    .map(Change::describe)
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into(),
            ),
            ("tuning_swap".into(), self.swap.clone().into()),
            ("tuning_mem_freed_bytes".into(), self.mem_freed_bytes.into()),
            ("tuning_reconciled".into(), self.reconciled.into()),
            ("tuning_warnings".into(), join(&self.warnings, "\n").into()),
        ];
        if !self.would.is_empty() {
            d.push(("tuning_would".into(), join(&self.would, "\n").into()));
        }
        let (throttled, thermal) = match &self.thermal {
            Some(s) => (s.throttled(), s.describe()),
            None => (false, "not sampled".to_string()),
        };
        d.push(("tuning_throttled".into(), throttled.into()));
        d.push(("tuning_thermal".into(), thermal.into()));
        if let Some(s) = self.thermal.as_ref().filter(|s| s.throttled()) {
            d.push((
                "tuning_throttle_reasons".into(),
                s.reasons.join("\n").into(),
            ));
        }
        d
    }
}

//! Tuning: free the memory bus for the model and keep the work on the fast cores. Stops
//! nonessential units (through root's helper unit, `helper.rs`), pins tutord's threads and the engine to the big
//! cores, pins clocks (cpufreq/devfreq governors, Jetson helpers), turns swap off when asked
//! and watches thermals, and undoes all of it.
//!
//! Every system change is a [`Change`], written to the store's tuning journal *before* it is
//! made and marked when made and when undone. A clean stop undoes the changes of this run
//! (newest first); the next start after a crash (kill -9, power cut) undoes whatever the
//! journal still holds before tuning anew ([`Tuner::start`]). The affinity of our own threads
//! is not journaled: it ends with the process.
//!
//! `[tuning] mode = "dry-run"` logs every change it would make and makes none; `off` changes
//! nothing (but still undoes a crashed run's changes). On a generic board only what the
//! config names explicitly changes.

pub mod affinity;
mod change;
pub mod clocks;
pub mod helper;
pub mod journal;
pub mod memory;
pub(crate) mod report;
pub mod services;
pub mod swap;
pub mod thermal;

use std::path::PathBuf;
use std::time::Duration;

pub use change::Change;
pub use journal::Journal;
use report::lock;
pub use report::{Report, Shared};
pub use services::{Systemd, Units};

use crate::config::{Config, TuningConfig, TuningMode};
use crate::events;
use crate::platform::memory::MemInfo;
use crate::platform::profile::BoardProfile;
use crate::platform::topology::{BigBasis, Topology, format_cpu_list};
use crate::platform::{Board, Paths};
use crate::store::{StoreError, TuningRow};

/// What went wrong while tuning; each names the file, unit or thread.
#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    #[error("cannot write '{value}' to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot connect to systemd on the system bus: {0} (units are left as they are)")]
    Connect(zbus::Error),
    #[error("cannot {verb} {unit}: {reason}")]
    Unit {
        verb: &'static str,
        unit: String,
        reason: String,
    },
    #[error("systemd's job to {verb} {unit} ended with result '{result}'")]
    Job {
        verb: &'static str,
        unit: String,
        result: String,
    },
    #[error("systemd did not {verb} {unit} within {secs} s")]
    Timeout {
        verb: &'static str,
        unit: String,
        secs: u64,
    },
    #[error("cannot set the CPU affinity of thread {tid} to {cpus}: {source}")]
    Affinity {
        tid: i32,
        cpus: String,
        source: std::io::Error,
    },
    #[error("no connection to systemd: cannot {verb} {unit}")]
    NoSystemd { verb: &'static str, unit: String },
    #[error(
        "{path} was changed by someone else since (now '{now}', tutord set '{set}'): left as it is"
    )]
    ChangedSince {
        path: String,
        now: String,
        set: String,
    },
    #[error("memory limit instance '{instance}': {why}")]
    Instance { instance: String, why: String },
    #[error("cannot set the memory limit of {unit}: {reason}")]
    SetProperties { unit: String, reason: String },
    #[error("tuning journal: {0}")]
    Store(#[from] StoreError),
}

/// All that undoing this run's tuning may take at stop: well inside the unit's
/// `TimeoutStopSec=20s`, so that systemd's SIGKILL never cuts tutord's own stop short (each
/// unit job alone may wait up to 30 s, `services::JOB_TIMEOUT`).
const STOP_BUDGET: Duration = Duration::from_secs(12);

/// Plans, applies and undoes the tuning of one run of the daemon.
pub struct Tuner<U: Units = Systemd> {
    cfg: TuningConfig,
    paths: Paths,
    profile: BoardProfile,
    board: Board,
    /// The cores to pin to; None = leave the affinity alone.
    cpus: Option<Vec<usize>>,
    units: Option<U>,
    applied: Vec<(i64, Change)>,
    report: Shared,
}

impl<U: Units> Tuner<U> {
    /// Reads the CPUs of the board `profile` (detected once, by the daemon) and decides the
    /// cores. Problems (a missing CPU) become warnings: tuning never stops the daemon.
    pub fn new(config: &Config, profile: BoardProfile, report: Shared) -> Self {
        let cfg = config.tuning.clone();
        let paths = Paths::new(&config.platform.root);
        let mut warnings = Vec::new();
        let board = profile.board();
        let topology = Topology::read(&paths);
        let online = topology.ids();
        let (cpus, basis) = if !cfg.cpus.is_empty() {
            let (have, missing): (Vec<usize>, Vec<usize>) =
                cfg.cpus.iter().partition(|c| online.contains(c));
            if !missing.is_empty() {
                warnings.push(format!(
                    "[tuning] cpus: CPU {} does not exist or is offline (online: {}); left out",
                    format_cpu_list(&missing),
                    format_cpu_list(&online)
                ));
            }
            if have.is_empty() {
                (None, "none of [tuning] cpus exists: not pinned".to_string())
            } else {
                (Some(have), "[tuning] cpus".to_string())
            }
        } else if board != Board::Generic && cfg.board_defaults {
            let (big, basis) = topology.big_cores();
            let big_little = matches!(board, Board::Rk3588 | Board::Rk3576);
            if basis == BigBasis::AllAlike && big_little && online.len() > 1 {
                // sysfs does not tell the A76 from the A55 here: measure them (~20 ms each).
                let fast = crate::bench::compute::fastest(&online, Duration::from_millis(20));
                (Some(fast), "big cores by measured FP32 rate".to_string())
            } else if big.len() == online.len() {
                // All cores alike (Orin Nano): pinning would change nothing.
                (None, format!("all cores alike ({})", basis.as_str()))
            } else {
                (Some(big), format!("big cores by {}", basis.as_str()))
            }
        } else {
            (None, "generic board: not pinned".to_string())
        };
        {
            let mut r = lock(&report);
            r.mode = cfg.mode.as_str().into();
            r.board = profile.name.clone();
            r.cpus_basis = basis;
            for w in &warnings {
                tracing::warn!("tuning: {w}");
            }
            r.warnings.extend(warnings);
        }
        Self {
            cfg,
            paths,
            profile,
            board,
            cpus,
            units: None,
            applied: Vec::new(),
            report,
        }
    }

    /// Uses `units` instead of connecting to systemd (tests).
    pub fn with_units(mut self, units: U) -> Self {
        self.units = Some(units);
        self
    }

    pub fn report(&self) -> Shared {
        self.report.clone()
    }

    /// The cores the engine worker should run on, when tuning chose some (and is not off).
    pub fn engine_cpus(&self) -> Option<Vec<usize>> {
        match self.cfg.mode {
            TuningMode::Apply => self.cpus.clone(),
            _ => None,
        }
    }

    /// Pins every thread of this process to the chosen cores (apply), or says it would.
    pub fn pin_process(&self) {
        let Some(cpus) = &self.cpus else {
            return;
        };
        let list = format_cpu_list(cpus);
        match self.cfg.mode {
            TuningMode::Off => {}
            TuningMode::DryRun => {
                tracing::info!("tuning (dry run): would pin tutord's threads to CPUs {list}");
                lock(&self.report)
                    .would
                    .push(format!("pin threads and the engine to CPUs {list}"));
            }
            TuningMode::Apply => match affinity::pin_process(cpus) {
                Ok(n) => {
                    tracing::info!(cpus = %list, "pinned tutord's {n} threads to CPUs {list}");
                    lock(&self.report).cpus = cpus.clone();
                }
                Err(e) => self.warn(e.to_string()),
            },
        }
    }

    fn warn(&self, msg: String) {
        tracing::warn!("tuning: {msg}");
        lock(&self.report).warnings.push(msg);
    }

    /// The changes a run makes to sysfs (clock governors).
    fn planned_writes(&self, warnings: &mut Vec<String>) -> Vec<Change> {
        if !self.cfg.clocks {
            return Vec::new();
        }
        let known = self.board != Board::Generic && self.cfg.board_defaults;
        let devfreq: &[String] = if known { &self.profile.devfreq } else { &[] };
        let cpus = self.cpus.as_deref().unwrap_or(&[]);
        clocks::plan_writes(&self.paths, cpus, devfreq, warnings)
    }

    /// Helper units to start: Jetson's power mode and jetson_clocks.
    fn planned_helpers(&self) -> Vec<String> {
        if !self.cfg.clocks || self.board != Board::OrinNano || !self.cfg.board_defaults {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.profile.jetson_power_mode >= 0 {
            out.push(clocks::nvpmodel_unit(self.profile.jetson_power_mode));
        }
        out.push(clocks::JETSON_CLOCKS_UNIT.to_string());
        out
    }

    /// Undoes what a previous run left in the journal, then tunes. Reports progress in the
    /// journal and the shared report; never fails the daemon.
    pub async fn start(&mut self, journal: &impl Journal)
    where
        U: Connect,
    {
        let outstanding = match journal.outstanding() {
            Ok(rows) => rows,
            Err(e) => {
                self.warn(format!("{e}; not tuning (cannot record what would change)"));
                return;
            }
        };
        let mut warnings = Vec::new();
        // What root's helper would stop (the same list it reads from the same files).
        let planned = helper::planned(&self.cfg, self.board, &self.paths, &mut warnings);
        let swaps = swap::read(&self.paths);
        let helpers = if self.cfg.mode == TuningMode::Off {
            Vec::new()
        } else {
            self.planned_helpers()
        };
        let needs_units = outstanding.iter().any(|r| r.kind != "write")
            || !planned.is_empty()
            || !helpers.is_empty();
        if needs_units && self.units.is_none() {
            match U::connect().await {
                Ok(u) => self.units = Some(u),
                Err(e) => warnings.push(e.to_string()),
            }
        }
        for w in warnings {
            self.warn(w);
        }
        if !outstanding.is_empty() {
            self.reconcile(journal, outstanding).await;
        }

        let describe = swap::describe(&swaps);
        lock(&self.report).swap = describe.clone();
        if !swaps.is_empty() {
            tracing::warn!(
                swap = %describe,
                "swap is active ({describe}): a model paged out to swap answers far slower; \
                 [tuning] swap = \"off\" turns it off while tutord runs"
            );
        }
        match self.cfg.mode {
            TuningMode::Off => {
                tracing::info!("tuning is off ([tuning] mode): the system is left as it is");
                return;
            }
            TuningMode::DryRun => {
                let mut would: Vec<String> = Vec::new();
                for unit in &planned {
                    match self.unit_state(unit, self.explicit(unit)).await {
                        Some(true) => would.push(format!("stop {unit}")),
                        _ => continue,
                    }
                }
                would.extend(helpers.iter().map(|u| format!("start {u}")));
                let mut ws = Vec::new();
                would.extend(self.planned_writes(&mut ws).iter().map(Change::describe));
                for w in ws {
                    self.warn(w);
                }
                for w in &would {
                    tracing::info!("tuning (dry run): would {w}");
                }
                lock(&self.report).would.extend(would);
                return;
            }
            TuningMode::Apply => {}
        }

        let before = MemInfo::read(&self.paths).map(|m| m.available);
        // Root's helper stops the units (helper.rs says why not tutord); it is started only
        // when one of them runs, so that an idle system shows no helper at work.
        let mut any_running = false;
        for unit in &planned {
            any_running |= self.unit_state(unit, self.explicit(unit)).await == Some(true);
        }
        let stopped = if any_running
            && self
                .make(
                    journal,
                    Change::StartUnit {
                        unit: helper::HELPER_UNIT.to_string(),
                    },
                )
                .await
        {
            helper::read_record(&helper::record_path(&self.paths))
        } else {
            Vec::new()
        };
        lock(&self.report).stopped_units = stopped.clone();
        if !stopped.is_empty() {
            let after = MemInfo::read(&self.paths).map(|m| m.available);
            let freed = match (before, after) {
                (Some(b), Some(a)) => a as i64 - b as i64,
                _ => 0,
            };
            lock(&self.report).mem_freed_bytes = freed;
            tracing::info!(
                message_id = events::TUNING_APPLIED,
                units = %stopped.join(" "),
                mem_available_before = before.unwrap_or(0),
                mem_available_after = after.unwrap_or(0),
                "stopped {} units ({}): MemAvailable {} → {} MiB ({:+} MiB)",
                stopped.len(),
                stopped.join(" "),
                before.unwrap_or(0) >> 20,
                after.unwrap_or(0) >> 20,
                freed / (1 << 20)
            );
        }
        for unit in helpers {
            match self.unit_state(&unit, false).await {
                None => continue,
                Some(true) => continue, // already running: not ours to stop later
                Some(false) => {}
            }
            self.make(journal, Change::StartUnit { unit }).await;
        }
        let mut ws = Vec::new();
        let writes = self.planned_writes(&mut ws);
        for w in ws {
            self.warn(w);
        }
        for change in writes {
            self.make(journal, change).await;
        }
        let r = lock(&self.report);
        tracing::info!(
            message_id = events::TUNING_APPLIED,
            "tuning applied: {} units stopped, {} helpers started, {} governors pinned, CPUs {}",
            r.stopped_units.len(),
            r.started_units.len(),
            r.writes.len(),
            if r.cpus.is_empty() {
                "not pinned".to_string()
            } else {
                format_cpu_list(&r.cpus)
            }
        );
    }

    /// Whether `unit` runs: Some(true/false), or None when systemd does not know it (a
    /// warning for an `explicit` one) or cannot be asked.
    async fn unit_state(&self, unit: &str, explicit: bool) -> Option<bool> {
        let Some(units) = &self.units else {
            self.warn(format!("no connection to systemd: {unit} left as it is"));
            return None;
        };
        match units.state(unit).await {
            Ok((load, _)) if load == "not-found" => {
                // The default list names units an image may not have: only a configured
                // name that systemd does not know is worth a warning.
                if explicit {
                    self.warn(format!(
                        "[tuning] stop_units: unit {unit} does not exist on this system: skipped"
                    ));
                }
                None
            }
            Ok((_, active)) => Some(services::is_running(&active)),
            Err(e) => {
                self.warn(e.to_string());
                None
            }
        }
    }

    /// Whether the config names `unit` in `stop_units`.
    fn explicit(&self, unit: &str) -> bool {
        self.cfg
            .stop_units
            .iter()
            .any(|u| services::normalize(u) == unit)
    }

    /// Records, makes and marks one change; true when it was made.
    async fn make(&mut self, journal: &impl Journal, change: Change) -> bool {
        let id = match journal.record(&change) {
            Ok(id) => id,
            Err(e) => {
                // Never change what could not be recorded: it could not be undone.
                self.warn(format!("{e}: not made: {}", change.describe()));
                return false;
            }
        };
        match self.perform(&change).await {
            Ok(()) => {
                if let Err(e) = journal.set_state(id, "applied", None) {
                    self.warn(e.to_string());
                }
                tracing::info!(
                    tuning_change = change.kind(),
                    target = change.target(),
                    "tuning: {}",
                    change.describe()
                );
                {
                    let mut r = lock(&self.report);
                    match &change {
                        Change::StopUnit { unit } => r.stopped_units.push(unit.clone()),
                        // The tuning helper is reported by what it stopped (start()).
                        Change::StartUnit { unit } if unit == helper::HELPER_UNIT => {}
                        Change::StartUnit { unit } => r.started_units.push(unit.clone()),
                        Change::Write { .. } => r.writes.push(change.clone()),
                    }
                }
                self.applied.push((id, change));
                true
            }
            Err(e) => {
                let note = e.to_string();
                if let Err(e) = journal.set_state(id, "abandoned", Some(&note)) {
                    self.warn(e.to_string());
                }
                self.warn(format!("{note}: not made: {}", change.describe()));
                false
            }
        }
    }

    async fn perform(&self, change: &Change) -> Result<(), TuningError> {
        match change {
            Change::StopUnit { unit } => self.units_or(unit, "stop")?.stop(unit).await,
            Change::StartUnit { unit } => self.units_or(unit, "start")?.start(unit).await,
            Change::Write { path, value, .. } => clocks::write(&self.paths, path, value),
        }
    }

    fn units_or(&self, unit: &str, verb: &'static str) -> Result<&U, TuningError> {
        self.units.as_ref().ok_or_else(|| TuningError::NoSystemd {
            verb,
            unit: unit.to_string(),
        })
    }

    async fn undo_one(&self, change: &Change) -> Result<(), TuningError> {
        match change {
            Change::StopUnit { unit } => self.units_or(unit, "start")?.start(unit).await,
            Change::StartUnit { unit } => self.units_or(unit, "stop")?.stop(unit).await,
            Change::Write {
                path,
                previous,
                value,
            } => {
                let now = crate::platform::profile::read_trimmed(&self.paths, path);
                match now {
                    Some(now) if now != *value && now != *previous => {
                        Err(TuningError::ChangedSince {
                            path: path.clone(),
                            now,
                            set: value.clone(),
                        })
                    }
                    _ => clocks::write(&self.paths, path, previous),
                }
            }
        }
    }

    /// Undoes a previous run's changes, newest first. One that cannot be undone is marked
    /// abandoned (with the reason), so it is not retried at every start.
    async fn reconcile(&mut self, journal: &impl Journal, rows: Vec<TuningRow>) {
        let mut undone = 0u64;
        for row in &rows {
            let Some(change) = Change::from_row(row) else {
                let _ = journal.set_state(row.id, "abandoned", Some("unknown kind"));
                continue;
            };
            match self.undo_one(&change).await {
                Ok(()) => {
                    undone += 1;
                    if let Err(e) = journal.set_state(row.id, "undone", None) {
                        self.warn(e.to_string());
                    }
                }
                Err(e) => {
                    let note = e.to_string();
                    let _ = journal.set_state(row.id, "abandoned", Some(&note));
                    self.warn(format!("undoing a previous run's change: {note}"));
                }
            }
        }
        lock(&self.report).reconciled = undone;
        tracing::warn!(
            message_id = events::TUNING_RECONCILED,
            reconciled = undone,
            outstanding = rows.len(),
            "the previous run left {} tuning changes in place (crash, kill or power cut): \
             undid {undone}",
            rows.len()
        );
    }

    /// Undoes this run's changes, newest first. A change that cannot be undone now stays in
    /// the journal for the next start.
    pub async fn stop(&mut self, journal: &impl Journal) {
        if self.applied.is_empty() {
            return;
        }
        let mut undone = Vec::new();
        let deadline = tokio::time::Instant::now() + STOP_BUDGET;
        let applied = std::mem::take(&mut self.applied);
        for (id, change) in applied.iter().rev() {
            // Stopping the tuning helper starts what it stopped: say which, newest first.
            let restarts: Vec<String> = match change {
                Change::StartUnit { unit } if unit == helper::HELPER_UNIT => {
                    let mut r = helper::read_record(&helper::record_path(&self.paths));
                    r.reverse();
                    r.into_iter().map(|u| format!("start {u}")).collect()
                }
                _ => vec![change.describe_undo()],
            };
            match tokio::time::timeout_at(deadline, self.undo_one(change)).await {
                Ok(Ok(())) => {
                    if let Err(e) = journal.set_state(*id, "undone", None) {
                        self.warn(e.to_string());
                    }
                    undone.extend(restarts);
                }
                Ok(Err(e)) => self.warn(format!(
                    "cannot undo '{}': {e} (the next start tries again)",
                    change.describe()
                )),
                // Left to systemd (a job once queued runs to its end; the tuning helper is
                // stopped with tutord, StopPropagatedFrom=) and to the next start's reconcile.
                Err(_) => self.warn(format!(
                    "'{}' did not finish within tutord's {} s for undoing tuning at stop: \
                     left to systemd and to the next start",
                    change.describe_undo(),
                    STOP_BUDGET.as_secs()
                )),
            }
        }
        {
            let mut r = lock(&self.report);
            r.stopped_units.clear();
            r.started_units.clear();
            r.writes.clear();
        }
        tracing::info!(
            message_id = events::TUNING_UNDONE,
            undone = undone.len(),
            "tuning undone: {}",
            if undone.is_empty() {
                "nothing".to_string()
            } else {
                undone.join(", ")
            }
        );
    }

    /// Samples thermals now, and every `thermal_interval_s` in a task; logs when throttling
    /// starts (THROTTLED) and ends.
    pub fn spawn_thermal(&self) -> Option<tokio::task::JoinHandle<()>> {
        if self.cfg.thermal_interval_s == 0 || self.cfg.mode == TuningMode::Off {
            return None;
        }
        let paths = self.paths.clone();
        let cpus = self
            .cpus
            .clone()
            .unwrap_or_else(|| Topology::read(&paths).ids());
        let devfreq = if self.board != Board::Generic {
            self.profile.devfreq.clone()
        } else {
            Vec::new()
        };
        let report = self.report.clone();
        let every = Duration::from_secs(self.cfg.thermal_interval_s.into());
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut was = false;
            loop {
                tick.tick().await;
                let s = thermal::sample(&paths, &cpus, &devfreq);
                let now = s.throttled();
                if now && !was {
                    tracing::warn!(
                        message_id = events::THROTTLED,
                        reasons = %s.reasons.join("; "),
                        "the board is throttling ({}): answers will be slower than planned; {}",
                        s.reasons.join("; "),
                        s.describe()
                    );
                } else if was && !now {
                    tracing::info!("throttling ended: {}", s.describe());
                }
                was = now;
                lock(&report).thermal = Some(s);
            }
        }))
    }
}

/// How a [`Units`] implementation is connected when tuning needs it.
pub trait Connect: Sized {
    fn connect() -> impl std::future::Future<Output = Result<Self, TuningError>>;
}

impl Connect for Systemd {
    async fn connect() -> Result<Self, TuningError> {
        Systemd::connect().await
    }
}

#[cfg(test)]
mod tests;

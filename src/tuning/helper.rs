//! The root side of tuning's unit changes: `tutord tuning-units stop|start`, the ExecStart
//! and ExecStop of `tutord-tuning.service` (root, `systemd/tutord-tuning.service`).
//!
//! Why a helper unit: tutord runs as its own user, and the units it stops must not be
//! chosen by that user. A polkit rule that lets uid tutord start units by name lets it
//! *create* one too on systemd ≥ 257 (Debian 13): `StartTransientUnit` asks polkit with the
//! same unit name and verb, so any process running as tutord could run a command as root
//! under a listed name the image lacks (`cups.service`). Now the list is read by root from
//! root's files (`/etc/tutord/tutord.toml` and its drop-ins), and the only units tutord may
//! start or stop are the package's own (this helper and the Jetson clock helpers), whose
//! names always exist, so no transient unit can take them (`systemd/tutord.rules`).
//!
//! tutord still decides *when*: it starts this unit once it has measured the bus before
//! tuning, and stops it when it stops (or systemd does, `StopPropagatedFrom=`); it reads the
//! record of what the helper stopped for its journal line and `tutorctl tuning`.

use std::path::{Path, PathBuf};

use super::services::{self, Units};
use super::{TuningError, swap};
use crate::config::{Config, SwapChoice, TuningConfig, TuningMode};
use crate::platform::{Board, Paths};

/// The helper's unit, installed by the package.
pub const HELPER_UNIT: &str = "tutord-tuning.service";

/// Where the helper records what it stopped, in order, one unit per line (its
/// RuntimeDirectory, readable by tutord; gone with the unit and at reboot).
pub const RECORD: &str = "/run/tutord-tuning/stopped";

/// The record file under `paths` (a fake root in tests).
pub fn record_path(paths: &Paths) -> PathBuf {
    paths.join(RECORD)
}

/// The units the configuration asks to stop: the board's defaults (on a known board, unless
/// `board_defaults = false`) and `stop_units`, minus `keep_units` and the protected ones
/// (a warning each), then every active swap unit when `swap = "off"`. Nothing when tuning
/// is not `apply`. The helper stops these; tutord computes the same list to tell whether
/// the helper has work and to report what it would do.
pub fn planned(
    cfg: &TuningConfig,
    board: Board,
    paths: &Paths,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    if cfg.mode == TuningMode::Off {
        return Vec::new();
    }
    let mut out = services::candidates(
        board != Board::Generic && cfg.board_defaults,
        &cfg.stop_units,
        &cfg.keep_units,
        warnings,
    );
    if cfg.swap == SwapChoice::Off {
        out.extend(swap::read(paths).iter().map(|a| swap::unit_name(&a.path)));
    }
    out
}

/// The units a helper run stopped, in the order it stopped them (none when there is no
/// record).
pub fn read_record(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the record at once (a temporary file renamed over it), so that an interrupted
/// helper leaves a list of exactly what it had stopped.
fn write_record(path: &Path, units: &[String]) -> Result<(), TuningError> {
    let tmp = path.with_extension("tmp");
    let mut text = units.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| TuningError::Write {
            path: path.to_path_buf(),
            value: units.join(" "),
            source,
        })
}

/// Stops each planned unit that runs, waiting for each job, and records it. A unit that
/// does not exist or does not run is left alone; one that cannot be stopped is a warning.
/// Returns the units stopped by this run (added to what an earlier run recorded).
pub async fn stop_planned(
    units: &impl Units,
    planned: &[String],
    record: &Path,
) -> Result<Vec<String>, TuningError> {
    let mut stopped = read_record(record);
    let mut now = Vec::new();
    for unit in planned {
        if stopped.contains(unit) {
            continue;
        }
        match units.state(unit).await {
            Ok((load, _)) if load == "not-found" => continue,
            Ok((_, active)) if !services::is_running(&active) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("{e}: left as it is");
                continue;
            }
        }
        match units.stop(unit).await {
            Ok(()) => {
                stopped.push(unit.clone());
                now.push(unit.clone());
                write_record(record, &stopped)?;
                tracing::info!(unit = %unit, "tuning: stopped {unit}");
            }
            Err(e) => tracing::warn!("{e}: left running"),
        }
    }
    Ok(now)
}

/// Starts again what the record lists, newest first, without waiting for the jobs: the
/// restore must not hold tutord's stop (TimeoutStopSec=) for as long as the slowest unit
/// takes to start. Removes the record. Returns the units whose start was queued.
pub async fn start_recorded(units: &impl Units, record: &Path) -> Vec<String> {
    let stopped = read_record(record);
    let mut started = Vec::new();
    for unit in stopped.iter().rev() {
        match units.enqueue_start(unit).await {
            Ok(()) => started.push(unit.clone()),
            // During a shutdown systemd refuses new start jobs: nothing to restore then.
            Err(e) => tracing::warn!("{e}: not started again"),
        }
    }
    if let Err(e) = std::fs::remove_file(record)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", record.display());
    }
    started
}

/// What `tutord tuning-units` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Verb {
    /// Stop the planned units (ExecStart).
    Stop,
    /// Start again what was stopped (ExecStop).
    Start,
}

/// `tutord tuning-units VERB`: runs as root from `tutord-tuning.service`. The config it reads
/// is root's (the unit passes no `--config`); the board is detected as tutord detects it.
pub async fn run(verb: Verb, config: &Config) -> Result<(), TuningError> {
    let paths = Paths::new(&config.platform.root);
    let record = record_path(&paths);
    let units = services::Systemd::connect().await?;
    match verb {
        Verb::Stop => {
            let profiles = crate::platform::profile::Profiles::load(&config.platform.boards)
                .unwrap_or_else(|e| {
                    tracing::warn!("{e}: using the built-in board profiles");
                    crate::platform::profile::Profiles::builtin()
                });
            let board = profiles.detect(&paths).board();
            let mut warnings = Vec::new();
            let plan = planned(&config.tuning, board, &paths, &mut warnings);
            for w in warnings {
                tracing::warn!("{w}");
            }
            let stopped = stop_planned(&units, &plan, &record).await?;
            tracing::info!(
                "stopped {} of {} listed units: {}",
                stopped.len(),
                plan.len(),
                if stopped.is_empty() {
                    "none".to_string()
                } else {
                    stopped.join(" ")
                }
            );
        }
        Verb::Start => {
            let started = start_recorded(&units, &record).await;
            tracing::info!(
                "started again: {}",
                if started.is_empty() {
                    "none".to_string()
                } else {
                    started.join(" ")
                }
            );
        }
    }
    Ok(())
}

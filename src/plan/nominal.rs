//! The plan for a board from its published figures, before it has measured anything: which
//! models an image for the board ships (`tutorctl plan --board NAME`; image/flavours/*.conf
//! list its answer, and tests/flavours.rs holds them to it). On the board the daemon plans
//! again from what it measures and chooses among the files it finds; this decides only which
//! files are on the card.
//!
//! The board's nominal bandwidth (boards.toml `nominal_ddr_clock_mhz` × 2 × bus width) is
//! taken down to what the benchmark would read ([`READ_OF_THEORETICAL`]), then each catalog
//! model is predicted as on a first boot (the default efficiencies and per-row cost) and
//! judged by the speed target and by memory (`nominal_mem_available_mib`). Time to first
//! token and first audio depend on the board's compute, which only the board can measure:
//! they do not rule a model out here (the compute roof is left open).

use super::planner::Planner;
use super::{
    Efficiencies, Machine, Prediction, SAME_SIZE, VoiceCosts, largest_for_a_tutor, predict,
};
use crate::config::Config;
use crate::models::Catalog;
use crate::platform::profile::{BoardProfile, Profiles};
use std::path::Path;

/// What a STREAM-style read gets of the theoretical bandwidth on these boards: published
/// Rock 5B figures read ~25 of its 33.8 GB/s (0.74; issue 19). The first boot's memory
/// efficiency (0.88) then applies to this figure, as it does to the measured one.
pub const READ_OF_THEORETICAL: f64 = 0.75;

/// Why a board cannot be planned from its profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NominalError {
    #[error("board '{0}' is not in the board profiles (boards.toml)")]
    UnknownBoard(String),
    #[error(
        "board '{0}' states no nominal_ddr_clock_mhz in boards.toml: there is no bandwidth to plan an image from"
    )]
    NoClock(String),
    #[error(
        "board '{0}' states no nominal_mem_available_mib in boards.toml (or give --mem-available-mib)"
    )]
    NoMemory(String),
}

/// The plan of one board at its nominal figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardPlan {
    pub board: String,
    /// Bytes/s: theoretical at the nominal clock, and what the benchmark would read of it.
    pub theoretical: f64,
    pub read: f64,
    /// Bytes.
    pub mem_available: u64,
    pub target_tokens_per_second: f64,
    /// Every (model, backend) the board can run, as if fetched.
    pub predictions: Vec<Prediction>,
    /// The largest model that meets the speed target and fits (a general model before a
    /// code model of its size).
    pub largest: Option<usize>,
    /// One size smaller (parameters below [`SAME_SIZE`] of the largest's), general, fits:
    /// what the board falls back to when the largest misses on the board itself.
    pub smaller: Option<usize>,
}

impl BoardPlan {
    /// The language models an image for the board ships: the largest, then the smaller.
    pub fn image_models(&self) -> Vec<&str> {
        [self.largest, self.smaller]
            .into_iter()
            .flatten()
            .map(|i| self.predictions[i].model.as_str())
            .collect()
    }
}

/// Plans `profile`'s board from its nominal figures with `config`'s targets; `mem_available`
/// (bytes) replaces the profile's `nominal_mem_available_mib` when given.
pub fn board_plan(
    config: &Config,
    profile: &BoardProfile,
    catalog: &Catalog,
    mem_available: Option<u64>,
) -> Result<BoardPlan, NominalError> {
    let theoretical = profile
        .nominal_bandwidth()
        .ok_or_else(|| NominalError::NoClock(profile.name.clone()))?;
    let mem_available = match mem_available {
        Some(m) => m,
        None if profile.nominal_mem_available_mib > 0 => {
            u64::from(profile.nominal_mem_available_mib) << 20
        }
        None => return Err(NominalError::NoMemory(profile.name.clone())),
    };
    let planner = Planner::new(config, profile.clone(), Vec::new());
    let read = theoretical * READ_OF_THEORETICAL;
    let machine = Machine {
        bandwidth: read,
        // Unknown until the board measures it: the compute roof does not bind here.
        cpu_ops: f64::INFINITY,
        cpu_fp32: f64::INFINITY,
        cpu_scalar: f64::INFINITY,
        npu_ops: profile.npu_tops_int8 * 1e12,
        gpu_ops: profile.gpu_tflops_fp16 * 1e12,
        mem_available,
        npu_domain_bytes: profile.npu_memory_domain_bytes,
    };
    let voice = VoiceCosts {
        stt_seconds: 0.0,
        tts_seconds: 0.0,
        samples: 0,
    };
    let predictions: Vec<Prediction> = planner
        .catalog_facts(catalog)
        .iter()
        .map(|f| {
            let mut p = predict(
                f,
                &machine,
                &Efficiencies::default(),
                &voice,
                &planner.targets,
            );
            p.present = true; // as if shipped
            p
        })
        .collect();
    let (largest, smaller) = pick(&predictions);
    Ok(BoardPlan {
        board: profile.name.clone(),
        theoretical,
        read,
        mem_available,
        target_tokens_per_second: planner.targets.tokens_per_second,
        predictions,
        largest,
        smaller,
    })
}

/// `tutorctl plan --board NAME`: the configuration's targets, catalog and board profiles,
/// each replaceable by a flag. Returns the text to print, or the error to report.
pub fn run(
    config: &Config,
    board: &str,
    catalog: Option<&Path>,
    boards: Option<&Path>,
    mem_available_mib: Option<u32>,
) -> Result<String, String> {
    let profiles =
        Profiles::load(boards.unwrap_or(&config.platform.boards)).map_err(|e| e.to_string())?;
    let profile = profiles
        .get(board)
        .ok_or_else(|| NominalError::UnknownBoard(board.to_string()).to_string())?;
    let catalog =
        Catalog::load(catalog.unwrap_or(&config.models.catalog)).map_err(|e| e.to_string())?;
    let plan = board_plan(
        config,
        profile,
        &catalog,
        mem_available_mib.map(|m| u64::from(m) << 20),
    )
    .map_err(|e| e.to_string())?;
    Ok(text(&plan))
}

/// The largest model meeting the speed target that fits, and one size smaller.
fn pick(preds: &[Prediction]) -> (Option<usize>, Option<usize>) {
    let meeting: Vec<(usize, &Prediction)> = preds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.fits() && p.meets_speed)
        .collect();
    let Some((largest, top)) = largest_for_a_tutor(&meeting) else {
        return (None, None);
    };
    let smaller = preds
        .iter()
        .enumerate()
        .filter(|(_, p)| p.fits() && !p.code && p.ops_per_token < top.ops_per_token * SAME_SIZE)
        .max_by(|(_, a), (_, b)| {
            a.ops_per_token
                .total_cmp(&b.ops_per_token)
                .then(a.tokens_per_second.total_cmp(&b.tokens_per_second))
        })
        .map(|(i, _)| i);
    (Some(largest), smaller)
}

/// `tutorctl plan --board NAME`: the table and the image's models.
pub fn text(plan: &BoardPlan) -> String {
    use std::fmt::Write;
    let gb = |b: f64| b / 1e9;
    let mut out = format!(
        "Board {} at its nominal figures (no daemon, nothing measured): {:.1} GB/s theoretical, \
         {:.1} GB/s read ({READ_OF_THEORETICAL} of it), {} MiB available, target {:.1} tok/s\n\n",
        plan.board,
        gb(plan.theoretical),
        gb(plan.read),
        plan.mem_available >> 20,
        plan.target_tokens_per_second
    );
    let _ = writeln!(
        out,
        "{:<34} {:<8} {:>7} {:>11} {:<5} MEETS",
        "MODEL", "BACKEND", "TOK/S", "MEMORY MiB", "FITS"
    );
    for (i, p) in plan.predictions.iter().enumerate() {
        let mark = if Some(i) == plan.largest {
            " <- image: largest meeting the target"
        } else if Some(i) == plan.smaller {
            " <- image: one size smaller"
        } else {
            ""
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        let line = format!(
            "{:<34} {:<8} {:>7.1} {:>11} {:<5} {:<5}{mark}",
            p.model,
            p.backend,
            p.tokens_per_second,
            p.memory_needed >> 20,
            yes(p.fits()),
            yes(p.meets_speed)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');
    match plan.largest {
        Some(_) => {
            let _ = writeln!(out, "Image models: {}", plan.image_models().join(" "));
        }
        None => {
            let _ = writeln!(
                out,
                "Image models: none: no catalog model meets {:.1} tok/s and fits on {}",
                plan.target_tokens_per_second, plan.board
            );
        }
    }
    out
}

#[cfg(test)]
#[path = "nominal_tests.rs"]
mod tests;

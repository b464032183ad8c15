//! Calibration: the efficiencies and per-token overhead that make the roofline match what
//! this board really does: the first boot's figures (`Default`), then fitted to the smoothed
//! decode times of real answers.
//!
//! Each (board, backend, model) keeps one smoothed sample (store table `calibration`). The fit
//! looks for the memory efficiency `em`, compute efficiency `ec` and per-row overhead `or`
//! that minimise the squared relative error of max(B/(bw·em), W/(C·ec)) + or·R over the
//! samples (R: the model's matrix rows and its attention, in rows' worth, at the depth the
//! sample's answers decoded at, [`super::ModelFacts::work_rows`]), plus a light pull toward
//! the first boot's figures so one sample cannot swing the parameters it says nothing about.
//! `em` may exceed 1 on machines whose caches hold part of a small model (a VM with a
//! 300 MiB L3): it is an effective figure, not a physical one.

use serde::{Deserialize, Serialize};

/// The planner's efficiencies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Efficiencies {
    /// Fraction of the measured read bandwidth decoding gets.
    pub memory: f64,
    /// Fraction of the compute peak decoding (matrix × vector) gets.
    pub compute: f64,
    /// Fraction of the compute peak prompt processing (matrix × matrix) gets.
    pub prefill: f64,
    /// Time per decoded token per matrix row: each row's dot product has a fixed cost
    /// beside its bytes (the block loop's start, the horizontal sum, the row's scale).
    pub overhead_per_row: f64,
    /// How many samples the figures come from (0 = the first boot's, `Default`).
    pub samples: u32,
}

/// The first boot's figures, before any answer: fitted with `scripts/row-cost.sh` to
/// llama-bench's decode speed of random-weight models of one quantisation type each (Q4_0 to
/// Q6_K, in SmolLM2-135M's, Qwen2.5-0.5B's and 1.5B's shapes) and of the three registry models
/// on the x86-64 development VM, with the read bandwidth at 0.88, a row's fixed cost and each
/// type's cost per block ([`super::rows`]): 14 of the 16 random models within 5.5 %, all
/// within 7 %, the registry models within 11 % (docs/benchmarks.md, "Session 18").
impl Default for Efficiencies {
    fn default() -> Self {
        Self {
            // Decoding reads the weights at ~0.88 of the measured read bandwidth (the
            // benchmark measures what the cores can read, not the DDR's theoretical peak;
            // on the RK3588 the published 0.75-0.88 of theoretical is about that too).
            memory: 0.88,
            // Matrix × vector against the INT8 dot probe; with these models the bandwidth
            // roof and the per-row cost explained decode speed, and the roof stays out of the
            // way at 0.3.
            compute: 0.3,
            prefill: 0.3,
            // A row's fixed cost: 2 threads, AVX2. A board's cores will differ: its first
            // answers calibrate it.
            overhead_per_row: super::rows::FIXED_NS * 1e-9,
            samples: 0,
        }
    }
}

/// The scalar chain rate (2 cores, op/s) of the VM the row costs were fitted on (AMD EPYC,
/// FP32 probe 79 GFLOP/s, read 21 GB/s): session 16 measured 5.9 Gop/s on it, and the
/// first boot's predictions right after the fit were within 3.5 and 11.3 % (plan-bench, two
/// runs); `scripts/row-cost.sh` now prints the chain beside the read bandwidth it fits with.
pub const FITTED_ON_SCALAR: f64 = 5.9e9;

impl Efficiencies {
    /// The first boot's figures for the CPU backend on cores whose scalar chain runs at
    /// `cpu_scalar` op/s (`kernels::scalar_chain`, the chosen cores together): a row's fixed
    /// cost is a chain of dependent instructions (the loop's start, the horizontal sum, the
    /// scale), so the fitted cost scales with the cores' clock, and with the share of it a
    /// shared host's neighbours leave. Not with the FP32 probe, which counts FMA ports and
    /// vector width: a CI host whose FP32 probe read 95 GFLOP/s (203 on another) decoded
    /// SmolLM2 at the same cost a row beyond its bytes; scaled by FP32 it predicted 57 tok/s
    /// for 88. No probe (0, or infinite: a board planned from its nominal figures, or a
    /// benchmark cached before the chain was measured) keeps the fit.
    pub fn first_boot_cpu(cpu_scalar: f64) -> Self {
        let fitted = Self::default();
        if !(cpu_scalar.is_finite() && cpu_scalar > 0.0) {
            return fitted;
        }
        Self {
            overhead_per_row: fitted.overhead_per_row * FITTED_ON_SCALAR / cpu_scalar,
            ..fitted
        }
    }
}

/// One model's smoothed measurement, as the store keeps it.
pub use crate::store::CalibrationSample as Sample;

/// Folds one answer's figures (`new.count` ignored) into the model's smoothed sample.
pub fn merge(old: Option<Sample>, new: &Sample) -> Sample {
    match old {
        None => Sample {
            count: 1,
            ..new.clone()
        },
        Some(old) => Sample {
            seconds_per_token: smooth(old.seconds_per_token, new.seconds_per_token, old.count),
            prefill_seconds_per_token: smooth_known(
                old.prefill_seconds_per_token,
                new.prefill_seconds_per_token,
                old.count,
            ),
            depth: smooth_known(old.depth, new.depth, old.count),
            count: old.count.saturating_add(1),
            ..new.clone()
        },
    }
}

/// `smooth` for a figure an answer may lack (samples stored before it was kept): the one
/// that is there when only one is.
fn smooth_known(old: Option<f64>, new: Option<f64>, count_before: u32) -> Option<f64> {
    match (old, new) {
        (Some(o), Some(n)) => Some(smooth(o, n, count_before)),
        (o, n) => n.or(o),
    }
}

/// Smoothing of a sample's running figure: a plain mean for the first answers, then an
/// exponential average that follows drift (thermals, clocks) over ~3 answers.
pub fn smooth(old: f64, new: f64, count_before: u32) -> f64 {
    let alpha = (1.0 / f64::from(count_before + 1)).max(0.3);
    old + alpha * (new - old)
}

/// Fits the efficiencies to `samples`, each with its model's matrix rows, starting from (and
/// pulled toward) `prior`.
pub fn fit(samples: &[(Sample, f64)], prior: &Efficiencies) -> Efficiencies {
    let usable: Vec<&(Sample, f64)> = samples
        .iter()
        .filter(|(s, _)| s.seconds_per_token > 0.0 && s.bandwidth > 0.0 && s.compute > 0.0)
        .collect();
    if usable.is_empty() {
        return *prior;
    }
    // Penalty weight: small against a relative error of a few percent per sample.
    const PULL: f64 = 1e-3;
    let ol_scale = prior.overhead_per_row.max(1e-6);
    let mut best = (f64::MAX, *prior);
    for i in 0..=195 {
        let em = 0.05 + f64::from(i) * 0.01;
        for j in 0..=60 {
            // 0.001 .. 1.0, log-spaced.
            let ec = 10f64.powf(-3.0 + f64::from(j) * 0.05);
            // For fixed em, ec the best per-row overhead has a closed form (least squares).
            let roofs: Vec<(f64, f64, f64)> = usable
                .iter()
                .map(|(s, layers)| {
                    let roof = (s.bytes_per_token / (s.bandwidth * em))
                        .max(s.ops_per_token / (s.compute * ec));
                    (roof, *layers, s.seconds_per_token)
                })
                .collect();
            let pull = PULL / (ol_scale * ol_scale);
            let (mut num, mut den) = (pull * prior.overhead_per_row, pull);
            for (roof, l, m) in &roofs {
                num += (m - roof) * l / (m * m);
                den += l * l / (m * m);
            }
            // At most 1 µs a row: far above any CPU's.
            let ol = (num / den).clamp(0.0, 1e-6);
            let err: f64 = roofs
                .iter()
                .map(|(roof, l, m)| ((roof + ol * l - m) / m).powi(2))
                .sum::<f64>()
                + PULL * ((em - prior.memory) / prior.memory).powi(2)
                + PULL * (ec / prior.compute).ln().powi(2) * 0.1
                + PULL * ((ol - prior.overhead_per_row) / ol_scale).powi(2);
            if err < best.0 {
                best = (
                    err,
                    Efficiencies {
                        memory: em,
                        compute: ec,
                        overhead_per_row: ol,
                        ..*prior
                    },
                );
            }
        }
    }
    let mut out = best.1;
    // Prompt processing: each sample's own efficiency, the median of them.
    let mut prefill: Vec<f64> = usable
        .iter()
        .filter_map(|(s, _)| {
            s.prefill_seconds_per_token
                .filter(|p| *p > 0.0)
                .map(|p| s.ops_per_token / (s.compute * p))
        })
        .collect();
    prefill.sort_by(f64::total_cmp);
    if let Some(m) = prefill.get(prefill.len() / 2) {
        out.prefill = m.clamp(1e-4, 1.0);
    }
    out.samples = usable.iter().map(|(s, _)| s.count).sum();
    out
}

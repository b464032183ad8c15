//! Calibration: the efficiencies and per-token overhead that make the roofline match what
//! this board really does, fitted to the smoothed decode times of real answers.
//!
//! Each (board, backend, model) keeps one smoothed sample (store table `calibration`). The fit
//! looks for the memory efficiency `em`, compute efficiency `ec` and overhead `o` that
//! minimise the squared relative error of max(B/(bw·em), W/(C·ec)) + o over the samples,
//! plus a light pull toward the defaults so one sample cannot swing the parameters it says
//! nothing about. `em` may exceed 1 on machines whose caches hold part of a small model (a
//! VM with a 300 MiB L3): it is an effective figure, not a physical one.

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
    /// Fixed time per decoded token: sampling, scheduling, detokenizing.
    pub overhead_seconds: f64,
    /// How many samples the figures come from (0 = defaults).
    pub samples: u32,
}

impl Default for Efficiencies {
    /// Memory 0.75: the middle of the product's 0.70-0.80 (published: 0.75-0.88 RKLLM on
    /// RK3588, 0.73-0.80 MLC on Orin Nano). Compute and prefill are guesses the first real
    /// answers replace.
    fn default() -> Self {
        Self {
            memory: 0.75,
            compute: 0.3,
            prefill: 0.3,
            overhead_seconds: 0.0,
            samples: 0,
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
            prefill_seconds_per_token: match (
                old.prefill_seconds_per_token,
                new.prefill_seconds_per_token,
            ) {
                (Some(o), Some(n)) => Some(smooth(o, n, old.count)),
                (o, n) => n.or(o),
            },
            count: old.count.saturating_add(1),
            ..new.clone()
        },
    }
}

/// Smoothing of a sample's running figure: a plain mean for the first answers, then an
/// exponential average that follows drift (thermals, clocks) over ~3 answers.
pub fn smooth(old: f64, new: f64, count_before: u32) -> f64 {
    let alpha = (1.0 / f64::from(count_before + 1)).max(0.3);
    old + alpha * (new - old)
}

/// Fits the efficiencies to `samples`, starting from (and pulled toward) `prior`.
pub fn fit(samples: &[Sample], prior: &Efficiencies) -> Efficiencies {
    let usable: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.seconds_per_token > 0.0 && s.bandwidth > 0.0 && s.compute > 0.0)
        .collect();
    if usable.is_empty() {
        return *prior;
    }
    // Penalty weights: small against a relative error of a few percent per sample.
    const PULL: f64 = 1e-3;
    const OVERHEAD_SCALE: f64 = 0.005;
    let mut best = (f64::MAX, *prior);
    for i in 0..=195 {
        let em = 0.05 + f64::from(i) * 0.01;
        for j in 0..=60 {
            // 0.001 .. 1.0, log-spaced.
            let ec = 10f64.powf(-3.0 + f64::from(j) * 0.05);
            // For fixed em, ec the best overhead has a closed form (least squares in o).
            let (mut num, mut den) = (0.0, 0.0);
            let roofs: Vec<(f64, f64)> = usable
                .iter()
                .map(|s| {
                    let roof = (s.bytes_per_token / (s.bandwidth * em))
                        .max(s.ops_per_token / (s.compute * ec));
                    (roof, s.seconds_per_token)
                })
                .collect();
            for (roof, m) in &roofs {
                num += (roof - m) / (m * m);
                den += 1.0 / (m * m);
            }
            let o = (-num / (den + PULL / (OVERHEAD_SCALE * OVERHEAD_SCALE))).clamp(0.0, 0.05);
            let err: f64 = roofs
                .iter()
                .map(|(roof, m)| ((roof + o - m) / m).powi(2))
                .sum::<f64>()
                + PULL * ((em - prior.memory) / prior.memory).powi(2)
                + PULL * (ec / prior.compute).ln().powi(2) * 0.1
                + PULL * (o / OVERHEAD_SCALE).powi(2);
            if err < best.0 {
                best = (
                    err,
                    Efficiencies {
                        memory: em,
                        compute: ec,
                        overhead_seconds: o,
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
        .filter_map(|s| {
            s.prefill_seconds_per_token
                .filter(|p| *p > 0.0)
                .map(|p| s.ops_per_token / (s.compute * p))
        })
        .collect();
    prefill.sort_by(f64::total_cmp);
    if let Some(m) = prefill.get(prefill.len() / 2) {
        out.prefill = m.clamp(1e-4, 1.0);
    }
    out.samples = usable.iter().map(|s| s.count).sum();
    out
}

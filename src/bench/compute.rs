//! Arithmetic peaks per cluster: FP32 FMA, INT8 dot and a scalar dependency chain on one core
//! of each cluster (cores of a cluster are alike), scaled by the cluster's core count. Used for
//! the compute roof of the plan, for prompt-processing time, for the first boot's cost of a
//! matrix row (the chain), and to rank cores when sysfs does not say which are big.

use std::time::{Duration, Instant};

use super::kernels::{self, Isa};
use super::pin_current_thread;

/// One cluster's peaks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterPeak {
    pub cpus: Vec<usize>,
    /// FP32 FLOP/s of one core.
    pub fp32_per_core: f64,
    /// INT8 op/s of one core (2 per multiply-add); None without a dot-product instruction.
    pub int8_per_core: Option<f64>,
    /// The median run's FP32 and INT8 rates: what the core gives over time on a shared host,
    /// where the fields above are its best run. None in results cached before they were
    /// measured (and INT8 without a dot-product instruction).
    #[serde(default)]
    pub fp32_median_per_core: Option<f64>,
    #[serde(default)]
    pub int8_median_per_core: Option<f64>,
    /// The scalar chain's op/s of one core (`kernels::scalar_chain`), best and median run:
    /// the core's clock, whatever its vector units. None in results cached before it was
    /// measured.
    #[serde(default)]
    pub scalar_per_core: Option<f64>,
    #[serde(default)]
    pub scalar_median_per_core: Option<f64>,
}

impl ClusterPeak {
    /// The peak the quantized matrix products of a 4-bit model can use: INT8 when the CPU
    /// has it (llama.cpp multiplies Q4 weights by Q8 activations), else FP32.
    pub fn quantized_ops(&self) -> f64 {
        self.int8_per_core.unwrap_or(self.fp32_per_core) * self.cpus.len() as f64
    }

    /// `quantized_ops` from the median runs, falling back to the best where not measured.
    pub fn typical_quantized_ops(&self) -> f64 {
        let per_core = match self.int8_per_core {
            Some(best) => self.int8_median_per_core.unwrap_or(best),
            None => self.typical_fp32_per_core(),
        };
        per_core * self.cpus.len() as f64
    }

    /// The median run's FP32 rate of one core, else the best.
    pub fn typical_fp32_per_core(&self) -> f64 {
        self.fp32_median_per_core.unwrap_or(self.fp32_per_core)
    }

    /// The median run's scalar chain rate of one core, else the best; 0 when not measured.
    pub fn typical_scalar_per_core(&self) -> f64 {
        self.scalar_median_per_core
            .or(self.scalar_per_core)
            .unwrap_or(0.0)
    }
}

/// Measures each cluster, spending about `budget` in all. Runs on a thread of its own so
/// the caller's affinity is left alone.
pub fn measure(clusters: &[Vec<usize>], budget: Duration) -> Vec<ClusterPeak> {
    let clusters = clusters.to_vec();
    std::thread::spawn(move || {
        let isa = Isa::detect();
        let per = budget.div_f64((clusters.len().max(1) * 3) as f64);
        clusters
            .into_iter()
            .map(|cpus| {
                if let Some(first) = cpus.first() {
                    let _ = pin_current_thread(&[*first]);
                }
                let fp32 = rate(per, |n| kernels::fp32_fma(isa, n));
                let int8 = kernels::int8_dot(isa, 1)
                    .map(|_| rate(per, |n| kernels::int8_dot(isa, n).unwrap_or(0.0)));
                let scalar = rate(per, kernels::scalar_chain);
                ClusterPeak {
                    cpus,
                    fp32_per_core: fp32.best,
                    int8_per_core: int8.map(|r| r.best),
                    fp32_median_per_core: fp32.median,
                    int8_median_per_core: int8.and_then(|r| r.median),
                    scalar_per_core: Some(scalar.best),
                    scalar_median_per_core: scalar.median,
                }
            })
            .collect()
    })
    .join()
    .unwrap_or_default()
}

/// Ranks single cores by FP32 rate, `each` per core; for machines whose sysfs does not tell
/// big from little.
pub fn per_core(cpus: &[usize], each: Duration) -> Vec<(usize, f64)> {
    let cpus = cpus.to_vec();
    std::thread::spawn(move || {
        let isa = Isa::detect();
        cpus.into_iter()
            .map(|c| {
                let _ = pin_current_thread(&[c]);
                (c, rate(each, |n| kernels::fp32_fma(isa, n)).best)
            })
            .collect()
    })
    .join()
    .unwrap_or_default()
}

/// The cores within 10 % of the fastest by measured FP32 rate: big cores on a big.LITTLE
/// board whose sysfs publishes neither `cpu_capacity` nor `cpuinfo_max_freq`.
pub fn fastest(cpus: &[usize], each: Duration) -> Vec<usize> {
    let ranked = per_core(cpus, each);
    let best = ranked.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    ranked
        .into_iter()
        .filter(|(_, r)| *r >= 0.9 * best)
        .map(|(c, _)| c)
        .collect()
}

/// One kernel's operations per second over short runs: the best run and, from three runs
/// on, the median one.
#[derive(Clone, Copy)]
struct Rate {
    best: f64,
    median: Option<f64>,
}

/// Operations per second of `kernel(iterations) -> operations`, over short runs within
/// `budget`.
fn rate(budget: Duration, kernel: impl Fn(u64) -> f64) -> Rate {
    // Size one run to about a tenth of the budget from a short probe.
    let probe = 10_000;
    let t = Instant::now();
    kernel(probe);
    let probe_s = t.elapsed().as_secs_f64().max(1e-6);
    let iters = ((budget.as_secs_f64() / 10.0 / probe_s) * probe as f64).max(1000.0) as u64;
    let begun = Instant::now();
    let mut rates = Vec::new();
    while begun.elapsed() < budget || rates.is_empty() {
        let t = Instant::now();
        let ops = kernel(iters);
        rates.push(ops / t.elapsed().as_secs_f64().max(1e-9));
    }
    Rate {
        best: rates.iter().copied().fold(0.0, f64::max),
        median: (rates.len() >= 3).then(|| super::median(&rates)).flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_are_plausible() {
        let peaks = measure(&[vec![0]], Duration::from_millis(40));
        assert_eq!(peaks.len(), 1);
        // 1 GFLOP/s .. 1 TFLOP/s per core: a figure, not a unit slip.
        assert!((1e9..1e12).contains(&peaks[0].fp32_per_core), "{peaks:?}");
        if let Some(i8) = peaks[0].int8_per_core {
            assert!((1e9..1e13).contains(&i8), "{peaks:?}");
        }
        let ranked = per_core(&[0], Duration::from_millis(10));
        assert_eq!(ranked.len(), 1);
    }
}

//! The boot self-benchmark: memory bandwidth on the chosen cores, the theoretical figure
//! from the DDR clock, and per-cluster compute peaks, cached in the store.
//!
//! Decoding reads every weight once per token, so the read bandwidth measured here is the
//! number the planner divides model bytes by. The appliance measures instead of trusting a
//! spec sheet: DDR clock governors, 32- vs 64-bit boards and thermal state all move it.

pub mod compute;
pub mod memory;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::platform::Paths;
use crate::platform::memory::{DdrClock, MemInfo};
use crate::platform::profile::{BoardProfile, read_trimmed};
use crate::platform::topology::{self, format_cpu_list};
use crate::store::{Store, StoreError};

pub use compute::ClusterPeak;
pub use memory::Bandwidth;
pub use tutord_kernels as kernels;

/// Working sets are at least this big in all, whatever the caches.
pub const MIN_WORKING_SET: u64 = 256 << 20;
/// ... and at most this big by default (`[bench] max_working_set_mib`), so a machine with a
/// big cache does not spend its boot faulting pages in.
pub const MAX_WORKING_SET: u64 = 4 << 30;

/// The share of the memory budget the working set's setup may take.
const SETUP_SHARE: f64 = 0.3;

/// Everything one benchmark run found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub board: String,
    pub kernel_release: String,
    pub cpus: Vec<usize>,
    pub bandwidth: Bandwidth,
    /// From the DDR clock × 2 × bus width ÷ 8; None when the clock is unknown.
    pub theoretical: Option<f64>,
    pub ddr_clock_hz: u64,
    pub ddr_governor: Option<String>,
    /// The DDR clock can move (not pinned): figures may swing run to run.
    pub ddr_floating: bool,
    pub last_level_cache_bytes: Option<u64>,
    /// How the working set size was chosen.
    pub working_set_rule: String,
    pub compute: Vec<ClusterPeak>,
    pub wall_seconds: f64,
    pub measured_unix: i64,
}

impl Measurement {
    /// Measured read ÷ theoretical.
    pub fn read_fraction(&self) -> Option<f64> {
        self.theoretical.map(|t| self.bandwidth.read / t)
    }

    /// The quantized-matmul peak of the chosen cores: the clusters' peaks for the cores in
    /// `cpus`.
    pub fn compute_ops(&self) -> f64 {
        self.compute
            .iter()
            .map(|c| {
                let n = c.cpus.iter().filter(|id| self.cpus.contains(id)).count();
                c.quantized_ops() / c.cpus.len().max(1) as f64 * n as f64
            })
            .sum()
    }

    /// What the planner divides by: the median repetitions' figures (read bandwidth, FP32
    /// and quantized rates of the chosen cores), each falling back to the best where a
    /// cached result predates them. The best repetition is the machine at its quietest; a
    /// model decodes for minutes, through its neighbours' turns too (on a shared 2-core VM
    /// answers ran 30 % below what the best figures predicted, for minutes at a time).
    pub fn typical(&self) -> Typical {
        let chosen = |c: &ClusterPeak| c.cpus.iter().filter(|id| self.cpus.contains(id)).count();
        Typical {
            read: self.bandwidth.read_median.unwrap_or(self.bandwidth.read),
            fp32: self
                .compute
                .iter()
                .map(|c| c.typical_fp32_per_core() * chosen(c) as f64)
                .sum(),
            ops: self
                .compute
                .iter()
                .map(|c| c.typical_quantized_ops() / c.cpus.len().max(1) as f64 * chosen(c) as f64)
                .sum(),
            scalar: self
                .compute
                .iter()
                .map(|c| c.typical_scalar_per_core() * chosen(c) as f64)
                .sum(),
        }
    }

    /// FP32 peak of the chosen cores.
    pub fn compute_fp32(&self) -> f64 {
        self.compute
            .iter()
            .map(|c| {
                c.fp32_per_core * c.cpus.iter().filter(|id| self.cpus.contains(id)).count() as f64
            })
            .sum()
    }
}

/// A measurement's typical figures (`Measurement::typical`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Typical {
    /// Read bandwidth, bytes/s.
    pub read: f64,
    /// FP32 FLOP/s of the chosen cores.
    pub fp32: f64,
    /// Quantized-matmul op/s of the chosen cores.
    pub ops: f64,
    /// Scalar chain op/s of the chosen cores (their clocks, summed); 0 when not measured.
    pub scalar: f64,
}

/// The median of `values` (the mean of the middle two for an even count); None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// What the benchmark runs on and with.
#[derive(Debug, Clone)]
pub struct Setup {
    pub board: String,
    pub kernel_release: String,
    /// The cores inference will use: one thread each.
    pub cpus: Vec<usize>,
    pub clusters: Vec<Vec<usize>>,
    pub ddr: DdrClock,
    pub llc_bytes: Option<u64>,
    pub mem: Option<MemInfo>,
    /// The largest working set allowed (`[bench] max_working_set_mib`).
    pub max_working_set: u64,
    /// Whether tuning changed the system (stopped units, pinned clocks): results before and
    /// after are kept apart.
    pub tuned: bool,
}

impl Setup {
    /// Reads the machine under `paths` for the cores `cpus`.
    pub fn read(paths: &Paths, profile: &BoardProfile, cpus: &[usize]) -> Self {
        let topo = topology::Topology::read(paths);
        let clusters = topo
            .clusters()
            .into_iter()
            .filter(|c| c.iter().any(|id| cpus.contains(id)))
            .collect();
        Self {
            board: profile.name.clone(),
            kernel_release: read_trimmed(paths, "/proc/sys/kernel/osrelease")
                .unwrap_or_else(|| "unknown".into()),
            cpus: cpus.to_vec(),
            clusters,
            ddr: DdrClock::read(paths, profile),
            llc_bytes: cpus
                .first()
                .and_then(|c| topology::last_level_cache_bytes(paths, *c)),
            mem: MemInfo::read(paths),
            max_working_set: MAX_WORKING_SET,
            tuned: false,
        }
    }

    /// Results hold for this board, kernel, set of cores and DDR clock state only.
    pub fn cache_key(&self) -> String {
        format!(
            "{}|{}|cpus {}|ddr {}|{}",
            self.board,
            self.kernel_release,
            format_cpu_list(&self.cpus),
            self.ddr.state_key(),
            if self.tuned { "tuned" } else { "untuned" }
        )
    }

    /// The working set: ≥ 8 × the last-level cache and ≥ 256 MiB, but at most a quarter of
    /// the available memory and 4 GiB. Returns the size and the rule that set it.
    pub fn working_set(&self) -> (u64, String) {
        let llc8 = self.llc_bytes.map(|b| b * 8).unwrap_or(0);
        let mut size = llc8.max(MIN_WORKING_SET);
        let mut rule = if llc8 > MIN_WORKING_SET {
            format!(
                "8 x last-level cache ({} MiB)",
                self.llc_bytes.unwrap_or(0) >> 20
            )
        } else {
            "256 MiB floor".to_string()
        };
        let cap = self
            .mem
            .map(|m| m.available / 4)
            .filter(|c| *c > 0)
            .unwrap_or(self.max_working_set)
            .min(self.max_working_set);
        if size > cap {
            size = cap;
            rule = format!(
                "{rule}, capped at {} MiB (1/4 of MemAvailable, max {} MiB)",
                cap >> 20,
                self.max_working_set >> 20
            );
        }
        (size, rule)
    }
}

/// Runs the benchmark: memory within `memory_budget`, compute within `compute_budget`.
pub fn run(setup: &Setup, memory_budget: Duration, compute_budget: Duration) -> Measurement {
    let started = std::time::Instant::now();
    let (working_set, mut working_set_rule) = setup.working_set();
    let bandwidth = memory::measure(&memory::MemoryOptions {
        cpus: setup.cpus.clone(),
        working_set_bytes: working_set,
        budget: memory_budget,
        setup_share: SETUP_SHARE,
        min_working_set_bytes: MIN_WORKING_SET,
    });
    // Where paging in is slow (no huge pages), the budget wins over the cache rule.
    if bandwidth.working_set_bytes + (1 << 20) < working_set {
        working_set_rule = format!(
            "{working_set_rule}, cut to {} MiB: paging it in must fit {:.0} % of the budget",
            bandwidth.working_set_bytes >> 20,
            SETUP_SHARE * 100.0
        );
    }
    let compute = compute::measure(&setup.clusters, compute_budget);
    Measurement {
        board: setup.board.clone(),
        kernel_release: setup.kernel_release.clone(),
        cpus: setup.cpus.clone(),
        bandwidth,
        theoretical: setup.ddr.theoretical_bytes_per_second(),
        ddr_clock_hz: setup.ddr.current_hz,
        ddr_governor: setup.ddr.governor.clone(),
        ddr_floating: setup.ddr.floating(),
        last_level_cache_bytes: setup.llc_bytes,
        working_set_rule,
        compute,
        wall_seconds: started.elapsed().as_secs_f64(),
        measured_unix: now_unix(),
    }
}

/// Where a measurement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Measured,
    Cached,
}

/// A cached result for the same key younger than `max_age`, else a new run (stored).
/// `force` skips the cache (`Rebenchmark()`). A store error costs the cache, not the run.
/// The store is locked only around the lookup and the insert, not during the measurement
/// (it takes a second; the daemon's other users of the store must not wait for it).
pub fn obtain(
    store: &std::sync::Mutex<Store>,
    setup: &Setup,
    force: bool,
    max_age: Duration,
    memory_budget: Duration,
    compute_budget: Duration,
) -> (Measurement, Origin, Option<StoreError>) {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let key = setup.cache_key();
    let mut store_error = None;
    if !force {
        let since = now_unix() - max_age.as_secs() as i64;
        match lock().bench_latest(&key, since) {
            Ok(Some(json)) => {
                if let Ok(m) = serde_json::from_str::<Measurement>(&json) {
                    return (m, Origin::Cached, None);
                }
            }
            Ok(None) => {}
            Err(e) => store_error = Some(e),
        }
    }
    let m = run(setup, memory_budget, compute_budget);
    let json = serde_json::to_string(&m).expect("a measurement serializes");
    if let Err(e) = lock().bench_insert(&key, m.measured_unix, &json) {
        store_error = Some(e);
    }
    (m, Origin::Measured, store_error)
}

/// Pins the calling thread to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data (zeroed = empty set); CPU_SET is bounds-checked by the
    // filter; sched_setaffinity(0) acts on the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for c in cpus.iter().filter(|c| **c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(*c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `12.3 GB/s`.
pub fn gbps(bytes_per_second: f64) -> String {
    format!("{:.1} GB/s", bytes_per_second / 1e9)
}

#[cfg(test)]
pub(crate) mod tests;

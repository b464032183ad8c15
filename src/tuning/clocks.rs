//! Clocks: the cpufreq governor `performance` on the chosen cores, and the board profile's
//! devfreq devices (RK3588: `dmc` (DDR), NPU, GPU). Under `dmc_ondemand` the RK3588's DDR
//! clock floats between 528 and 2112 MHz, and decode speed with it: a model reads all its
//! weights per token, so the memory clock is the speed. Rockchip pins DDR, NPU and A76 for
//! its own benchmarks; so do we, and restore the previous governors on stop.
//!
//! On Jetson the clocks belong to `nvpmodel` and `jetson_clocks`, which need root: tutord
//! starts the helper units shipped in `systemd/` (through polkit, which names exactly them) and
//! stops them to undo.

use super::Change;
use crate::platform::Paths;
use crate::platform::profile::read_trimmed;

/// The governor that keeps a clock at its highest frequency.
pub const PERFORMANCE: &str = "performance";

/// Helper unit that runs `jetson_clocks` (storing the previous clocks, restored at stop).
pub const JETSON_CLOCKS_UNIT: &str = "tutord-jetson-clocks.service";

/// Helper unit that selects an nvpmodel power mode (the previous one restored at stop).
pub fn nvpmodel_unit(mode: i32) -> String {
    format!("tutord-nvpmodel@{mode}.service")
}

/// The cpufreq governor file of `cpu`.
pub fn cpu_governor_path(cpu: usize) -> String {
    format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")
}

/// The governor file of devfreq device `name`.
pub fn devfreq_governor_path(name: &str) -> String {
    format!("/sys/class/devfreq/{name}/governor")
}

/// The writes that pin the clocks: one per governor file not yet at `performance`. Cores of
/// one cpufreq policy share a file (cpu5/cpufreq is a link to policy4), written once.
pub fn plan_writes(
    paths: &Paths,
    cpus: &[usize],
    devfreq: &[String],
    warnings: &mut Vec<String>,
) -> Vec<Change> {
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for &cpu in cpus {
        let rel = cpu_governor_path(cpu);
        // No cpufreq (a VM, a container): nothing to pin, and nothing wrong.
        if !paths.join(&rel).exists() {
            continue;
        }
        let available =
            format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_available_governors");
        plan_one(
            paths,
            &rel,
            &available,
            &format!("cpu{cpu}"),
            &mut seen,
            &mut out,
            warnings,
        );
    }
    for name in devfreq {
        let rel = devfreq_governor_path(name);
        if !paths.join(&rel).exists() {
            warnings.push(format!(
                "the board profile names devfreq device {name}, but {} does not exist: its \
                 clock is left as it is",
                paths.join(&rel).display()
            ));
            continue;
        }
        let available = format!("/sys/class/devfreq/{name}/available_governors");
        plan_one(paths, &rel, &available, name, &mut seen, &mut out, warnings);
    }
    out
}

fn plan_one(
    paths: &Paths,
    rel: &str,
    available_rel: &str,
    what: &str,
    seen: &mut Vec<std::path::PathBuf>,
    out: &mut Vec<Change>,
    warnings: &mut Vec<String>,
) {
    let real = std::fs::canonicalize(paths.join(rel)).unwrap_or_else(|_| paths.join(rel));
    if seen.contains(&real) {
        return;
    }
    seen.push(real);
    let Some(current) = read_trimmed(paths, rel) else {
        warnings.push(format!("cannot read {}", paths.join(rel).display()));
        return;
    };
    if current == PERFORMANCE {
        return;
    }
    if let Some(available) = read_trimmed(paths, available_rel)
        && !available.split_whitespace().any(|g| g == PERFORMANCE)
    {
        warnings.push(format!(
            "{what}: governor {PERFORMANCE} is not available ({available}); left at {current}"
        ));
        return;
    }
    out.push(Change::Write {
        path: rel.to_string(),
        previous: current,
        value: PERFORMANCE.to_string(),
    });
}

/// Writes `value` to the sysfs file `rel` under `paths`.
pub fn write(paths: &Paths, rel: &str, value: &str) -> Result<(), super::TuningError> {
    let path = paths.join(rel);
    std::fs::write(&path, value).map_err(|source| super::TuningError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

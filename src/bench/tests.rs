use super::*;
use crate::platform::profile::Profiles;
use crate::platform::topology::tests::{orin_nano_tree, put, rk3588_tree};

fn setup_for(tree: fn(&std::path::Path), cpus: &[usize]) -> (tempfile::TempDir, Setup) {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    put(
        dir.path(),
        "/proc/sys/kernel/osrelease",
        "6.1.75-rockchip\n",
    );
    let paths = Paths::new(dir.path());
    let profiles = Profiles::builtin();
    let setup = Setup::read(&paths, profiles.detect(&paths), cpus);
    (dir, setup)
}

#[test]
fn rk3588_setup_reads_the_fake_tree() {
    let (_d, s) = setup_for(rk3588_tree, &[4, 5, 6, 7]);
    assert_eq!(s.board, "rk3588");
    assert_eq!(
        s.clusters,
        vec![vec![4, 5, 6, 7]],
        "only the chosen cores' cluster"
    );
    assert_eq!(s.llc_bytes, Some(3 << 20));
    assert_eq!(s.ddr.theoretical_bytes_per_second(), Some(33_792_000_000.0));
    assert_eq!(
        s.cache_key(),
        "rk3588|6.1.75-rockchip|cpus 4-7|ddr 2112MHz/dmc_ondemand|untuned"
    );
    // 8 × 3 MiB = 24 MiB is under the 256 MiB floor.
    assert_eq!(s.working_set(), (256 << 20, "256 MiB floor".to_string()));
}

#[test]
fn orin_nano_setup_and_the_working_set_rules() {
    let (dir, mut s) = setup_for(orin_nano_tree, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(s.board, "orin-nano");
    assert_eq!(s.clusters.len(), 1, "all six A78AE alike");
    assert_eq!(
        s.ddr.theoretical_bytes_per_second(),
        Some(102_368_000_000.0)
    );
    // A big cache sets the size; little memory caps it.
    s.llc_bytes = Some(300 << 20);
    assert_eq!(s.working_set().0, 2400 << 20);
    put(dir.path(), "/proc/meminfo", "MemAvailable: 2097152 kB\n");
    s.mem = MemInfo::read(&Paths::new(dir.path()));
    let (size, rule) = s.working_set();
    assert_eq!(size, 512 << 20);
    assert!(rule.contains("capped at 512 MiB"), "{rule}");
}

#[test]
fn the_key_changes_with_the_ddr_clock_state() {
    let (dir, a) = setup_for(rk3588_tree, &[4, 5, 6, 7]);
    put(
        dir.path(),
        "/sys/class/devfreq/dmc/governor",
        "performance\n",
    );
    let paths = Paths::new(dir.path());
    let b = Setup::read(&paths, Profiles::builtin().detect(&paths), &[4, 5, 6, 7]);
    assert_ne!(a.cache_key(), b.cache_key());
    let c = Setup::read(&paths, Profiles::builtin().detect(&paths), &[4, 5]);
    assert_ne!(b.cache_key(), c.cache_key());
}

/// A real run on this machine, small budgets: stored, reused while fresh, re-run on force.
#[test]
fn results_are_cached_and_forced_runs_measure_again() {
    let state = tempfile::tempdir().unwrap();
    let store = std::sync::Mutex::new(Store::open(state.path(), Duration::from_secs(1)).unwrap());
    let (_d, mut s) = setup_for(rk3588_tree, &[0]);
    s.llc_bytes = Some(1 << 20);
    s.mem = Some(MemInfo {
        available: 64 << 20,
        ..MemInfo::default()
    });
    let budget = Duration::from_millis(50);
    let week = Duration::from_secs(7 * 24 * 3600);
    let (m1, o1, e1) = obtain(&store, &s, false, week, budget, budget);
    assert_eq!((o1, e1.is_none()), (Origin::Measured, true));
    // 16 MiB rounded up to whole 24-word groups: a working set is "at least".
    assert_eq!(
        m1.bandwidth.working_set_bytes,
        (16u64 << 20).div_ceil(192) * 192
    );
    assert!(m1.bandwidth.read > 1e8, "{m1:?}");
    assert!(m1.compute_ops() > 1e9, "{m1:?}");
    // A typical (median) figure is measured, and no better than the best.
    let typical = m1.typical();
    assert!(m1.bandwidth.read_median.is_some(), "{m1:?}");
    assert!(
        typical.read > 0.0 && typical.read <= m1.bandwidth.read,
        "{m1:?}"
    );
    assert!(
        typical.fp32 > 0.0 && typical.fp32 <= m1.compute_fp32(),
        "{m1:?}"
    );
    let (m2, o2, _) = obtain(&store, &s, false, week, budget, budget);
    assert_eq!((o2, &m2), (Origin::Cached, &m1));
    let (m3, o3, _) = obtain(&store, &s, true, week, budget, budget);
    assert_eq!(o3, Origin::Measured);
    assert_ne!(
        m3.wall_seconds, m1.wall_seconds,
        "a new run, not the cached one"
    );
    assert_eq!(
        store.lock().unwrap().bench_runs_total().unwrap(),
        2,
        "history kept"
    );
    // Too old: measured again.
    let (_, o4, _) = obtain(&store, &s, false, Duration::ZERO, budget, budget);
    assert_eq!(o4, Origin::Measured);
}

#[test]
fn the_median_of_odd_and_even_counts() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0]), Some(3.0));
    assert_eq!(median(&[9.0, 1.0, 4.0]), Some(4.0));
    assert_eq!(median(&[9.0, 1.0, 4.0, 2.0]), Some(3.0));
}

/// A measurement with the given figures: one cluster of cores 4-7, two of them chosen (read
/// 20 GB/s best, FP32 40 GFLOP/s and INT8 160 GOP/s per core best; the medians given; with
/// FP32's median, the scalar chain at 3.0 Gop/s best, 2.5 median, else none, as a result
/// cached before either was measured).
pub(crate) fn measured(read_median: Option<f64>, fp32_median: Option<f64>) -> Measurement {
    Measurement {
        board: "rk3588".into(),
        kernel_release: "6.1".into(),
        cpus: vec![4, 5],
        bandwidth: Bandwidth {
            read: 20e9,
            read_median,
            copy: 15e9,
            triad: 16e9,
            threads: 2,
            working_set_bytes: 256 << 20,
            repetitions: [25, 12, 12],
            setup_seconds: 0.1,
            isa: "neon".into(),
        },
        theoretical: None,
        ddr_clock_hz: 0,
        ddr_governor: None,
        ddr_floating: false,
        last_level_cache_bytes: None,
        working_set_rule: String::new(),
        compute: vec![ClusterPeak {
            cpus: vec![4, 5, 6, 7],
            fp32_per_core: 40e9,
            int8_per_core: Some(160e9),
            fp32_median_per_core: fp32_median,
            int8_median_per_core: fp32_median.map(|f| 4.0 * f),
            scalar_per_core: fp32_median.map(|_| 3.0e9),
            scalar_median_per_core: fp32_median.map(|_| 2.5e9),
        }],
        wall_seconds: 1.0,
        measured_unix: 0,
    }
}

#[test]
fn typical_figures_are_the_medians_for_the_chosen_cores() {
    let m = measured(Some(15e9), Some(30e9));
    assert_eq!(
        m.typical(),
        Typical {
            read: 15e9,
            fp32: 60e9,  // 2 chosen cores × 30 GFLOP/s
            ops: 240e9,  // 2 × 120 GOP/s INT8
            scalar: 5e9, // 2 × 2.5 Gop/s
        }
    );
    // The best figures are unchanged beside them.
    assert_eq!((m.bandwidth.read, m.compute_fp32()), (20e9, 80e9));
}

#[test]
fn a_result_cached_before_the_medians_plans_with_its_best_figures() {
    let m = measured(None, None);
    assert_eq!(
        m.typical(),
        Typical {
            read: 20e9,
            fp32: 80e9,
            ops: 320e9,
            scalar: 0.0,
        }
    );
    // And such a result, as the store kept it (no median fields), still reads.
    let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
    json["bandwidth"]
        .as_object_mut()
        .unwrap()
        .remove("read_median");
    json["compute"][0]
        .as_object_mut()
        .unwrap()
        .remove("fp32_median_per_core");
    json["compute"][0]
        .as_object_mut()
        .unwrap()
        .remove("int8_median_per_core");
    for field in ["scalar_per_core", "scalar_median_per_core"] {
        json["compute"][0].as_object_mut().unwrap().remove(field);
    }
    let old: Measurement = serde_json::from_value(json).unwrap();
    assert_eq!(old, m);
}

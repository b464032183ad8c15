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

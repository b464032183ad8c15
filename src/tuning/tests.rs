//! Tuning against fake sysfs trees laid out like a Rock 5B and a Jetson Orin Nano, a real
//! store in a temporary directory, and a fake service manager that checks the journal.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::diagnostics::Value;
use crate::platform::topology::tests::{orin_nano_tree, put, rk3588_tree};
use crate::store::Store;

/// A service manager in memory. `stop`/`start` fail unless the journal already holds a
/// pending or applied row for the unit: a change must be recorded before it is made.
#[derive(Clone, Default)]
struct FakeUnits(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    /// unit → ActiveState; absent = not-found.
    units: BTreeMap<String, String>,
    log: Vec<String>,
    journal: Option<Arc<Mutex<Store>>>,
    /// The configuration `tutord-tuning.service` reads as root: starting that unit runs the
    /// real helper (helper.rs) against this manager, as systemd runs its ExecStart.
    helper: Option<Config>,
    /// Units whose stop job takes this long (a unit slow to stop).
    slow_stop: BTreeMap<String, Duration>,
}

impl FakeUnits {
    fn new(journal: &Arc<Mutex<Store>>, running: &[&str], stopped: &[&str]) -> Self {
        let mut s = FakeState {
            journal: Some(journal.clone()),
            ..Default::default()
        };
        for u in running {
            s.units.insert(u.to_string(), "active".into());
        }
        for u in stopped {
            s.units.insert(u.to_string(), "inactive".into());
        }
        Self(Arc::new(Mutex::new(s)))
    }

    /// This manager with the package's tuning helper unit, reading `cfg` as root does.
    fn with_helper(self, cfg: &Config) -> Self {
        {
            let mut s = self.0.lock().unwrap();
            s.units
                .entry(helper::HELPER_UNIT.to_string())
                .or_insert_with(|| "inactive".into());
            s.helper = Some(cfg.clone());
        }
        self
    }

    fn active(&self, unit: &str) -> bool {
        self.0.lock().unwrap().units.get(unit).map(String::as_str) == Some("active")
    }

    fn log(&self) -> Vec<String> {
        self.0.lock().unwrap().log.clone()
    }

    fn set(&self, verb: &str, unit: &str, active: &str) -> Result<(), TuningError> {
        let mut s = self.0.lock().unwrap();
        if !s.units.contains_key(unit) {
            return Err(TuningError::Unit {
                verb: "test",
                unit: unit.into(),
                reason: "not found".into(),
            });
        }
        let recorded = s
            .journal
            .as_ref()
            .map(|j| j.lock().unwrap().tuning_outstanding().unwrap())
            .unwrap_or_default()
            .iter()
            .any(|r| r.target == unit);
        // Undoing a change happens while its row is still outstanding; making one must
        // come after recording it. Either way the row must be there.
        assert!(recorded, "{verb} {unit} without a journal row");
        s.units.insert(unit.into(), active.into());
        s.log.push(format!("{verb} {unit}"));
        Ok(())
    }
}

impl Units for FakeUnits {
    async fn state(&self, unit: &str) -> Result<(String, String), TuningError> {
        let s = self.0.lock().unwrap();
        Ok(match s.units.get(unit) {
            Some(a) => ("loaded".into(), a.clone()),
            None => ("not-found".into(), "inactive".into()),
        })
    }
    async fn stop(&self, unit: &str) -> Result<(), TuningError> {
        let slow = self.0.lock().unwrap().slow_stop.get(unit).copied();
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        let was = self.active(unit);
        self.set("stop", unit, "inactive")?;
        if let Some(cfg) = self.helper_cfg(unit)
            && was
        {
            // ExecStop, then systemd removes the RuntimeDirectory.
            let record = helper::record_path(&Paths::new(&cfg.platform.root));
            helper::start_recorded(&AsRoot(self.clone()), &record).await;
            let _ = std::fs::remove_dir_all(record.parent().unwrap());
        }
        Ok(())
    }
    async fn start(&self, unit: &str) -> Result<(), TuningError> {
        let was = self.active(unit);
        self.set("start", unit, "active")?;
        if let Some(cfg) = self.helper_cfg(unit)
            && !was
        {
            // systemd creates the RuntimeDirectory, then runs ExecStart.
            let paths = Paths::new(&cfg.platform.root);
            let record = helper::record_path(&paths);
            std::fs::create_dir_all(record.parent().unwrap()).unwrap();
            let board = profile(&cfg).board();
            let plan = helper::planned(&cfg.tuning, board, &paths, &mut Vec::new());
            helper::stop_planned(&AsRoot(self.clone()), &plan, &record).await?;
        }
        Ok(())
    }
}

impl FakeUnits {
    /// The helper's configuration when `unit` is the helper unit.
    fn helper_cfg(&self, unit: &str) -> Option<Config> {
        if unit != helper::HELPER_UNIT {
            return None;
        }
        self.0.lock().unwrap().helper.clone()
    }
}

/// The same manager as root's helper sees it: its changes are the helper's own record's,
/// not tutord's journal's (the fake checks tutord's journal for tutord's calls only).
struct AsRoot(FakeUnits);

impl Units for AsRoot {
    async fn state(&self, unit: &str) -> Result<(String, String), TuningError> {
        self.0.state(unit).await
    }
    async fn stop(&self, unit: &str) -> Result<(), TuningError> {
        self.root_set("stop", unit, "inactive")
    }
    async fn start(&self, unit: &str) -> Result<(), TuningError> {
        self.root_set("start", unit, "active")
    }
}

impl AsRoot {
    fn root_set(&self, verb: &str, unit: &str, active: &str) -> Result<(), TuningError> {
        let mut s = self.0.0.lock().unwrap();
        if !s.units.contains_key(unit) {
            return Err(TuningError::Unit {
                verb: "test",
                unit: unit.into(),
                reason: "not found".into(),
            });
        }
        s.units.insert(unit.into(), active.into());
        s.log.push(format!("root: {verb} {unit}"));
        Ok(())
    }
}

impl Connect for FakeUnits {
    async fn connect() -> Result<Self, TuningError> {
        Err(TuningError::Connect(zbus::Error::Failure(
            "no systemd in tests".into(),
        )))
    }
}

/// Adds cpufreq governors laid out as the kernel does (policy directories, cpuN/cpufreq as
/// links), devfreq governors and thermal files to a Rock 5B tree.
fn rk3588_clocks(root: &Path) {
    rk3588_tree(root);
    for (policy, cpus) in [(0, 0..4), (4, 4..8)] {
        let p = format!("/sys/devices/system/cpu/cpufreq/policy{policy}");
        put(root, &format!("{p}/scaling_governor"), "schedutil\n");
        put(
            root,
            &format!("{p}/scaling_available_governors"),
            "conservative ondemand userspace powersave performance schedutil\n",
        );
        let max = if policy == 4 {
            "2400000\n"
        } else {
            "1800000\n"
        };
        put(root, &format!("{p}/cpuinfo_max_freq"), max);
        put(root, &format!("{p}/scaling_cur_freq"), "1008000\n");
        for cpu in cpus {
            let link = root.join(format!("sys/devices/system/cpu/cpu{cpu}/cpufreq"));
            std::fs::remove_dir_all(&link).unwrap();
            std::os::unix::fs::symlink(format!("../cpufreq/policy{policy}"), &link).unwrap();
        }
    }
    put(
        root,
        "/sys/class/devfreq/dmc/available_governors",
        "dmc_ondemand userspace powersave performance simple_ondemand\n",
    );
    for dev in ["fdab0000.npu", "fb000000.gpu"] {
        put(
            root,
            &format!("/sys/class/devfreq/{dev}/governor"),
            "simple_ondemand\n",
        );
        put(
            root,
            &format!("/sys/class/devfreq/{dev}/available_governors"),
            "userspace powersave performance simple_ondemand\n",
        );
        put(
            root,
            &format!("/sys/class/devfreq/{dev}/cur_freq"),
            "300000000\n",
        );
        put(
            root,
            &format!("/sys/class/devfreq/{dev}/max_freq"),
            "1000000000\n",
        );
    }
    put(
        root,
        "/sys/class/thermal/thermal_zone0/type",
        "soc-thermal\n",
    );
    put(root, "/sys/class/thermal/thermal_zone0/temp", "45200\n");
    put(
        root,
        "/sys/class/thermal/thermal_zone0/trip_point_0_type",
        "passive\n",
    );
    put(
        root,
        "/sys/class/thermal/thermal_zone0/trip_point_0_temp",
        "85000\n",
    );
    put(
        root,
        "/sys/class/thermal/cooling_device0/type",
        "thermal-cpufreq-0\n",
    );
    put(root, "/sys/class/thermal/cooling_device0/cur_state", "0\n");
    put(root, "/sys/class/thermal/cooling_device0/max_state", "8\n");
    put(
        root,
        "/proc/meminfo",
        "MemTotal: 16000000 kB\nMemFree: 1000000 kB\nMemAvailable: 8000000 kB\n\
         SwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    put(
        root,
        "/proc/swaps",
        "Filename\tType\tSize\tUsed\tPriority\n",
    );
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel.trim_start_matches('/')))
        .unwrap()
        .trim()
        .to_string()
}

fn config(root: &Path, toml: &str) -> Config {
    let mut c = crate::config::parse_toml("test.toml", toml).unwrap();
    c.platform.root = root.to_path_buf();
    c
}

fn store(dir: &Path) -> Arc<Mutex<Store>> {
    Arc::new(Mutex::new(
        Store::open(&dir.join("state"), Duration::from_secs(1)).unwrap(),
    ))
}

/// A tuner for `cfg` on `units`, which get the tuning helper unit reading the same `cfg`.
fn tuner(cfg: &Config, units: &FakeUnits) -> Tuner<FakeUnits> {
    let units = units.clone().with_helper(cfg);
    Tuner::new(cfg, profile(cfg), Shared::default()).with_units(units)
}

/// The built-in profile for the fake tree under `cfg`'s platform root.
fn profile(cfg: &Config) -> crate::platform::profile::BoardProfile {
    crate::platform::profile::Profiles::builtin()
        .detect(&Paths::new(&cfg.platform.root))
        .clone()
}

/// Every file of the tree with its contents, to prove nothing was written.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(&p, out);
            } else if meta.is_file() {
                out.insert(
                    p.display().to_string(),
                    std::fs::read_to_string(&p).unwrap_or_default(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root.join("sys"), &mut out);
    out
}

#[tokio::test]
async fn rk3588_pins_big_core_and_devfreq_governors_and_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rk3588_clocks(&root);
    let j = store(dir.path());
    let units = FakeUnits::new(
        &j,
        &[
            "ModemManager.service",
            "man-db.timer",
            "apt-daily.timer",
            "unattended-upgrades.service",
        ],
        &[],
    );
    let cfg = config(&root, "");
    let mut t = tuner(&cfg, &units);
    assert_eq!(t.engine_cpus(), Some(vec![4, 5, 6, 7]));
    t.start(&*j).await;

    // One write per cpufreq policy (cpu4-7 share policy4), the little cores untouched.
    assert_eq!(
        read(
            &root,
            "/sys/devices/system/cpu/cpufreq/policy4/scaling_governor"
        ),
        "performance"
    );
    assert_eq!(
        read(
            &root,
            "/sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
        ),
        "schedutil"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/dmc/governor"),
        "performance"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/fdab0000.npu/governor"),
        "performance"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/fb000000.gpu/governor"),
        "performance"
    );
    assert!(!units.active("ModemManager.service"));
    assert!(!units.active("man-db.timer"));
    // Security updates keep running (they are not in the defaults and are protected).
    assert!(units.active("apt-daily.timer"));
    assert!(units.active("unattended-upgrades.service"));
    {
        let r = t.report();
        let r = r.lock().unwrap();
        assert_eq!(r.writes.len(), 4, "{:?}", r.writes);
        assert_eq!(r.stopped_units, ["man-db.timer", "ModemManager.service"]);
        assert_eq!(r.board, "rk3588");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    // Four governors and the tuning helper (which stopped the two units as root).
    let rows = j.lock().unwrap().tuning_outstanding().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r.state == "applied"));
    let dmc = rows
        .iter()
        .find(|r| r.target.ends_with("dmc/governor"))
        .unwrap();
    assert_eq!(
        (dmc.previous.as_str(), dmc.value.as_str()),
        ("dmc_ondemand", "performance")
    );

    t.stop(&*j).await;
    assert_eq!(
        read(
            &root,
            "/sys/devices/system/cpu/cpufreq/policy4/scaling_governor"
        ),
        "schedutil"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/dmc/governor"),
        "dmc_ondemand"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/fdab0000.npu/governor"),
        "simple_ondemand"
    );
    assert!(units.active("ModemManager.service"));
    assert!(units.active("man-db.timer"));
    // Stopped by root's helper, which tutord started; undone newest first.
    assert_eq!(
        units.log(),
        [
            "start tutord-tuning.service",
            "root: stop man-db.timer",
            "root: stop ModemManager.service",
            "stop tutord-tuning.service",
            "root: start ModemManager.service",
            "root: start man-db.timer"
        ]
    );
    assert!(j.lock().unwrap().tuning_outstanding().unwrap().is_empty());
}

#[tokio::test]
async fn dry_run_writes_nothing_and_says_what_it_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rk3588_clocks(&root);
    let before = snapshot(&root);
    let j = store(dir.path());
    let units = FakeUnits::new(&j, &["ModemManager.service"], &[]);
    let cfg = config(&root, "[tuning]\nmode = \"dry-run\"\nswap = \"off\"\n");
    let mut t = tuner(&cfg, &units);
    assert_eq!(t.engine_cpus(), None, "dry run does not place the engine");
    t.pin_process();
    t.start(&*j).await;
    t.stop(&*j).await;
    assert_eq!(snapshot(&root), before);
    assert!(units.active("ModemManager.service"));
    assert!(units.log().is_empty());
    assert!(j.lock().unwrap().tuning_outstanding().unwrap().is_empty());
    let r = t.report();
    let would = r.lock().unwrap().would.join("\n");
    for w in [
        "pin threads and the engine to CPUs 4-7",
        "stop ModemManager.service",
        "write performance to /sys/devices/system/cpu/cpu4/cpufreq/scaling_governor (was schedutil)",
        "write performance to /sys/class/devfreq/dmc/governor (was dmc_ondemand)",
    ] {
        assert!(would.contains(w), "missing '{w}' in:\n{would}");
    }
}

#[tokio::test]
async fn generic_board_defaults_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rk3588_clocks(&root);
    // The same machine without its device tree: a generic board.
    std::fs::remove_file(root.join("proc/device-tree/compatible")).unwrap();
    let before = snapshot(&root);
    let j = store(dir.path());
    let units = FakeUnits::new(&j, &["ModemManager.service", "apt-daily.timer"], &[]);
    let cfg = config(&root, "");
    let mut t = tuner(&cfg, &units);
    assert_eq!(t.engine_cpus(), None);
    t.start(&*j).await;
    assert_eq!(snapshot(&root), before);
    assert!(units.log().is_empty());
    assert_eq!(t.report().lock().unwrap().board, "generic");
}

#[tokio::test]
async fn explicit_units_on_a_generic_board_and_bad_entries_warn() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let j = store(dir.path());
    let units = FakeUnits::new(
        &j,
        &[
            "dummy-a.service",
            "dbus.service",
            "ssh.service",
            "systemd-journald.service",
        ],
        &["dummy-idle.service"],
    );
    let cfg = config(
        &root,
        "[tuning]\nstop_units = [\"dummy-a\", \"dbus.service\", \"systemd-journald.service\", \
         \"no-such.service\", \"dummy-idle.service\"]\ncpus = [0, 999]\n",
    );
    let mut t = tuner(&cfg, &units);
    t.start(&*j).await;
    assert_eq!(
        units.log(),
        ["start tutord-tuning.service", "root: stop dummy-a.service"]
    );
    assert!(units.active("dbus.service") && units.active("ssh.service"));
    let r = t.report();
    let w = r.lock().unwrap().warnings.join("\n");
    assert!(w.contains("dbus.service is protected"), "{w}");
    assert!(w.contains("systemd-journald.service is protected"), "{w}");
    assert!(w.contains("unit no-such.service does not exist"), "{w}");
    assert!(w.contains("[tuning] cpus: CPU 999 does not exist"), "{w}");
    // The CPUs that exist are still used.
    let online = Topology::read(&Paths::new(&root)).ids();
    assert_eq!(t.engine_cpus(), online.contains(&0).then(|| vec![0]));
    t.stop(&*j).await;
    assert!(units.active("dummy-a.service"));
}

#[tokio::test]
async fn ssh_is_stopped_only_when_listed_by_name() {
    let mut w = Vec::new();
    let c = services::candidates(
        true,
        &["ssh".into(), "cups".into()],
        &["cups.service".into(), "fstrim.timer".into()],
        &mut w,
    );
    assert!(c.contains(&"ssh.service".to_string()), "{c:?}");
    assert!(
        !c.contains(&"cups.service".to_string()),
        "keep_units wins: {c:?}"
    );
    assert!(!c.contains(&"fstrim.timer".to_string()));
    assert!(c.contains(&"man-db.timer".to_string()));
    assert!(!c.contains(&"apt-daily.timer".to_string()), "{c:?}");
    assert!(w.is_empty(), "{w:?}");
    // Security updates are never stopped, even when listed.
    let c = services::candidates(
        false,
        &[
            "apt-daily-upgrade.timer".into(),
            "unattended-upgrades".into(),
        ],
        &[],
        &mut w,
    );
    assert!(c.is_empty(), "{c:?}");
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[1].starts_with("[tuning] stop_units: unattended-upgrades.service is protected"),
        "{w:?}"
    );
    assert!(services::is_protected("ssh.service", &[]));
    assert!(services::is_protected(
        "tutord.service",
        &["tutord.service".into()]
    ));
}

#[tokio::test]
async fn a_crashed_run_is_reconciled_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rk3588_clocks(&root);
    let units;
    {
        let j = store(dir.path());
        units = FakeUnits::new(&j, &["ModemManager.service"], &[]);
        let mut t = tuner(&config(&root, ""), &units);
        t.start(&*j).await;
        assert!(!units.active("ModemManager.service"));
        // kill -9: no stop, the store closes with the changes applied.
    }
    assert_eq!(
        read(&root, "/sys/class/devfreq/dmc/governor"),
        "performance"
    );
    // Someone set the GPU governor by hand meanwhile: that one is left alone.
    put(
        &root,
        "/sys/class/devfreq/fb000000.gpu/governor",
        "powersave\n",
    );

    let j = store(dir.path());
    units.0.lock().unwrap().journal = Some(j.clone());
    let mut t = tuner(&config(&root, "[tuning]\nmode = \"off\"\n"), &units);
    t.start(&*j).await;
    assert!(units.active("ModemManager.service"), "{:?}", units.log());
    assert_eq!(
        read(&root, "/sys/class/devfreq/dmc/governor"),
        "dmc_ondemand"
    );
    assert_eq!(
        read(
            &root,
            "/sys/devices/system/cpu/cpufreq/policy4/scaling_governor"
        ),
        "schedutil"
    );
    assert_eq!(
        read(&root, "/sys/class/devfreq/fb000000.gpu/governor"),
        "powersave"
    );
    let r = t.report();
    let r = r.lock().unwrap();
    assert_eq!(r.reconciled, 4);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("changed by someone else")),
        "{:?}",
        r.warnings
    );
    assert!(j.lock().unwrap().tuning_outstanding().unwrap().is_empty());
}

#[tokio::test]
async fn orin_nano_starts_the_jetson_helpers_and_pins_no_cores() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    orin_nano_tree(&root);
    let j = store(dir.path());
    // The built-in profile selects power mode 0 (MAXN SUPER on JetPack 6).
    assert_eq!(
        crate::platform::profile::Profiles::builtin()
            .get("orin-nano")
            .unwrap()
            .jetson_power_mode,
        0
    );
    let units = FakeUnits::new(
        &j,
        &[],
        &["tutord-jetson-clocks.service", "tutord-nvpmodel@0.service"],
    );
    let mut cfg = config(&root, "");
    let mut t = tuner(&cfg, &units);
    assert_eq!(
        t.engine_cpus(),
        None,
        "six A78AE cores alike: nothing to choose"
    );
    t.start(&*j).await;
    assert_eq!(
        units.log(),
        [
            "start tutord-nvpmodel@0.service",
            "start tutord-jetson-clocks.service"
        ]
    );
    t.stop(&*j).await;
    assert!(!units.active("tutord-jetson-clocks.service"));
    assert!(!units.active("tutord-nvpmodel@0.service"));

    cfg.tuning.clocks = false;
    let units = FakeUnits::new(&j, &[], &["tutord-jetson-clocks.service"]);
    let mut t = tuner(&cfg, &units);
    t.start(&*j).await;
    assert!(units.log().is_empty(), "clocks = false leaves them");
}

#[tokio::test(start_paused = true)]
async fn undoing_at_stop_ends_within_its_budget_when_a_unit_is_slow_to_stop() {
    // tutord has TimeoutStopSec=20s; one unit job may wait 30 s. A stop that waited for it
    // would be cut by SIGKILL; instead the undo gives up at its budget and leaves the rest
    // to systemd and to the next start's reconcile.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    orin_nano_tree(&root);
    let j = store(dir.path());
    let units = FakeUnits::new(
        &j,
        &[],
        &["tutord-jetson-clocks.service", "tutord-nvpmodel@0.service"],
    );
    units.0.lock().unwrap().slow_stop.insert(
        "tutord-jetson-clocks.service".into(),
        Duration::from_secs(60),
    );
    let cfg = config(&root, "");
    let mut t = tuner(&cfg, &units);
    t.start(&*j).await;
    let started = tokio::time::Instant::now();
    t.stop(&*j).await;
    assert_eq!(started.elapsed(), STOP_BUDGET);
    assert!(
        STOP_BUDGET < Duration::from_secs(20),
        "inside TimeoutStopSec"
    );
    let left = j.lock().unwrap().tuning_outstanding().unwrap();
    // The slow one stays for the next start; the one after it, quick, was still undone.
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].target, "tutord-jetson-clocks.service");
    assert!(!units.active("tutord-nvpmodel@0.service"));
    let warnings = lock(&t.report()).warnings.join("\n");
    assert!(
        warnings.contains("did not finish within tutord's 12 s for undoing tuning at stop"),
        "{warnings}"
    );
}

#[test]
fn swap_areas_and_their_units() {
    let areas = swap::parse(
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
         /dev/zram0                              partition\t4046844\t\t1024\t\t100\n\
         /swap\\040file                          file\t\t1048572\t\t0\t\t-2\n",
    );
    assert_eq!(areas.len(), 2);
    assert_eq!(areas[0].size_kib, 4046844);
    assert_eq!(swap::unit_name(&areas[0].path), "dev-zram0.swap");
    assert_eq!(swap::unit_name(&areas[1].path), "swap\\x20file.swap");
    assert_eq!(
        swap::unit_name("/var/lib/swap-file"),
        "var-lib-swap\\x2dfile.swap"
    );
    assert_eq!(swap::describe(&[]), "none");
    assert!(swap::describe(&areas).starts_with("/dev/zram0 3951 MiB (1 MiB used)"));
}

#[tokio::test]
async fn swap_off_stops_the_swap_units_and_starts_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    put(
        &root,
        "/proc/swaps",
        "Filename Type Size Used Priority\n/dev/zram0 partition 4046844 0 100\n",
    );
    let j = store(dir.path());
    let units = FakeUnits::new(&j, &["dev-zram0.swap"], &[]);
    let mut t = tuner(&config(&root, "[tuning]\nswap = \"off\"\n"), &units);
    t.start(&*j).await;
    assert!(!units.active("dev-zram0.swap"));
    t.stop(&*j).await;
    assert!(units.active("dev-zram0.swap"));
    let mut t = tuner(&config(&root, ""), &units);
    t.start(&*j).await;
    assert!(units.active("dev-zram0.swap"), "keep leaves swap on");
    assert!(t.report().lock().unwrap().swap.starts_with("/dev/zram0"));
}

/// Root's helper on its own: what it stops is what root's config lists and runs; a second
/// run (the unit restarted by hand) adds to the record instead of forgetting the first; the
/// restore starts them newest first and removes the record; tuning off plans nothing.
#[tokio::test]
async fn the_root_helper_records_what_it_stopped_and_starts_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let j = store(dir.path());
    let fake = FakeUnits::new(
        &j,
        &["a.service", "b.service", "ssh.service"],
        &["idle.service"],
    );
    let units = AsRoot(fake.clone());
    let record = dir.path().join("stopped");
    let cfg = config(
        &root,
        "[tuning]\nstop_units = [\"a\", \"idle\", \"ssh\", \"gone.service\"]\n",
    );
    let paths = Paths::new(&root);
    let mut warnings = Vec::new();
    let plan = helper::planned(&cfg.tuning, Board::Generic, &paths, &mut warnings);
    assert_eq!(
        plan,
        ["a.service", "idle.service", "ssh.service", "gone.service"]
    );
    assert!(warnings.is_empty(), "{warnings:?}");

    let now = helper::stop_planned(&units, &plan, &record).await.unwrap();
    assert_eq!(
        now,
        ["a.service", "ssh.service"],
        "idle and unknown units are left alone"
    );
    assert_eq!(helper::read_record(&record), ["a.service", "ssh.service"]);
    // Started again by hand, then the helper runs once more with b listed too.
    fake.0
        .lock()
        .unwrap()
        .units
        .insert("a.service".into(), "active".into());
    let plan2 = [plan.clone(), vec!["b.service".into()]].concat();
    let now = helper::stop_planned(&units, &plan2, &record).await.unwrap();
    assert_eq!(
        now,
        ["b.service"],
        "what the record holds is not stopped twice"
    );
    assert_eq!(
        helper::read_record(&record),
        ["a.service", "ssh.service", "b.service"]
    );

    let started = helper::start_recorded(&units, &record).await;
    assert_eq!(
        started,
        ["b.service", "ssh.service", "a.service"],
        "newest first"
    );
    assert!(!record.exists(), "the record goes with the restore");
    assert!(fake.active("b.service") && fake.active("ssh.service"));
    assert!(helper::start_recorded(&units, &record).await.is_empty());

    let off = config(&root, "[tuning]\nmode = \"off\"\nstop_units = [\"a\"]\n");
    assert!(helper::planned(&off.tuning, Board::Generic, &paths, &mut warnings).is_empty());
}

#[test]
fn thermal_sample_tells_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    rk3588_clocks(root);
    let paths = Paths::new(root);
    let devfreq = vec!["dmc".to_string(), "fdab0000.npu".to_string()];
    let s = thermal::sample(&paths, &[4, 5, 6, 7], &devfreq);
    assert!(!s.throttled(), "{:?}", s.reasons);
    assert_eq!(
        s.describe(),
        "soc-thermal 45.2 °C, cpu4 1008/2400 MHz, dmc 2112/2112 MHz, fdab0000.npu 300/1000 MHz"
    );
    put(root, "/sys/class/thermal/cooling_device0/cur_state", "3\n");
    let s = thermal::sample(&paths, &[4], &devfreq);
    assert_eq!(
        s.reasons,
        ["cooling device thermal-cpufreq-0 engaged (state 3 of 8)"]
    );
    put(root, "/sys/class/thermal/cooling_device0/cur_state", "0\n");
    put(root, "/sys/class/thermal/thermal_zone0/temp", "86000\n");
    let s = thermal::sample(&paths, &[4], &devfreq);
    assert_eq!(s.reasons, ["soc-thermal at 86.0 °C, passive trip 85.0 °C"]);
}

#[test]
fn affinity_of_every_thread_is_read_and_set() {
    let dir = tempfile::tempdir().unwrap();
    for (tid, name, list) in [
        (100, "tutord", "4-7"),
        (101, "tokio-rt", "4-7"),
        (102, "whisper", "0-7"),
    ] {
        put(
            dir.path(),
            &format!("/{tid}/status"),
            &format!("Name:\t{name}\nCpus_allowed_list:\t{list}\n"),
        );
    }
    let t = affinity::threads(dir.path());
    assert_eq!(t.len(), 3);
    assert_eq!(
        affinity::summary(&t, Some(&[4, 5, 6, 7])),
        "1 of 3 threads not on CPUs 4-7: 102 whisper on 0-7"
    );

    // The real thing, on this process: pin to the first allowed CPU, check every thread,
    // then give the threads their old mask back.
    let allowed = crate::platform::topology::allowed_cpus();
    let spare = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(300)));
    affinity::pin_process(&allowed[..1]).unwrap();
    let mine = affinity::threads(Path::new("/proc/self/task"));
    assert!(mine.len() >= 2);
    assert!(mine.iter().all(|t| t.cpus == allowed[..1]), "{mine:?}");
    affinity::pin_process(&allowed).unwrap();
    spare.join().unwrap();
}

#[test]
fn report_entries_name_what_is_in_effect() {
    let r = Report {
        mode: "apply".into(),
        stopped_units: vec!["a.service".into(), "b.timer".into()],
        writes: vec![Change::Write {
            path: "/sys/class/devfreq/dmc/governor".into(),
            previous: "dmc_ondemand".into(),
            value: "performance".into(),
        }],
        ..Default::default()
    };
    let e: BTreeMap<String, Value> = r.entries().into_iter().collect();
    assert_eq!(
        e["tuning_stopped_units"],
        Value::Str("a.service b.timer".into())
    );
    assert_eq!(
        e["tuning_governors"],
        Value::Str(
            "write performance to /sys/class/devfreq/dmc/governor (was dmc_ondemand)".into()
        )
    );
    assert_eq!(e["tuning_cpus"], Value::Str("all (not pinned)".into()));
    assert_eq!(e["tuning_throttled"], Value::Bool(false));
}

#[test]
fn big_cores_are_measured_when_sysfs_does_not_tell_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rk3588_tree(&root);
    for cpu in 0..8 {
        let base = root.join(format!("sys/devices/system/cpu/cpu{cpu}"));
        std::fs::remove_file(base.join("cpu_capacity")).unwrap();
        std::fs::remove_file(base.join("cpufreq/cpuinfo_max_freq")).unwrap();
    }
    let cfg = config(&root, "");
    let t: Tuner = Tuner::new(&cfg, profile(&cfg), Shared::default());
    let cpus = t.engine_cpus().expect("a big.LITTLE board is pinned");
    // This machine's cores are alike, so which ones win is up to measurement noise; what
    // matters is that they were measured and are among the online ones.
    assert!(!cpus.is_empty() && cpus.iter().all(|c| *c < 8), "{cpus:?}");
    assert_eq!(
        crate::tuning::report::lock(&t.report()).cpus_basis,
        "big cores by measured FP32 rate"
    );
}

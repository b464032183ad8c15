//! tutord's memory limit, sized from the plan of the model that serves.
//!
//! Why: the appliance must never swap or wake the OOM killer for something else on the board.
//! The plan already knows what the tutor needs (weights, the KV cache at the configured
//! context, speech recognition and the voice); a `ListenWav` flood, a runaway allocation in a model's
//! runtime or a leak should hit tutord's own limit (reclaim, then the OOM kill of tutord
//! alone, which systemd restarts) long before the rest of the board feels it.
//!
//! How: tutord cannot change its own unit (that would need a polkit grant to set properties,
//! and `DeviceAllow=`/`IPAddressAllow=` are properties too). Root's template unit
//! `tutord-memory@<MiB>.service` runs `tutord memory-limit <MiB>`, which sets `MemoryHigh=`
//! and `MemoryMax=` of `tutord.service` (runtime only: gone at reboot, set again at the next
//! start). The instance is a number, checked; the unit is always `tutord.service`, capped by
//! the board's RAM: the worst a process running as tutord can do through it is limit itself.

use super::TuningError;
use super::services::Units;
use crate::platform::Paths;
use crate::platform::memory::MemInfo;

/// The unit whose memory is limited: always tutord's own.
pub const LIMITED_UNIT: &str = "tutord.service";
/// Headroom over the plan's figure before reclaim starts (`MemoryHigh=`): the plan counts
/// weights, KV cache, STT and TTS, not the allocator's slack or the compute buffers.
const HIGH_HEADROOM: f64 = 1.25;
/// Fixed headroom for tutord's own process (bus, store, audio buffers), bytes.
const PROCESS_BYTES: u64 = 256 << 20;
/// `MemoryMax=` over `MemoryHigh=`: room to reclaim the model's page cache before a kill.
const MAX_OVER_HIGH: f64 = 1.25;
/// What the board keeps for itself whatever the plan says (kernel, journald, the bus).
const BOARD_RESERVE: u64 = 256 << 20;
/// Below this a limit would stop tutord starting at all: refused.
const SMALLEST_MIB: u64 = 64;

/// The limits for a plan needing `need` bytes, on a board with `total` bytes of RAM (0 =
/// unknown: no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub high: u64,
    pub max: u64,
}

impl Limits {
    pub fn for_need(need: u64, total: u64) -> Self {
        let high = (need as f64 * HIGH_HEADROOM) as u64 + PROCESS_BYTES;
        let max = (high as f64 * MAX_OVER_HIGH) as u64;
        let cap = if total > BOARD_RESERVE {
            total - BOARD_RESERVE
        } else {
            u64::MAX
        };
        Self {
            high: round_mib(high.min(cap)),
            max: round_mib(max.min(cap)),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "MemoryHigh={} MiB, MemoryMax={} MiB",
            self.high >> 20,
            self.max >> 20
        )
    }
}

fn round_mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20) << 20
}

/// The helper unit instance that limits tutord for a plan needing `need` bytes.
pub fn unit_for(need: u64) -> String {
    format!("tutord-memory@{}.service", need.div_ceil(1 << 20).max(1))
}

/// The unit this process runs in, from `/proc/self/cgroup` under `paths` (cgroup v2:
/// `0::/system.slice/tutord.service`); None outside a service.
pub fn own_unit(paths: &Paths) -> Option<String> {
    let text = std::fs::read_to_string(paths.join("/proc/self/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|p| p.rsplit('/').find(|c| c.ends_with(".service")))
        .map(str::to_string)
}

/// `tutord memory-limit <MiB>`, as root from `tutord-memory@<MiB>.service`: the limits for
/// that need, capped by this board's RAM. The instance comes from uid tutord: only a number
/// in range is taken.
pub fn limits_for_instance(instance: &str, paths: &Paths) -> Result<Limits, TuningError> {
    let bad = |why: &str| TuningError::Instance {
        instance: instance.to_string(),
        why: why.to_string(),
    };
    if instance.is_empty() || instance.len() > 7 || !instance.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a number of MiB (1 to 7 digits)"));
    }
    let mib: u64 = instance.parse().map_err(|_| bad("not a number"))?;
    if mib < SMALLEST_MIB {
        return Err(bad(&format!(
            "under {SMALLEST_MIB} MiB tutord could not start"
        )));
    }
    let total = MemInfo::read(paths).map_or(0, |m| m.total);
    Ok(Limits::for_need(mib << 20, total))
}

/// Applies the limit for the model that serves, once per change of need. Off when tuning is
/// off, and when tutord does not run as `tutord.service` (a development run, the tests).
pub struct Limiter<U: Units> {
    units: Option<U>,
    in_service: bool,
    /// The board's RAM (0 = unknown), for the figures logged.
    total: u64,
    applied: Option<String>,
}

impl<U: Units> Limiter<U> {
    /// `units` None = tuning off or no systemd: nothing is ever applied.
    pub fn new(units: Option<U>, paths: &Paths) -> Self {
        let in_service = own_unit(paths).as_deref() == Some(LIMITED_UNIT);
        if !in_service {
            tracing::debug!("memory limit: not running as {LIMITED_UNIT}; none set");
        }
        Self {
            units,
            in_service,
            total: MemInfo::read(paths).map_or(0, |m| m.total),
            applied: None,
        }
    }

    /// Limits tutord for a plan needing `need` bytes (0 = no model: left as it is).
    pub async fn apply(&mut self, need: u64) {
        let Some(units) = self.units.as_ref().filter(|_| self.in_service && need > 0) else {
            return;
        };
        let unit = unit_for(need);
        if self.applied.as_deref() == Some(unit.as_str()) {
            return;
        }
        let limits = Limits::for_need(need.div_ceil(1 << 20) << 20, self.total);
        match units.start(&unit).await {
            Ok(()) => {
                tracing::info!(
                    memory_high = limits.high,
                    memory_max = limits.max,
                    "memory limit for the plan's {} MiB: {}",
                    need >> 20,
                    limits.describe()
                );
                self.applied = Some(unit);
            }
            Err(e) => tracing::warn!("memory limit not set: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_leave_headroom_and_the_board_its_reserve() {
        let gib = 1u64 << 30;
        // A 0.5B plan (1.1 GiB) on 8 GiB: 1.625 GiB high, ~2 GiB max.
        let l = Limits::for_need(gib + (gib / 10), 8 * gib);
        assert_eq!(l.high >> 20, 1664);
        assert_eq!(l.max >> 20, 2080);
        // A 7B plan (6 GiB) on 8 GiB: capped below the board's RAM.
        let l = Limits::for_need(6 * gib, 8 * gib);
        assert_eq!(l.high, 8 * gib - BOARD_RESERVE);
        assert_eq!(l.max, 8 * gib - BOARD_RESERVE);
        // RAM unknown: no cap.
        assert!(Limits::for_need(6 * gib, 0).max > 8 * gib);
    }

    #[test]
    fn the_instance_is_a_number_of_mib_in_range_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(dir.path().join("proc/meminfo"), "MemTotal: 8388608 kB\n").unwrap();
        let paths = Paths::new(dir.path());
        let l = limits_for_instance("1126", &paths).unwrap();
        assert_eq!(l, Limits::for_need(1126 << 20, 8 << 30));
        for bad in ["", "abc", "12a", "-5", "1e3", "12345678", "10", " 100"] {
            let e = limits_for_instance(bad, &paths).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
        // Any size is capped by the board.
        let l = limits_for_instance("9999999", &paths).unwrap();
        assert_eq!(l.max, (8 << 30) - BOARD_RESERVE);
    }

    #[test]
    fn the_unit_names_the_need_in_whole_mib() {
        assert_eq!(unit_for(1), "tutord-memory@1.service");
        assert_eq!(unit_for(1126 << 20), "tutord-memory@1126.service");
        assert_eq!(unit_for((1126 << 20) + 1), "tutord-memory@1127.service");
    }

    /// A systemd that knows every unit and records what is started.
    #[derive(Default)]
    struct Started(std::sync::Mutex<Vec<String>>);

    impl Units for Started {
        async fn state(&self, _: &str) -> Result<(String, String), TuningError> {
            Ok(("loaded".into(), "inactive".into()))
        }
        async fn stop(&self, _: &str) -> Result<(), TuningError> {
            unreachable!("the limiter stops nothing")
        }
        async fn start(&self, unit: &str) -> Result<(), TuningError> {
            self.0.lock().unwrap().push(unit.to_string());
            Ok(())
        }
    }

    fn root_in(cgroup: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        std::fs::write(dir.path().join("proc/self/cgroup"), cgroup).unwrap();
        dir
    }

    #[tokio::test]
    async fn the_limit_follows_the_plan_once_per_change_and_only_in_the_service() {
        let dir = root_in("0::/system.slice/tutord.service\n");
        let mut l = Limiter::new(Some(Started::default()), &Paths::new(dir.path()));
        l.apply(0).await; // no model: nothing
        l.apply(1100 << 20).await;
        l.apply(1100 << 20).await; // the same plan again: nothing new
        l.apply(2000 << 20).await; // SelectModel to a larger model
        let started = l.units.as_ref().unwrap().0.lock().unwrap().clone();
        assert_eq!(
            started,
            ["tutord-memory@1100.service", "tutord-memory@2000.service"]
        );

        // A development run (not tutord.service) or tuning off: never.
        let dir = root_in("0::/user.slice/user-0.slice/session-1.scope\n");
        let mut l = Limiter::new(Some(Started::default()), &Paths::new(dir.path()));
        l.apply(1100 << 20).await;
        assert!(l.units.as_ref().unwrap().0.lock().unwrap().is_empty());
        let dir = root_in("0::/system.slice/tutord.service\n");
        let mut l = Limiter::<Started>::new(None, &Paths::new(dir.path()));
        l.apply(1100 << 20).await;
    }

    #[test]
    fn own_unit_reads_the_cgroup_v2_line() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert_eq!(own_unit(&paths), None);
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        let cg = dir.path().join("proc/self/cgroup");
        std::fs::write(&cg, "0::/system.slice/tutord.service\n").unwrap();
        assert_eq!(own_unit(&paths).as_deref(), Some("tutord.service"));
        std::fs::write(&cg, "0::/user.slice/user-0.slice/session-3.scope\n").unwrap();
        assert_eq!(own_unit(&paths), None);
    }
}

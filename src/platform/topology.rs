//! CPU topology from sysfs: which cores are online, which are the big ones, the caches.
//!
//! Big cores are found from `cpu_capacity` (arm64 kernels publish the scheduler's relative
//! capacity: 1024 for an A76 on RK3588, ~414 for an A55), else from `cpuinfo_max_freq`; when
//! neither tells the cores apart the caller may rank them by measured compute
//! (`bench::compute`). On RK3588 both give cores 4-7.

use super::Paths;
use super::profile::{read_number, read_trimmed};

/// One online CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct Cpu {
    pub id: usize,
    /// `cpu_capacity`, when the kernel publishes it.
    pub capacity: Option<u64>,
    /// `cpufreq/cpuinfo_max_freq` in kHz, when cpufreq is there.
    pub max_freq_khz: Option<u64>,
    /// `topology/cluster_id` (else `package_id`).
    pub cluster: Option<i64>,
}

/// How the big cores were told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BigBasis {
    Capacity,
    MaxFrequency,
    /// Every core looks the same (a PC, or sysfs says nothing): all of them.
    AllAlike,
}

impl BigBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            BigBasis::Capacity => "cpu_capacity",
            BigBasis::MaxFrequency => "cpuinfo_max_freq",
            BigBasis::AllAlike => "all cores alike",
        }
    }
}

/// The online CPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub cpus: Vec<Cpu>,
}

impl Topology {
    /// Reads `/sys/devices/system/cpu` under `paths`. Without an `online` file (a bare fake
    /// tree, a strange container) the CPUs this process may run on are used.
    pub fn read(paths: &Paths) -> Self {
        let ids = read_trimmed(paths, "/sys/devices/system/cpu/online")
            .and_then(|s| parse_cpu_list(&s).ok())
            .unwrap_or_else(allowed_cpus);
        let cpus = ids
            .into_iter()
            .map(|id| {
                let base = format!("/sys/devices/system/cpu/cpu{id}");
                Cpu {
                    id,
                    capacity: read_number(paths, &format!("{base}/cpu_capacity")),
                    max_freq_khz: read_number(paths, &format!("{base}/cpufreq/cpuinfo_max_freq")),
                    cluster: read_trimmed(paths, &format!("{base}/topology/cluster_id"))
                        .or_else(|| read_trimmed(paths, &format!("{base}/topology/package_id")))
                        .and_then(|s| s.parse().ok()),
                }
            })
            .collect();
        Self { cpus }
    }

    pub fn ids(&self) -> Vec<usize> {
        self.cpus.iter().map(|c| c.id).collect()
    }

    /// The fastest cores and how they were found.
    pub fn big_cores(&self) -> (Vec<usize>, BigBasis) {
        let pick = |key: &dyn Fn(&Cpu) -> Option<u64>| -> Option<Vec<usize>> {
            let vals: Vec<u64> = self.cpus.iter().map(key).collect::<Option<_>>()?;
            let max = *vals.iter().max()?;
            let min = *vals.iter().min()?;
            // Within 5 %: the same core type (capacities are normalised and may differ by a
            // few units between cores of one cluster).
            if min * 100 >= max * 95 {
                return None;
            }
            Some(
                self.cpus
                    .iter()
                    .zip(&vals)
                    .filter(|(_, v)| **v * 100 >= max * 95)
                    .map(|(c, _)| c.id)
                    .collect(),
            )
        };
        if let Some(ids) = pick(&|c| c.capacity) {
            return (ids, BigBasis::Capacity);
        }
        if let Some(ids) = pick(&|c| c.max_freq_khz) {
            return (ids, BigBasis::MaxFrequency);
        }
        (self.ids(), BigBasis::AllAlike)
    }

    /// Cores grouped into clusters of one kind: by `cluster_id` when the capacities and
    /// frequencies agree within it, which is how arm64 kernels describe big.LITTLE.
    pub fn clusters(&self) -> Vec<Vec<usize>> {
        // (capacity, max frequency) → the cores that have it.
        type Kind = (Option<u64>, Option<u64>);
        let mut groups: Vec<(Kind, Vec<usize>)> = Vec::new();
        for c in &self.cpus {
            let key = (c.capacity, c.max_freq_khz);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(c.id),
                None => groups.push((key, vec![c.id])),
            }
        }
        groups.into_iter().map(|(_, ids)| ids).collect()
    }
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("'{part}' in CPU list '{s}' is not N or N-M");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let n: usize = part.parse().map_err(|_| bad())?;
                (n, n)
            }
        };
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// Formats CPU ids as a kernel CPU list (`4-7`, `0,2`).
pub fn format_cpu_list(ids: &[usize]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set, and sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|i| libc::CPU_ISSET(*i, &set))
            .collect()
    }
}

/// One cache of a CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    pub level: u32,
    /// `Data`, `Instruction` or `Unified`.
    pub kind: String,
    pub bytes: u64,
}

/// The caches of `cpu`, from `cache/index*/`.
pub fn caches(paths: &Paths, cpu: usize) -> Vec<Cache> {
    let mut out = Vec::new();
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/cache/index{i}");
        let (Some(level), Some(kind), Some(size)) = (
            read_number(paths, &format!("{base}/level")),
            read_trimmed(paths, &format!("{base}/type")),
            read_trimmed(paths, &format!("{base}/size")),
        ) else {
            continue;
        };
        if let Some(bytes) = parse_size(&size) {
            out.push(Cache {
                level: level as u32,
                kind,
                bytes,
            });
        }
    }
    out
}

/// The largest data or unified cache of the highest level `cpu` has, in bytes.
pub fn last_level_cache_bytes(paths: &Paths, cpu: usize) -> Option<u64> {
    let caches = caches(paths, cpu);
    let top = caches
        .iter()
        .filter(|c| c.kind != "Instruction")
        .map(|c| c.level)
        .max()?;
    caches
        .iter()
        .filter(|c| c.level == top && c.kind != "Instruction")
        .map(|c| c.bytes)
        .max()
}

/// Parses sysfs cache sizes: `32K`, `3072K`, `1M`, `512`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `rel` (an absolute-looking path) under `root`.
    pub(crate) fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Writes `cache/index<i>/{level,type,size}` of the CPU directory `base`.
    fn put_caches(root: &Path, base: &str, caches: &[(u32, &str, &str)]) {
        for (i, (level, kind, size)) in caches.iter().enumerate() {
            let c = format!("{base}/cache/index{i}");
            put(root, &format!("{c}/level"), &format!("{level}\n"));
            put(root, &format!("{c}/type"), &format!("{kind}\n"));
            put(root, &format!("{c}/size"), &format!("{size}\n"));
        }
    }

    /// A sysfs tree laid out like a Rock 5B (RK3588): A55 cores 0-3 (capacity 414, 1.8 GHz,
    /// 64 KiB L2... as the vendor kernel reports), A76 cores 4-7 (1024, 2.4 GHz), 3 MiB L3.
    pub(crate) fn rk3588_tree(root: &Path) {
        put(
            root,
            "/proc/device-tree/compatible",
            "radxa,rock-5b\0rockchip,rk3588\0",
        );
        put(root, "/sys/devices/system/cpu/online", "0-7\n");
        for cpu in 0..8 {
            let big = cpu >= 4;
            let base = format!("/sys/devices/system/cpu/cpu{cpu}");
            put(
                root,
                &format!("{base}/cpu_capacity"),
                if big { "1024\n" } else { "414\n" },
            );
            put(
                root,
                &format!("{base}/cpufreq/cpuinfo_max_freq"),
                if big { "2400000\n" } else { "1800000\n" },
            );
            put(
                root,
                &format!("{base}/topology/cluster_id"),
                if big { "1\n" } else { "0\n" },
            );
            put_caches(
                root,
                &base,
                &[
                    (1, "Data", "64K"),
                    (1, "Instruction", "64K"),
                    (2, "Unified", if big { "512K" } else { "128K" }),
                    (3, "Unified", "3072K"),
                ],
            );
        }
        put(root, "/sys/class/devfreq/dmc/cur_freq", "2112000000\n");
        put(root, "/sys/class/devfreq/dmc/max_freq", "2112000000\n");
        put(root, "/sys/class/devfreq/dmc/governor", "dmc_ondemand\n");
    }

    /// A tree laid out like a Jetson Orin Nano: six A78AE cores alike, 2 MiB L3... (the L4T
    /// kernel reports 256K L2 per core and a 2 MiB L3), EMC at 3199 MHz in debugfs.
    pub(crate) fn orin_nano_tree(root: &Path) {
        put(
            root,
            "/proc/device-tree/compatible",
            "nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0",
        );
        put(root, "/sys/devices/system/cpu/online", "0-5\n");
        for cpu in 0..6 {
            let base = format!("/sys/devices/system/cpu/cpu{cpu}");
            put(
                root,
                &format!("{base}/cpufreq/cpuinfo_max_freq"),
                "1728000\n",
            );
            put(
                root,
                &format!("{base}/topology/cluster_id"),
                if cpu < 4 { "0\n" } else { "1\n" },
            );
            put_caches(
                root,
                &base,
                &[
                    (1, "Data", "64K"),
                    (2, "Unified", "256K"),
                    (3, "Unified", "2048K"),
                ],
            );
        }
        put(
            root,
            "/sys/kernel/debug/bpmp/debug/clk/emc/rate",
            "3199000000\n",
        );
        put(
            root,
            "/sys/kernel/debug/bpmp/debug/clk/emc/max_rate",
            "3199000000\n",
        );
    }

    #[test]
    fn rk3588_big_cores_are_4_to_7_from_capacity() {
        let dir = tempfile::tempdir().unwrap();
        rk3588_tree(dir.path());
        let paths = Paths::new(dir.path());
        let t = Topology::read(&paths);
        assert_eq!(t.ids(), (0..8).collect::<Vec<_>>());
        assert_eq!(t.big_cores(), (vec![4, 5, 6, 7], BigBasis::Capacity));
        assert_eq!(t.clusters(), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
        assert_eq!(last_level_cache_bytes(&paths, 4), Some(3 << 20));
    }

    #[test]
    fn max_frequency_decides_without_capacity() {
        let dir = tempfile::tempdir().unwrap();
        rk3588_tree(dir.path());
        for cpu in 0..8 {
            std::fs::remove_file(
                dir.path()
                    .join(format!("sys/devices/system/cpu/cpu{cpu}/cpu_capacity")),
            )
            .unwrap();
        }
        let t = Topology::read(&Paths::new(dir.path()));
        assert_eq!(t.big_cores(), (vec![4, 5, 6, 7], BigBasis::MaxFrequency));
    }

    #[test]
    fn orin_nano_cores_are_all_alike() {
        let dir = tempfile::tempdir().unwrap();
        orin_nano_tree(dir.path());
        let paths = Paths::new(dir.path());
        let t = Topology::read(&paths);
        assert_eq!(t.big_cores(), ((0..6).collect(), BigBasis::AllAlike));
        assert_eq!(last_level_cache_bytes(&paths, 0), Some(2 << 20));
    }

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(
            parse_cpu_list("0-3,6,8-9\n").unwrap(),
            vec![0, 1, 2, 3, 6, 8, 9]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpu_list("3-1").unwrap_err().contains("'3-1'"));
        assert!(parse_cpu_list("a").is_err());
        assert_eq!(format_cpu_list(&[7, 4, 5, 6, 0, 2]), "0,2,4-7");
        assert_eq!(parse_size("307200K"), Some(300 << 20));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
    }
}

//! Memory: what is available (`/proc/meminfo`) and what the DRAM bus can carry in theory
//! (the DDR clock from the board profile's sysfs file × 2 transfers per clock × bus width).

use super::Paths;
use super::profile::{BoardProfile, read_number, read_trimmed};

/// The parts of `/proc/meminfo` tutord uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub total: u64,
    /// What can be had without swapping: the kernel's own estimate.
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub fn read(paths: &Paths) -> Option<Self> {
        let text = std::fs::read_to_string(paths.join("/proc/meminfo")).ok()?;
        Some(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut m = MemInfo::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(key), Some(val)) = (it.next(), it.next()) else {
                continue;
            };
            let Ok(kib) = val.parse::<u64>() else {
                continue;
            };
            let bytes = kib.saturating_mul(1024);
            match key {
                "MemTotal:" => m.total = bytes,
                "MemAvailable:" => m.available = bytes,
                "SwapTotal:" => m.swap_total = bytes,
                "SwapFree:" => m.swap_free = bytes,
                _ => {}
            }
        }
        m
    }
}

/// The DDR clock as the board reports it, and the theoretical bandwidth it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct DdrClock {
    /// Current clock in Hz; 0 when unknown.
    pub current_hz: u64,
    /// Highest clock in Hz; 0 when unknown.
    pub max_hz: u64,
    /// The devfreq governor, when the board has one for DDR.
    pub governor: Option<String>,
    pub bus_width_bits: u32,
    /// Where the clock came from: a path, `config ddr_clock_mhz`, or `unknown`.
    pub source: String,
}

impl DdrClock {
    pub fn read(paths: &Paths, profile: &BoardProfile) -> Self {
        let from_file = profile
            .ddr_clock_path
            .as_deref()
            .and_then(|p| read_number(paths, p).map(|hz| (hz, p.to_string())));
        let (current_hz, source) = match from_file {
            Some(v) => v,
            None if profile.ddr_clock_mhz > 0 => (
                u64::from(profile.ddr_clock_mhz) * 1_000_000,
                format!("board profile '{}' ddr_clock_mhz", profile.name),
            ),
            None => (0, "unknown".to_string()),
        };
        let max_hz = profile
            .ddr_max_clock_path
            .as_deref()
            .and_then(|p| read_number(paths, p))
            .unwrap_or(current_hz);
        Self {
            current_hz,
            max_hz,
            governor: profile
                .ddr_governor_path
                .as_deref()
                .and_then(|p| read_trimmed(paths, p)),
            bus_width_bits: profile.bus_width_bits,
            source,
        }
    }

    /// Theoretical peak in bytes/s at the current clock: clock × 2 (double data rate) ×
    /// width ÷ 8. None when the clock is unknown.
    pub fn theoretical_bytes_per_second(&self) -> Option<f64> {
        (self.current_hz > 0)
            .then(|| self.current_hz as f64 * 2.0 * f64::from(self.bus_width_bits) / 8.0)
    }

    /// Whether the clock can move under us: a governor other than `performance` /
    /// `userspace`, or a current clock below the maximum.
    pub fn floating(&self) -> bool {
        let gov_floats = self
            .governor
            .as_deref()
            .is_some_and(|g| g != "performance" && g != "userspace");
        gov_floats || (self.max_hz > 0 && self.current_hz < self.max_hz)
    }

    /// A short key for caching benchmark results: they hold only for this clock state.
    pub fn state_key(&self) -> String {
        format!(
            "{}MHz/{}",
            self.current_hz / 1_000_000,
            self.governor.as_deref().unwrap_or("-")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::profile::Profiles;
    use crate::platform::topology::tests::{orin_nano_tree, put, rk3588_tree};

    #[test]
    fn rk3588_worked_example_is_33_8_gb_per_s() {
        let dir = tempfile::tempdir().unwrap();
        rk3588_tree(dir.path());
        let paths = Paths::new(dir.path());
        let profiles = Profiles::builtin();
        let ddr = DdrClock::read(&paths, profiles.detect(&paths));
        assert_eq!(ddr.current_hz, 2_112_000_000);
        // 2112 MHz × 2 × 64 bit / 8 = 33.792 GB/s
        assert_eq!(ddr.theoretical_bytes_per_second(), Some(33_792_000_000.0));
        assert!(ddr.floating(), "dmc_ondemand is not pinned");
        put(
            dir.path(),
            "/sys/class/devfreq/dmc/governor",
            "performance\n",
        );
        assert!(!DdrClock::read(&paths, profiles.detect(&paths)).floating());
    }

    #[test]
    fn orin_nano_emc_gives_102_gb_per_s() {
        let dir = tempfile::tempdir().unwrap();
        orin_nano_tree(dir.path());
        let paths = Paths::new(dir.path());
        let ddr = DdrClock::read(&paths, Profiles::builtin().detect(&paths));
        // 3199 MHz × 2 × 128 / 8
        assert_eq!(ddr.theoretical_bytes_per_second(), Some(102_368_000_000.0));
        assert!(!ddr.floating());
    }

    #[test]
    fn generic_board_has_no_theoretical_figure_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        let profiles = Profiles::builtin();
        let mut generic = profiles.get("generic").unwrap().clone();
        assert_eq!(
            DdrClock::read(&paths, &generic).theoretical_bytes_per_second(),
            None
        );
        generic.ddr_clock_mhz = 2400;
        let ddr = DdrClock::read(&paths, &generic);
        assert_eq!(ddr.theoretical_bytes_per_second(), Some(38_400_000_000.0));
        assert!(ddr.source.contains("ddr_clock_mhz"));
    }

    #[test]
    fn meminfo_parses_kib_lines() {
        let m = MemInfo::parse(
            "MemTotal:       16310840 kB\nMemFree: 1 kB\nMemAvailable:   12000000 kB\n\
             SwapTotal:             0 kB\nSwapFree: 0 kB\ngarbage\n",
        );
        assert_eq!(m.total, 16_310_840 * 1024);
        assert_eq!(m.available, 12_000_000 * 1024);
        assert_eq!(m.swap_total, 0);
    }
}

//! Thermal watch: zone temperatures and the clocks actually granted. A throttled board misses
//! its predicted speed, so throttling is logged (with its own MESSAGE_ID) and shown on D-Bus.
//!
//! Throttled means the kernel is cooling: a CPU or devfreq cooling device is engaged
//! (`cur_state` > 0), or a zone is at or above its first passive trip point.

use crate::platform::Paths;
use crate::platform::profile::{read_number, read_trimmed};

/// One thermal zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub celsius: f64,
    pub passive_trip_celsius: Option<f64>,
}

/// A clock: what it runs at now and its hardware maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    pub name: String,
    pub cur_mhz: u64,
    pub max_mhz: u64,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub zones: Vec<Zone>,
    pub clocks: Vec<Clock>,
    /// Why the board counts as throttled; empty when it is not.
    pub reasons: Vec<String>,
}

impl Sample {
    pub fn throttled(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// `soc-thermal 45.2 °C, cpu4 2352/2352 MHz, dmc 2112/2112 MHz`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .zones
            .iter()
            .map(|z| format!("{} {:.1} °C", z.name, z.celsius))
            .collect();
        parts.extend(
            self.clocks
                .iter()
                .map(|c| format!("{} {}/{} MHz", c.name, c.cur_mhz, c.max_mhz)),
        );
        if parts.is_empty() {
            "no thermal zones or clocks".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Samples zones, cooling devices, the clocks of `cpus` (first core of each) and `devfreq`.
pub fn sample(paths: &Paths, cpus: &[usize], devfreq: &[String]) -> Sample {
    let mut s = Sample::default();
    for i in 0..64 {
        let base = format!("/sys/class/thermal/thermal_zone{i}");
        let Some(milli) =
            read_trimmed(paths, &format!("{base}/temp")).and_then(|t| t.parse::<i64>().ok())
        else {
            if !paths.join(&base).exists() {
                break;
            }
            continue;
        };
        let name =
            read_trimmed(paths, &format!("{base}/type")).unwrap_or_else(|| format!("zone{i}"));
        let passive = (0..16).find_map(|t| {
            let kind = read_trimmed(paths, &format!("{base}/trip_point_{t}_type"))?;
            (kind == "passive")
                .then(|| read_trimmed(paths, &format!("{base}/trip_point_{t}_temp")))
                .flatten()
                .and_then(|v| v.parse::<i64>().ok())
        });
        let zone = Zone {
            name,
            celsius: milli as f64 / 1000.0,
            passive_trip_celsius: passive.map(|p| p as f64 / 1000.0),
        };
        if let Some(trip) = zone.passive_trip_celsius
            && zone.celsius >= trip
        {
            s.reasons.push(format!(
                "{} at {:.1} °C, passive trip {:.1} °C",
                zone.name, zone.celsius, trip
            ));
        }
        s.zones.push(zone);
    }
    for i in 0..64 {
        let base = format!("/sys/class/thermal/cooling_device{i}");
        let Some(kind) = read_trimmed(paths, &format!("{base}/type")) else {
            break;
        };
        if !(kind.contains("cpufreq") || kind.contains("devfreq")) {
            continue;
        }
        let cur = read_number(paths, &format!("{base}/cur_state")).unwrap_or(0);
        if cur > 0 {
            let max = read_number(paths, &format!("{base}/max_state")).unwrap_or(0);
            s.reasons.push(format!(
                "cooling device {kind} engaged (state {cur} of {max})"
            ));
        }
    }
    let mut policies = Vec::new();
    for &cpu in cpus {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq");
        let real = std::fs::canonicalize(paths.join(&base)).unwrap_or_else(|_| paths.join(&base));
        if policies.contains(&real) {
            continue;
        }
        policies.push(real);
        if let (Some(cur), Some(max)) = (
            read_number(paths, &format!("{base}/scaling_cur_freq")),
            read_number(paths, &format!("{base}/cpuinfo_max_freq")),
        ) {
            s.clocks.push(Clock {
                name: format!("cpu{cpu}"),
                cur_mhz: cur / 1000,
                max_mhz: max / 1000,
            });
        }
    }
    for name in devfreq {
        let base = format!("/sys/class/devfreq/{name}");
        if let (Some(cur), Some(max)) = (
            read_number(paths, &format!("{base}/cur_freq")),
            read_number(paths, &format!("{base}/max_freq")),
        ) {
            s.clocks.push(Clock {
                name: name.clone(),
                cur_mhz: cur / 1_000_000,
                max_mhz: max / 1_000_000,
            });
        }
    }
    s
}

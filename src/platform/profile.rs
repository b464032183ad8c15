//! Board profiles: the facts about a board that code should not hard-wire (bus width, where
//! the DDR clock is read, devfreq names, NPU limits), from `config/boards.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Board, Paths};

/// The profiles built into tutord: `config/boards.toml`.
pub const BUILTIN: &str = include_str!("../../config/boards.toml");

/// One `[[board]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    pub name: String,
    pub family: String,
    pub compatible: Vec<String>,
    pub bus_width_bits: u32,
    pub ddr_clock_path: Option<String>,
    pub ddr_max_clock_path: Option<String>,
    pub ddr_governor_path: Option<String>,
    #[serde(default)]
    pub ddr_clock_mhz: u32,
    #[serde(default)]
    pub devfreq: Vec<String>,
    pub npu_version_path: Option<String>,
    #[serde(default)]
    pub npu_memory_domain_bytes: u64,
    #[serde(default)]
    pub npu_tops_int8: f64,
    #[serde(default)]
    pub gpu_tflops_fp16: f64,
    #[serde(default = "no_power_mode")]
    pub jetson_power_mode: i32,
    /// The DDR clock, MHz, an image for this board is planned for (0 = none stated).
    #[serde(default)]
    pub nominal_ddr_clock_mhz: u32,
    /// `MemAvailable` after boot, MiB, on the memory size an image for this board is planned
    /// for (0 = none stated).
    #[serde(default)]
    pub nominal_mem_available_mib: u32,
}

fn no_power_mode() -> i32 {
    -1
}

impl BoardProfile {
    /// Which code paths apply (RKLLM, Jetson tools): the family as a known board.
    pub fn board(&self) -> Board {
        Board::from_name(&self.family).unwrap_or(Board::Generic)
    }

    /// Theoretical bandwidth at the nominal DDR clock, bytes/s: clock × 2 (double data rate)
    /// × bus width ÷ 8; None when the profile states no nominal clock.
    pub fn nominal_bandwidth(&self) -> Option<f64> {
        (self.nominal_ddr_clock_mhz > 0).then(|| {
            f64::from(self.nominal_ddr_clock_mhz) * 1e6 * 2.0 * f64::from(self.bus_width_bits) / 8.0
        })
    }
}

/// Why the profiles could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    board: Vec<BoardProfile>,
}

/// All profiles of one file, in file order.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub origin: String,
    pub boards: Vec<BoardProfile>,
}

impl Profiles {
    /// The built-in profiles.
    pub fn builtin() -> Self {
        Self::parse("built-in boards.toml", BUILTIN).expect("the built-in boards.toml is valid")
    }

    /// The file at `path`, or the built-in profiles when `path` is empty.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        if path.as_os_str().is_empty() {
            return Ok(Self::builtin());
        }
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&origin, &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Self, ProfileError> {
        let invalid = |reason: String| ProfileError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (i, b) in file.board.iter().enumerate() {
            let at = format!("board {} ('{}')", i + 1, b.name);
            if b.name.is_empty()
                || !b
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(invalid(format!("{at}: name must be 1+ of a-z 0-9 -")));
            }
            if Board::from_name(&b.family).is_none() {
                return Err(invalid(format!(
                    "{at}: family '{}' is not one of rk3588, rk3576, orin-nano, generic",
                    b.family
                )));
            }
            if !matches!(b.bus_width_bits, 16 | 32 | 64 | 128 | 256) {
                return Err(invalid(format!(
                    "{at}: bus_width_bits {} is not 16, 32, 64, 128 or 256",
                    b.bus_width_bits
                )));
            }
            if file.board[..i].iter().any(|o| o.name == b.name) {
                return Err(invalid(format!("{at}: a second board of that name")));
            }
        }
        if !file.board.iter().any(|b| b.name == "generic") {
            return Err(invalid("no 'generic' board: it is the fallback".into()));
        }
        Ok(Self {
            origin: origin.to_string(),
            boards: file.board,
        })
    }

    /// The profile for the machine under `paths`: the first whose `compatible` matches the
    /// device tree, else `generic`.
    pub fn detect(&self, paths: &Paths) -> &BoardProfile {
        let compatible =
            std::fs::read(paths.join("/proc/device-tree/compatible")).unwrap_or_default();
        let entries = super::compatible_entries(&compatible);
        self.boards
            .iter()
            .find(|b| b.compatible.iter().any(|c| entries.contains(&c.as_str())))
            .unwrap_or_else(|| self.get("generic").expect("checked at parse"))
    }

    pub fn get(&self, name: &str) -> Option<&BoardProfile> {
        self.boards.iter().find(|b| b.name == name)
    }
}

/// Reads a sysfs-style file holding one number, under the injected root.
pub fn read_number(paths: &Paths, rel: &str) -> Option<u64> {
    read_trimmed(paths, rel)?.parse().ok()
}

/// Reads a sysfs-style file and trims it.
pub fn read_trimmed(paths: &Paths, rel: &str) -> Option<String> {
    let p: PathBuf = paths.join(rel);
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_parse_and_match_their_boards() {
        let p = Profiles::builtin();
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert_eq!(p.detect(&paths).name, "generic");
        std::fs::create_dir_all(dir.path().join("proc/device-tree")).unwrap();
        for (compat, name, width) in [
            (&b"radxa,rock-5b\0rockchip,rk3588\0"[..], "rk3588", 64),
            (
                b"nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0",
                "orin-nano",
                128,
            ),
            (b"radxa,rock-5a\0rockchip,rk3588s\0", "rk3588", 64),
            (b"brcm,bcm2711\0", "generic", 64),
            // A prefix of a known name is not that board; garbage is generic.
            (b"rockchip,rk358\0", "generic", 64),
            (b"\xff\xfe\0\0", "generic", 64),
            (b"", "generic", 64),
        ] {
            std::fs::write(dir.path().join("proc/device-tree/compatible"), compat).unwrap();
            let b = p.detect(&paths);
            assert_eq!((b.name.as_str(), b.bus_width_bits), (name, width));
        }
    }

    #[test]
    fn a_new_board_is_a_config_entry() {
        let text = format!(
            "{BUILTIN}\n[[board]]\nname = \"orangepi-5\"\nfamily = \"rk3588\"\n\
             compatible = [\"xunlong,orangepi-5\"]\nbus_width_bits = 32\n"
        );
        let p = Profiles::parse("mine.toml", &text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/device-tree")).unwrap();
        std::fs::write(
            dir.path().join("proc/device-tree/compatible"),
            b"xunlong,orangepi-5\0",
        )
        .unwrap();
        let b = p.detect(&Paths::new(dir.path()));
        assert_eq!((b.name.as_str(), b.board()), ("orangepi-5", Board::Rk3588));
    }

    #[test]
    fn bad_profiles_are_named() {
        let e = Profiles::parse(
            "x.toml",
            "[[board]]\nname = \"a\"\nfamily = \"z80\"\ncompatible = []\nbus_width_bits = 64\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("x.toml: board 1 ('a'): family 'z80'"), "{e}");
        let e = Profiles::parse(
            "x.toml",
            "[[board]]\nname = \"a\"\nfamily = \"rk3588\"\ncompatible = []\nbus_width_bits = 48\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bus_width_bits 48"), "{e}");
        let e = Profiles::parse(
            "x.toml",
            "[[board]]\nname = \"a\"\nfamily = \"rk3588\"\ncompatible = []\nbus_width_bits = 64\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no 'generic' board"), "{e}");
        let e = Profiles::parse("x.toml", "[[board]]\nnome = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nome"), "{e}");
    }
}

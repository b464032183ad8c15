//! The machine we run on, read under an injectable root: the board (device tree + profiles),
//! the CPU topology and caches, memory and the DDR clock.

pub mod memory;
pub mod profile;
pub mod topology;

use std::path::{Path, PathBuf};

/// Boards tutord knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// Rockchip RK3588 / RK3588S (Radxa Rock 5B and friends).
    Rk3588,
    /// Rockchip RK3576.
    Rk3576,
    /// NVIDIA Jetson Orin Nano (tegra234, p3767 module).
    OrinNano,
    /// Anything else: a developer's PC, a VM, CI. Tuning defaults change nothing here.
    Generic,
}

impl Board {
    pub fn as_str(self) -> &'static str {
        match self {
            Board::Rk3588 => "rk3588",
            Board::Rk3576 => "rk3576",
            Board::OrinNano => "orin-nano",
            Board::Generic => "generic",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "rk3588" => Board::Rk3588,
            "rk3576" => Board::Rk3576,
            "orin-nano" => Board::OrinNano,
            "generic" => Board::Generic,
            _ => return None,
        })
    }
}

/// Paths of the machine's kernel interfaces, relative to a root (`/` on a board).
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `<root>/<rel>` for an absolute-looking `rel` such as `/proc/device-tree/compatible`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The NUL-separated strings of a device-tree `compatible` value (invalid UTF-8 skipped).
pub fn compatible_entries(bytes: &[u8]) -> Vec<&str> {
    bytes
        .split(|b| *b == 0)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatible_entries_skip_empty_and_invalid_strings() {
        assert_eq!(
            compatible_entries(b"radxa,rock-5b\0rockchip,rk3588\0"),
            vec!["radxa,rock-5b", "rockchip,rk3588"]
        );
        assert!(compatible_entries(b"\xff\xfe\0\0").is_empty());
        assert!(compatible_entries(b"").is_empty());
    }
}

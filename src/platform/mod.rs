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

/// Detects the board from `/proc/device-tree/compatible`, a list of NUL-separated strings,
/// most specific first. A missing file (x86 PCs have no device tree) means generic.
pub fn detect_board(paths: &Paths) -> Board {
    match std::fs::read(paths.join("/proc/device-tree/compatible")) {
        Ok(bytes) => board_from_compatible(&bytes),
        Err(_) => Board::Generic,
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

/// Maps a device-tree `compatible` value to a board.
pub fn board_from_compatible(bytes: &[u8]) -> Board {
    let entries = compatible_entries(bytes);
    let has = |needle: &str| entries.contains(&needle);
    if has("rockchip,rk3588") || has("rockchip,rk3588s") {
        Board::Rk3588
    } else if has("rockchip,rk3576") {
        Board::Rk3576
    } else if has("nvidia,p3767") || has("nvidia,tegra234") {
        Board::OrinNano
    } else {
        Board::Generic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rock5b_compatible_is_rk3588() {
        assert_eq!(
            board_from_compatible(b"radxa,rock-5b\0rockchip,rk3588\0"),
            Board::Rk3588
        );
        assert_eq!(
            board_from_compatible(b"radxa,rock-5a\0rockchip,rk3588s\0"),
            Board::Rk3588
        );
    }

    #[test]
    fn orin_nano_compatible() {
        assert_eq!(
            board_from_compatible(
                b"nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0"
            ),
            Board::OrinNano
        );
    }

    #[test]
    fn unknown_and_garbage_are_generic() {
        assert_eq!(
            board_from_compatible(b"raspberrypi,4-model-b\0brcm,bcm2711\0"),
            Board::Generic
        );
        assert_eq!(board_from_compatible(b"\xff\xfe\0\0"), Board::Generic);
        assert_eq!(board_from_compatible(b""), Board::Generic);
        // A prefix of a known name is not that board.
        assert_eq!(board_from_compatible(b"rockchip,rk358\0"), Board::Generic);
    }

    #[test]
    fn detection_reads_under_the_injected_root() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert_eq!(detect_board(&paths), Board::Generic);
        std::fs::create_dir_all(dir.path().join("proc/device-tree")).unwrap();
        std::fs::write(
            dir.path().join("proc/device-tree/compatible"),
            b"radxa,rock-5b\0rockchip,rk3588\0",
        )
        .unwrap();
        assert_eq!(detect_board(&paths), Board::Rk3588);
    }
}

//! Swap: what is active (`/proc/swaps`), and the systemd swap unit of each device, through
//! which root's tuning helper turns it off and on (systemd knows every active swap as a
//! `.swap` unit: no CAP_SYS_ADMIN for swapoff anywhere).

use crate::platform::Paths;

/// One active swap area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapArea {
    pub path: String,
    pub size_kib: u64,
    pub used_kib: u64,
}

/// The active swap areas under `paths` (none when `/proc/swaps` is missing).
pub fn read(paths: &Paths) -> Vec<SwapArea> {
    std::fs::read_to_string(paths.join("/proc/swaps"))
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// Parses `/proc/swaps`: a header, then `Filename Type Size Used Priority` in KiB.
pub fn parse(text: &str) -> Vec<SwapArea> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(SwapArea {
                // The kernel escapes blanks in names as \040.
                path: f.first()?.replace("\\040", " "),
                size_kib: f.get(2)?.parse().ok()?,
                used_kib: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

/// One line for the journal and diagnostics: `none`, or each area with its use.
pub fn describe(areas: &[SwapArea]) -> String {
    if areas.is_empty() {
        return "none".into();
    }
    areas
        .iter()
        .map(|a| {
            format!(
                "{} {} MiB ({} MiB used)",
                a.path,
                a.size_kib / 1024,
                a.used_kib / 1024
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The systemd unit of a swap device or file: the path escaped as `systemd-escape --path`
/// does, plus `.swap` (`/dev/zram0` → `dev-zram0.swap`).
pub fn unit_name(path: &str) -> String {
    let trimmed: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if trimmed.is_empty() {
        return "-.swap".into();
    }
    let joined = trimmed.join("/");
    let mut out = String::new();
    for (i, b) in joined.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push_str(".swap");
    out
}

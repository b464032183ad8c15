//! What the RKLLM backend checks before it trusts a runtime library: that the file is built
//! for this machine, which runtime version it is, and which NPU kernel driver is running.
//!
//! Rockchip's runtime exports no version function. It prints its version once, at
//! `rkllm_init`, with the format string `"rkllm-runtime version: %s, rknpu driver version:
//! %s, platform: %s"`, the version itself being a separate string constant of the library
//! ("1.3.0"). So the version is read from the library file: the banner's format string proves
//! the file is an RKLLM runtime, and the version is the constant beside it. The runtime also
//! carries the lowest NPU driver it accepts ("0.9.7") as a constant of the same shape; runtime
//! versions start at 1, driver versions at 0, which tells the two apart.

use std::cmp::Ordering;
use std::fmt;
use std::path::Path;

/// The text that marks a library as Rockchip's RKLLM runtime: part of its init banner.
pub const BANNER: &str = "rkllm-runtime version:";

/// A dotted version such as `1.3.0`, `1.2.1b1` or `v0.9.8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// What follows the patch number (`b1` in `1.2.1b1`), empty for a release.
    pub suffix: String,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
            suffix: String::new(),
        }
    }

    /// Parses the whole of `s` (a leading `v` is allowed), or nothing.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let patch = rest[..digits].parse().ok()?;
        let suffix = &rest[digits..];
        // A pre-release tag such as "b1" or "rc2": letters then digits, nothing else.
        let ok_suffix = suffix.chars().all(|c| c.is_ascii_alphanumeric())
            && suffix
                .chars()
                .next()
                .is_none_or(|c| c.is_ascii_alphabetic());
        ok_suffix.then(|| Self {
            major,
            minor,
            patch,
            suffix: suffix.to_owned(),
        })
    }

    /// The first version-shaped word of `text` (`"RKNPU driver: v0.9.8"` → 0.9.8).
    pub fn find_in(text: &str) -> Option<Self> {
        text.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
            .find_map(Self::parse)
    }

    fn triple(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// By number; a pre-release (`1.2.1b1`) comes before its release (`1.2.1`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple().cmp(&other.triple()).then_with(|| {
            match (self.suffix.is_empty(), other.suffix.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.suffix.cmp(&other.suffix),
            }
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}{}",
            self.major, self.minor, self.patch, self.suffix
        )
    }
}

/// Whether `v` is of the 1.3.x ABI this backend binds.
pub fn is_supported_runtime(v: &Version) -> bool {
    v.major == 1 && v.minor == 3
}

/// The lowest NPU kernel driver RKLLM 1.3.x is used with here (Rockchip's runtime warns below
/// 0.9.7 and its w8a8 kernels fail on older drivers; 0.9.8 is what the 1.3 releases name).
pub const MIN_DRIVER: Version = Version::new(0, 9, 8);

/// ELF `e_machine` of the machine this process runs on, with its name.
fn host_machine() -> Option<(u16, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Some((62, "x86_64")),
        "aarch64" => Some((183, "aarch64")),
        "arm" => Some((40, "arm")),
        "riscv64" => Some((243, "riscv64")),
        "x86" => Some((3, "x86")),
        _ => None,
    }
}

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        n => format!("ELF machine {n}"),
    }
}

/// Checks the ELF identification of a library file against this process: a library for
/// another architecture cannot be loaded (dlopen only says "wrong ELF class" or "cannot open
/// shared object file"). `Err` says what the file is instead.
pub fn check_elf(head: &[u8]) -> Result<(), String> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" {
        return Err("is not an ELF shared library".into());
    }
    let class = match head[4] {
        1 => 32,
        2 => 64,
        _ => return Err("is an ELF file of unknown class".into()),
    };
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => return Err("is an ELF file of unknown byte order".into()),
    };
    let host_bits = usize::BITS;
    match host_machine() {
        Some((host, name)) if host != machine || host_bits != class => Err(format!(
            "is built for {} ({class}-bit) but this process runs on {name} ({host_bits}-bit); \
             Rockchip ships librkllmrt.so for aarch64 only",
            machine_name(machine)
        )),
        _ => Ok(()),
    }
}

/// How the runtime version was found in a library file.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The library carries the banner and exactly this runtime version.
    Version(Version),
    /// The banner is there but no runtime version constant.
    NoVersion,
    /// The banner is there with several runtime-version-shaped constants.
    Ambiguous(Vec<Version>),
    /// No RKLLM banner: not Rockchip's runtime (or a build this code does not know).
    NotRkllm,
}

/// Reads the runtime version out of the bytes of a library file (see the module doc).
pub fn scan_runtime_version(bytes: &[u8]) -> Found {
    let mut banner_seen = false;
    let mut candidates: Vec<Version> = Vec::new();
    for raw in bytes.split(|&b| b == 0) {
        if raw.is_empty() || raw.len() > 4096 {
            continue;
        }
        let Ok(s) = std::str::from_utf8(raw) else {
            continue;
        };
        if let Some(at) = s.find(BANNER) {
            banner_seen = true;
            // A build that formats its version into the banner itself.
            if let Some(v) = Version::find_in(&s[at + BANNER.len()..]) {
                return Found::Version(v);
            }
            continue;
        }
        if let Some(v) = Version::parse(s).filter(|v| v.major >= 1 && !candidates.contains(v)) {
            candidates.push(v);
        }
    }
    match (banner_seen, candidates.len()) {
        (false, _) => Found::NotRkllm,
        (true, 0) => Found::NoVersion,
        (true, 1) => Found::Version(candidates.remove(0)),
        (true, _) => Found::Ambiguous(candidates),
    }
}

/// Reads the NPU driver version from the first readable file of `paths` (debugfs'
/// `rknpu/version` says `RKNPU driver: v0.9.8`, `/sys/module/rknpu/version` says `0.9.8`).
/// `Err` lists what was wrong with each path.
pub fn read_driver_version(paths: &[impl AsRef<Path>]) -> Result<(Version, &Path), String> {
    let mut why = Vec::new();
    for path in paths {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => match Version::find_in(&text) {
                Some(v) => return Ok((v, path)),
                None => why.push(format!(
                    "{}: no version in {:?}",
                    path.display(),
                    text.trim()
                )),
            },
            Err(e) => why.push(format!("{}: {e}", path.display())),
        }
    }
    if why.is_empty() {
        why.push("no path to read it from was given".into());
    }
    Err(why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(Version::parse("1.3.0"), Some(Version::new(1, 3, 0)));
        assert_eq!(Version::parse("v0.9.8"), Some(Version::new(0, 9, 8)));
        let b = Version::parse("1.2.1b1").unwrap();
        assert_eq!(
            (b.major, b.minor, b.patch, b.suffix.as_str()),
            (1, 2, 1, "b1")
        );
        for bad in [
            "", "1.3", "1.3.x", "1.3.0-", "a.b.c", "1.3.0 ", "%s", "1.3.0.1",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn orders_versions() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("0.9.7") < MIN_DRIVER);
        assert!(v("0.9.8") >= MIN_DRIVER);
        assert!(v("0.10.0") > MIN_DRIVER);
        assert!(v("1.2.1b1") < v("1.2.1"));
        assert!(is_supported_runtime(&v("1.3.1")));
        assert!(!is_supported_runtime(&v("1.2.3")));
        assert!(!is_supported_runtime(&v("2.3.0")));
    }

    #[test]
    fn finds_driver_versions_in_sysfs_text() {
        let f = |s| Version::find_in(s);
        assert_eq!(f("RKNPU driver: v0.9.8\n"), Some(Version::new(0, 9, 8)));
        assert_eq!(f("0.9.6\n"), Some(Version::new(0, 9, 6)));
        assert_eq!(f("RKNPU driver: unknown\n"), None);
    }

    #[test]
    fn reads_the_first_readable_driver_file() {
        let dir = std::env::temp_dir().join(format!("rkllm-drv-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("version");
        std::fs::write(&good, "RKNPU driver: v0.9.8\n").unwrap();
        let missing = dir.join("missing");
        let paths = [&missing, &good];
        let (v, from) = read_driver_version(&paths).unwrap();
        assert_eq!((v, from), (Version::new(0, 9, 8), good.as_path()));
        let err = read_driver_version(&[&missing]).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn rodata(strings: &[&str]) -> Vec<u8> {
        let mut b = b"\x7fELF junk".to_vec();
        for s in strings {
            b.push(0);
            b.extend_from_slice(s.as_bytes());
        }
        b.push(0);
        b
    }

    #[test]
    fn scans_the_runtime_version_beside_the_banner() {
        let banner = "I rkllm: rkllm-runtime version: %s, rknpu driver version: %s, platform: %s\n";
        let lib = rodata(&["0.9.7", banner, "1.3.0", "GCC: (GNU) 12.2.0"]);
        assert_eq!(
            scan_runtime_version(&lib),
            Found::Version(Version::new(1, 3, 0))
        );
        let old = rodata(&[banner, "1.2.3", "0.9.7"]);
        assert_eq!(
            scan_runtime_version(&old),
            Found::Version(Version::new(1, 2, 3))
        );
        let inline = rodata(&["rkllm-runtime version: 1.3.1, platform: %s", "2.0.0"]);
        assert_eq!(
            scan_runtime_version(&inline),
            Found::Version(Version::new(1, 3, 1))
        );
        assert_eq!(
            scan_runtime_version(&rodata(&[banner, "0.9.7"])),
            Found::NoVersion
        );
        assert_eq!(
            scan_runtime_version(&rodata(&[banner, "1.3.0", "1.2.0"])),
            Found::Ambiguous(vec![Version::new(1, 3, 0), Version::new(1, 2, 0)])
        );
        assert_eq!(scan_runtime_version(&rodata(&["1.3.0"])), Found::NotRkllm);
    }

    fn elf(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        let m = if data == 1 {
            machine.to_le_bytes()
        } else {
            machine.to_be_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn elf_check_refuses_other_architectures() {
        let (host, name) = host_machine().expect("a known test architecture");
        assert_eq!(check_elf(&elf(2, 1, host)), Ok(()));
        let other = if host == 183 { 62 } else { 183 };
        let err = check_elf(&elf(2, 1, other)).unwrap_err();
        assert!(
            err.contains(&machine_name(other)) && err.contains(name),
            "{err}"
        );
        let err = check_elf(&elf(1, 1, host)).unwrap_err();
        assert!(err.contains("32-bit"), "{err}");
        assert!(
            check_elf(b"#!/bin/sh\n")
                .unwrap_err()
                .contains("not an ELF")
        );
    }
}

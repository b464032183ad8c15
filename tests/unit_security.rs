//! The units' hardening, as systemd itself scores it: `systemd-analyze security
//! --offline=yes`. tutord.service must stay at or below 2.5 (issue 8's bound; it is 0.5 now,
//! README "Privileges" says what each remaining point is for); the root helpers at or below
//! 4.0 (issue 17: tutord-tuning.service 0.9, the Jetson helpers 2.3 each, from 9.6).

mod common;

use common::REPO;

/// systemd-analyze's overall exposure of the unit file `file` (copied to `name`, so that a
/// template is scored as one of its instances).
fn exposure(file: &str, name: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let unit = dir.path().join(name);
    std::fs::copy(format!("{REPO}/systemd/{file}"), &unit).expect("copy the unit");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let label = format!("Overall exposure level for {name}:");
    text.lines()
        .find_map(|l| l.split(label.as_str()).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}\n{out:?}"))
}

#[test]
fn the_unit_exposure_stays_at_most_2_5() {
    let score = exposure("tutord.service", "tutord.service");
    assert!(score <= 2.5, "tutord.service: exposure {score} > 2.5");
}

#[test]
fn the_root_helpers_exposure_stays_at_most_4_0() {
    for (file, name) in [
        ("tutord-tuning.service", "tutord-tuning.service"),
        (
            "tutord-jetson-clocks.service",
            "tutord-jetson-clocks.service",
        ),
        ("tutord-nvpmodel@.service", "tutord-nvpmodel@0.service"),
        ("tutord-memory@.service", "tutord-memory@1024.service"),
    ] {
        let score = exposure(file, name);
        println!("{name}: exposure {score}");
        assert!(score <= 4.0, "{name}: exposure {score} > 4.0");
    }
}

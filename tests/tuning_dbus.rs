//! tutord's tuning on a private bus, outside any container: a bad `[tuning]` section (a CPU
//! that does not exist, protected units in the stop list) gives warnings and tutord serves;
//! the configured CPU is the affinity of every tutord thread; dry-run changes nothing and
//! says what it would do. (Stopping real units is checked under systemd-nspawn.)

mod common;

use std::time::Duration;

use common::*;

const BOOT: Duration = Duration::from_secs(10);

fn start(bus: &Bus, dir: &std::path::Path, tuning: &str) -> (Daemon, NotifySocket) {
    let cfg = dir.join("tutord.toml");
    std::fs::write(&cfg, format!("[tuning]\n{tuning}")).unwrap();
    let mut notify = NotifySocket::new();
    let d = Daemon::start_with_config(bus, Some(&notify.path), &cfg, &[]);
    assert!(
        notify.wait_for("READY=1", BOOT),
        "no READY=1: {:?}",
        notify.lines()
    );
    (d, notify)
}

fn allowed_cpus_of(pid: i32) -> Vec<String> {
    let mut lists: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .collect();
    lists.sort();
    lists.dedup();
    lists
}

fn my_last_cpu() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let last = list.rsplit([',', '-']).next().unwrap();
    last.parse().unwrap()
}

#[test]
fn bad_tuning_config_warns_and_the_configured_cpu_holds_every_thread() {
    let bus = Bus::open();
    let dir = tempfile::tempdir().unwrap();
    let cpu = my_last_cpu();
    let (mut d, _n) = start(
        &bus,
        dir.path(),
        &format!(
            "cpus = [{cpu}, 4000]\nstop_units = [\"dbus\", \"systemd-journald.service\", \"tutord\"]\n"
        ),
    );
    let out = tutorctl(&bus, &["tuning"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for want in [
        "CPU 4000 does not exist",
        "dbus.service is protected",
        "systemd-journald.service is protected",
        "tutord.service is protected",
        &format!("all on CPUs {cpu}"),
    ] {
        assert!(
            text.contains(want),
            "tutorctl tuning lacks '{want}':\n{text}"
        );
    }
    assert_eq!(allowed_cpus_of(d.pid()), [cpu.to_string()]);
    let (status, _) = d.signal_and_wait("TERM", BOOT).expect("tutord stops");
    assert!(status.success(), "{status:?}");
}

#[test]
fn dry_run_pins_nothing_and_says_what_it_would_do() {
    let bus = Bus::open();
    let dir = tempfile::tempdir().unwrap();
    let cpu = my_last_cpu();
    let before = allowed_cpus_of(std::process::id() as i32);
    let (d, _n) = start(
        &bus,
        dir.path(),
        &format!("mode = \"dry-run\"\ncpus = [{cpu}]\n"),
    );
    let out = tutorctl(&bus, &["tuning", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tuning_mode"], "dry-run");
    let would = json["tuning_would"].as_str().unwrap_or_default();
    assert!(
        would.contains(&format!("pin threads and the engine to CPUs {cpu}")),
        "{json:#}"
    );
    assert_eq!(allowed_cpus_of(d.pid()), before, "dry run must not pin");
}

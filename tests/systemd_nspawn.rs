//! Real-systemd tier: boots a Debian 13 (trixie, systemd 257) container (`systemd-nspawn
//! --boot`) with the freshly built `tutord`/`tutorctl` and the unit, D-Bus policy, sysusers,
//! tmpfiles and catalog files from `systemd/`, and checks tutord as a real service
//! (Type=notify start, STATUS, D-Bus, journal fields and catalog, clean stop). The work is
//! done by `tests/nspawn/rootfs.sh` (build and cache the rootfs once) and
//! `tests/nspawn/run.sh` (boot, check, power off).
//!
//! Skips (passes, with a message) when not root, when `systemd-nspawn` or `debootstrap` is
//! missing, or when `TUTORD_SKIP_NSPAWN=1`. Cache: `TUTORD_TEST_CACHE` (default
//! `/var/cache/tutord-test`).

mod common;

use common::{TUTORCTL, TUTORD, effective_uid, find_tool, script_path};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const SYSTEMD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
const NSPAWN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nspawn");

/// Written straight to the process's stderr so that it shows in a plain `cargo test`
/// (the test harness captures `println!`/`eprintln!` of passing tests).
fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "systemd_service_lifecycle: {msg}");
}

struct Output {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_script(script: &str, args: &[&Path], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(NSPAWN_DIR).join(script))
        .args(args)
        .env("PATH", script_path())
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    Output {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn systemd_service_lifecycle() {
    if std::env::var("TUTORD_SKIP_NSPAWN").as_deref() == Ok("1") {
        common::skip("systemd_service_lifecycle", "TUTORD_SKIP_NSPAWN=1");
        return;
    }
    if effective_uid() != Some(0) {
        common::skip(
            "systemd_service_lifecycle",
            "needs root (systemd-nspawn, debootstrap, cgroups)",
        );
        return;
    }
    for tool in ["systemd-nspawn", "debootstrap", "nsenter"] {
        if find_tool(tool).is_none() {
            common::skip(
                "systemd_service_lifecycle",
                &format!("{tool} not found (apt-get install systemd-container debootstrap)"),
            );
            return;
        }
    }

    let tutord = Path::new(TUTORD);
    let bindir = tutord.parent().expect("tutord has a parent directory");
    assert_eq!(
        Path::new(TUTORCTL).parent(),
        Some(bindir),
        "tutord and tutorctl are expected in the same directory"
    );
    let systemd_dir = Path::new(SYSTEMD_DIR);

    // 1. the rootfs (built once, then cached)
    let t = Instant::now();
    let rootfs = run_script("rootfs.sh", &[], &[]);
    println!(
        "---- rootfs.sh ({:.1} s) ----\n{}{}",
        t.elapsed().as_secs_f64(),
        rootfs.stderr,
        rootfs.stdout
    );
    assert!(
        rootfs.ok,
        "tests/nspawn/rootfs.sh failed (exit {:?}):\n{}",
        rootfs.code, rootfs.stderr
    );
    let root = PathBuf::from(
        rootfs
            .stdout
            .lines()
            .last()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .expect("rootfs.sh prints the rootfs path"),
    );

    // 2. boot, check, power off; the watchdog checks (tests/nspawn/watchdog.sh) run the
    // engine worker on the small model.
    let model = common::small_model();
    let t = Instant::now();
    let run = run_script(
        "run.sh",
        &[bindir, systemd_dir],
        &[
            ("TUTORD_NSPAWN_ROOT", &root),
            ("TUTORD_NSPAWN_MODEL", &model),
        ],
    );
    let elapsed = t.elapsed().as_secs_f64();
    println!(
        "---- run.sh ({elapsed:.1} s) ----\n{}{}",
        run.stdout, run.stderr
    );
    if run.code == Some(77) {
        // The machine cannot give the harness child cgroups of its own; starting nspawn
        // anyway would hand every process of the machine to the container's systemd.
        let why = run
            .stdout
            .lines()
            .find(|l| l.starts_with("SKIP:"))
            .unwrap_or("SKIP");
        common::skip("systemd_service_lifecycle", why);
        return;
    }
    if !run.ok {
        // the whole log is printed above; the panic message names what broke
        let fails: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("FAIL:"))
            .collect();
        panic!(
            "tests/nspawn/run.sh failed (exit {:?}; full output above):\n{}",
            run.code,
            fails.join("\n")
        );
    }
    notice(&format!(
        "tutord passed the systemd-nspawn checks in {elapsed:.1} s"
    ));
}

//! The Debian package in a real system: `packaging/build-deb.sh --fast` packages the binaries
//! this test run built (debug info stripped, uncompressed: seconds, not the minutes of a
//! release build), then `tests/nspawn/run.sh` in package mode boots the cached trixie
//! rootfs under `systemd-nspawn`, runs `apt-get install ./tutord_*.deb` in it and checks that
//! the maintainer scripts created the user and directories and enabled and started tutord
//! (READY, `tutorctl status`, `busctl ... Diagnostics`, the journal and its catalog, a clean
//! stop, tuning), as `tests/systemd_nspawn.rs` does for the bare files.
//!
//! Skips (passes, with a message) when not root, when `systemd-nspawn`, `debootstrap` or
//! `dpkg-deb` is missing, when `tutord-engine` was not built, with `TUTORD_SKIP_NSPAWN=1`, or
//! when run.sh exits 77 (no child cgroups of its own: it never starts nspawn from the
//! machine's cgroup).

mod common;

use common::{REPO, TUTORD, effective_uid, find_tool, script_path};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "package_deb: {msg}");
}

#[test]
fn deb_installs_and_starts_in_a_real_system() {
    if std::env::var("TUTORD_SKIP_NSPAWN").as_deref() == Ok("1") {
        common::skip(
            "deb_installs_and_starts_in_a_real_system",
            "TUTORD_SKIP_NSPAWN=1",
        );
        return;
    }
    if effective_uid() != Some(0) {
        common::skip(
            "deb_installs_and_starts_in_a_real_system",
            "needs root (systemd-nspawn, debootstrap, cgroups)",
        );
        return;
    }
    for tool in [
        "systemd-nspawn",
        "debootstrap",
        "nsenter",
        "dpkg-deb",
        "readelf",
    ] {
        if find_tool(tool).is_none() {
            common::skip(
                "deb_installs_and_starts_in_a_real_system",
                &format!("{tool} not found"),
            );
            return;
        }
    }
    let bindir = Path::new(TUTORD).parent().expect("tutord's directory");
    if !bindir.join("tutord-engine").is_file() {
        common::skip(
            "deb_installs_and_starts_in_a_real_system",
            "tutord-engine not built (cargo test --workspace builds it)",
        );
        return;
    }

    // 1. the package, from this build's binaries
    let out_dir = tempfile::tempdir().expect("temporary directory");
    let t = Instant::now();
    let build = Command::new("bash")
        .arg(Path::new(REPO).join("packaging/build-deb.sh"))
        .arg("--fast")
        .arg("--bindir")
        .arg(bindir)
        .arg("--out")
        .arg(out_dir.path())
        .env("PATH", script_path())
        .stdin(Stdio::null())
        .output()
        .expect("run packaging/build-deb.sh");
    let stderr = String::from_utf8_lossy(&build.stderr);
    println!(
        "---- build-deb.sh ({:.1} s) ----\n{stderr}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        build.status.success(),
        "packaging/build-deb.sh failed: {stderr}"
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&build.stdout).trim());
    assert!(deb.is_file(), "build-deb.sh printed {deb:?}, not a file");

    // The control fields a board install depends on.
    let info = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .args(["Package", "Depends", "Architecture"])
        .output()
        .expect("dpkg-deb --field");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Package: tutord"), "{info}");
    assert!(info.contains("dbus") && info.contains("systemd"), "{info}");
    let listing = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(&deb)
        .output()
        .expect("dpkg-deb --contents");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "./usr/bin/tutord",
        "./usr/bin/tutorctl",
        "./usr/bin/tutord-engine",
        "./usr/lib/systemd/system/tutord.service",
        "./usr/share/dbus-1/system.d/org.tutord.Tutor1.conf",
        "./usr/lib/sysusers.d/tutord.conf",
        "./usr/lib/tmpfiles.d/tutord.conf",
        "./usr/lib/systemd/catalog/tutord.catalog",
        "./usr/share/polkit-1/rules.d/50-tutord.rules",
        "./usr/lib/systemd/system/apt-daily.timer.d/50-tutord.conf",
        "./usr/lib/systemd/system/apt-daily-upgrade.timer.d/50-tutord.conf",
        "./etc/tutord/tutord.toml",
        "./usr/share/tutord/models.toml",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{listing}"
        );
    }

    // 2. apt install in a booted container, then the service checks
    let t = Instant::now();
    let run = Command::new("bash")
        .arg(Path::new(REPO).join("tests/nspawn/run.sh"))
        .arg(bindir)
        .arg(Path::new(REPO).join("systemd"))
        .env("TUTORD_NSPAWN_DEB", &deb)
        .env("PATH", script_path())
        .stdin(Stdio::null())
        .output()
        .expect("run tests/nspawn/run.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!(
        "---- run.sh, package mode ({:.1} s) ----\n{stdout}{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&run.stderr)
    );
    if run.status.code() == Some(77) {
        let why = stdout
            .lines()
            .find(|l| l.starts_with("SKIP:"))
            .unwrap_or("SKIP");
        common::skip("deb_installs_and_starts_in_a_real_system", why);
        return;
    }
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL:")).collect();
    assert!(
        run.status.success(),
        "tests/nspawn/run.sh (package mode) failed (exit {:?}; output above):\n{}",
        run.status.code(),
        fails.join("\n")
    );
    for expected in [
        "ok: apt-get install ./tutord.deb",
        "ok: the package enabled tutord.service",
        "ok: the package started tutord",
        "ok: tutorctl status after install",
    ] {
        assert!(
            stdout.contains(expected),
            "missing \"{expected}\" in:\n{stdout}"
        );
    }
    notice(&format!(
        "the package installed, started and passed the nspawn checks in {:.1} s",
        t.elapsed().as_secs_f64()
    ));
}

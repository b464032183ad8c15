//! The project's D-Bus policy, enforced by a real dbus-daemon configured like Debian's system
//! bus: root may own and call; a caller that is neither root nor in group `tutor` is refused
//! everything, property reads and introspection included; group `tutor` may call.
//!
//! Needs root (to start callers under other uids with setpriv); skips with a message otherwise.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // `Uid: real effective saved fs` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `setpriv` running a command as `uid` (its own gid) with exactly these supplementary groups.
fn as_user(uid: u32, groups: &[u32]) -> Command {
    let groups = match groups {
        [] => "--clear-groups".to_string(),
        g => format!(
            "--groups={}",
            g.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        ),
    };
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(groups);
    cmd
}

/// tutorctl as another user, with the given supplementary groups.
fn tutorctl_as(uid: u32, groups: &[u32], bus: &Bus, args: &[&str]) -> std::process::Output {
    as_user(uid, groups)
        .arg(TUTORCTL)
        .arg("--bus")
        .arg(&bus.address)
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

fn tutor_gid() -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups
        .lines()
        .find(|l| l.starts_with("tutor:"))
        .and_then(|l| l.split(':').nth(2))
        .and_then(|g| g.parse().ok())
}

#[test]
fn policy_admits_root_and_group_tutor_and_refuses_others() {
    if !is_root() {
        skip("dbus_policy", "needs root to run callers under other uids");
        return;
    }
    // The binaries must be reachable by `nobody` for the bus, not the file system, to be
    // what refuses it.
    let bin_dir = std::path::Path::new(TUTORCTL).parent().unwrap();
    let probe = tutorctl_as(NOBODY, &[], &Bus::open(), &["--help"]);
    assert!(
        probe.status.success(),
        "user nobody cannot run {}: make the path world-readable ({})",
        bin_dir.display(),
        String::from_utf8_lossy(&probe.stderr)
    );

    let bus = Bus::system_like();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(10)),
        "root may own org.tutord.Tutor1: {}",
        daemon.stderr()
    );

    // Root may call.
    let out = tutorctl(&bus, &["status"]);
    assert!(out.status.success(), "root: {out:?}");

    // nobody, without group tutor: refused, with the bus's AccessDenied.
    for args in [
        &["status"][..],
        &["diagnostics", "--json"],
        &["log-level", "debug"],
    ] {
        let out = tutorctl_as(NOBODY, &[], &bus, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "nobody {args:?}: {stderr}");
        assert!(
            stderr.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "nobody {args:?}: {stderr}"
        );
    }
    // Nor may nobody own the name (a rogue tutord).
    let state = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = empty_config(state.path());
    let rogue = as_user(NOBODY, &[])
        .arg(TUTORD)
        .arg("--bus")
        .arg(&bus.address)
        .arg("--state-dir")
        .arg(state.path().join("s"))
        .arg("--config")
        .arg(&cfg)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&rogue.stderr);
    assert_eq!(rogue.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains("cannot own org.tutord.Tutor1"), "{stderr}");

    // Group tutor may call (the group is created by the test setup, as sysusers does on the
    // board).
    match tutor_gid() {
        Some(gid) => {
            let out = tutorctl_as(NOBODY, &[gid], &bus, &["status"]);
            assert!(out.status.success(), "group tutor: {out:?}");
            assert!(String::from_utf8_lossy(&out.stdout).contains("State: degraded"));
        }
        None => panic!(
            "group `tutor` does not exist on this machine: the test setup (scripts/setup-test.sh) \
             creates it with `groupadd --system tutor`"
        ),
    }
}

#[test]
fn only_root_or_the_admin_group_may_change_the_system() {
    if !is_root() {
        skip("dbus_policy", "needs root to run callers under other uids");
        return;
    }
    let gid = tutor_gid().expect("group `tutor` (scripts/test.sh creates it)");
    let bus = Bus::system_like();
    for (admin_group, admitted) in [("", false), ("tutor", true)] {
        let mut notify = NotifySocket::new();
        let state = tempfile::tempdir().unwrap();
        let cfg = state.path().join("tutord.toml");
        std::fs::write(&cfg, format!("[daemon]\nadmin_group = \"{admin_group}\"\n")).unwrap();
        let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
        assert!(
            notify.wait_for("READY=1", Duration::from_secs(20)),
            "{}",
            daemon.stderr()
        );
        // The UI's group may use the tutor...
        let out = tutorctl_as(NOBODY, &[gid], &bus, &["status"]);
        assert!(out.status.success(), "group tutor: {out:?}");
        // ...but changes the system only when it is the admin group; root always may.
        for args in [&["log-level", "debug"][..], &["bench", "--rerun"]] {
            let out = tutorctl_as(NOBODY, &[gid], &bus, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if admitted {
                assert!(out.status.success(), "admin group {args:?}: {stderr}");
            } else {
                assert!(
                    stderr.contains("org.tutord.Tutor1.Error.AccessDenied")
                        && stderr.contains(&format!("uid {NOBODY}")),
                    "{args:?} as nobody in group tutor: {stderr}"
                );
            }
            let out = tutorctl(&bus, args);
            assert!(out.status.success(), "root {args:?}: {out:?}");
        }
        daemon.signal_and_wait("TERM", Duration::from_secs(10));
    }
}

/// `tutorctl watch` as another user, started now; its output is read when it ends.
fn watch_as(uid: u32, groups: &[u32], bus: &Bus, seconds: u64) -> std::process::Child {
    as_user(uid, groups)
        .arg(TUTORCTL)
        .arg("--bus")
        .arg(&bus.address)
        .args(["watch", "--seconds", &seconds.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)")
}

#[test]
fn only_root_tutord_and_group_tutor_receive_what_the_child_says_and_hears() {
    if !is_root() {
        skip(
            "dbus_policy",
            "needs root to run listeners under other uids",
        );
        return;
    }
    let gid = tutor_gid().expect("group `tutor` (scripts/test.sh creates it)");
    small_model();
    engine_binary();
    let bus = Bus::system_like();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(dir.path(), 16, "");
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(90)),
        "{}",
        daemon.stderr()
    );
    // Both subscribe with a match rule on everything tutord sends; only the policy differs.
    let outsider = watch_as(NOBODY, &[], &bus, 15);
    let member = watch_as(NOBODY, &[gid], &bus, 15);
    std::thread::sleep(Duration::from_secs(2));
    let out = tutorctl(&bus, &["ask", "--new-session", "Name a colour."]);
    assert!(out.status.success(), "root asks: {out:?}");
    let outsider = outsider.wait_with_output().unwrap();
    let member = member.wait_with_output().unwrap();
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    assert!(member.status.success(), "group tutor: {member:?}");
    assert!(
        text(&member).contains("Token ") && text(&member).contains("AnswerFinished "),
        "group tutor receives the answer: {}",
        text(&member)
    );
    assert!(
        outsider.status.success(),
        "the outsider's watch: {outsider:?}"
    );
    assert_eq!(
        text(&outsider),
        "",
        "an unrelated uid received the tutor's signals"
    );
    daemon.signal_and_wait("TERM", Duration::from_secs(10));
}

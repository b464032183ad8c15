//! The real `tutord` on a real private dbus-daemon: properties, methods, named errors,
//! tutorctl, the sd_notify protocol and a clean SIGTERM.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use zbus::{OwnedVariant, Variant};

const BOOT: Duration = Duration::from_secs(10);

#[test]
fn boots_serves_and_stops_cleanly() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(
        notify.wait_for("READY=1", BOOT),
        "no READY=1; got {:?}; stderr: {}",
        notify.lines(),
        daemon.stderr()
    );
    // A STATUS= line for the boot steps, and READY carries the final status.
    let lines = notify.lines();
    assert!(
        lines.contains(&"STATUS=Opening the database".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"STATUS=Connecting to D-Bus".to_string()),
        "{lines:?}"
    );
    // No model here (none fetched): booted, but "degraded", and the status line says why.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=Degraded: no language model: ")),
        "{lines:?}"
    );
    let status_pos = lines
        .iter()
        .position(|l| l == "STATUS=Opening the database")
        .unwrap();
    let ready_pos = lines.iter().position(|l| l == "READY=1").unwrap();
    assert!(status_pos < ready_pos);

    rt().block_on(async {
        let conn = connect_to(&bus).await;
        assert_eq!(text(&property(&conn, "State").await), "degraded");
        let status = text(&property(&conn, "StatusText").await);
        assert!(
            status.starts_with("Degraded: no language model: "),
            "{status}"
        );
        let last = text(&property(&conn, "LastError").await);
        assert!(last.starts_with("no language model: "), "{last}");
        assert_eq!(
            text(&property(&conn, "Version").await),
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text(&property(&conn, "Board").await), "generic");
        // `[llm] model = "auto"` and no catalog (not installed here): the plan says so.
        assert_eq!(
            text(&property(&conn, "LastError").await),
            "no language model: the planner chose no model: no catalog model can run on this \
             board (is the catalog installed?)"
        );
        assert!(matches!(&*property(&conn, "Progress").await, Variant::F64(p) if *p == 1.0));

        let reply = conn
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.tutord.Tutor1"),
                "Diagnostics",
                &(),
            )
            .await
            .unwrap();
        let diag: HashMap<String, OwnedVariant> = reply.body().deserialize().unwrap();
        assert_eq!(text(&diag["state"]), "degraded");
        assert_eq!(text(&diag["board"]), "generic");
        assert!(matches!(&*diag["pid"], Variant::U64(p) if *p == daemon.child.id() as u64));
        assert!(matches!(&*diag["schema_version"], Variant::U64(v) if *v >= 1));
        assert!(
            text(&diag["database"]).starts_with(&daemon.state_dir.path().display().to_string())
        );

        // A bad argument gets a named error that says what is wrong.
        let err = conn
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.tutord.Tutor1"),
                "SetLogLevel",
                &("loud",),
            )
            .await
            .unwrap_err();
        match err {
            zbus::Error::MethodError(name, Some(msg), _) => {
                assert_eq!(name.as_str(), "org.tutord.Tutor1.Error.InvalidArgument");
                assert!(msg.contains("'loud'"), "{msg}");
            }
            other => panic!("expected a named error, got {other:?}"),
        }
        // A wrong signature is refused by the bus layer, and the daemon lives on.
        let err = conn
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.tutord.Tutor1"),
                "SetLogLevel",
                &(42u32,),
            )
            .await
            .unwrap_err();
        let invalid_args = match &err {
            zbus::Error::FDO(e) => matches!(**e, zbus::fdo::Error::InvalidArgs(_)),
            zbus::Error::MethodError(n, _, _) => {
                n.as_str() == "org.freedesktop.DBus.Error.InvalidArgs"
            }
            _ => false,
        };
        assert!(invalid_args, "{err:?}");
        assert_eq!(text(&property(&conn, "State").await), "degraded");
    });

    let out = tutorctl(&bus, &["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("     State: degraded\n"), "{stdout}");
    assert!(stdout.contains("     Board: generic\n"), "{stdout}");

    let out = tutorctl(&bus, &["diagnostics", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "degraded");
    assert_eq!(json["pid"], daemon.child.id());

    let out = tutorctl(&bus, &["log-level", "debug"]);
    assert!(out.status.success(), "{out:?}");
    let out = tutorctl(&bus, &["diagnostics", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["log_level"], "debug");

    let out = tutorctl(&bus, &["log-level", "loud"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "tutorctl: org.tutord.Tutor1.Error.InvalidArgument: level 'loud' is not one of error, warn, info, debug, trace"
    );

    let t = Instant::now();
    let (status, stderr) = daemon
        .signal_and_wait("TERM", Duration::from_secs(2))
        .expect("tutord did not exit within 2 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(1)),
        "{:?}",
        notify.lines()
    );
    assert!(stderr.contains("stopping on SIGTERM"), "{stderr}");
    assert!(stderr.contains("tutord stopped"), "{stderr}");
}

#[test]
fn sigint_also_stops_cleanly_and_a_restart_sees_it() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(notify.wait_for("READY=1", BOOT));
    let (status, _) = daemon
        .signal_and_wait("INT", Duration::from_secs(2))
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let db = daemon.state_dir.path().join("tutord.db");
    let conn = rusqlite_free_check(&db);
    assert_eq!(conn, (1, 1));
}

/// (boots, clean stops) read with the sqlite3-free route: tutord's own diagnostics on a new
/// start would change the count, so read the file through a second tutord start instead.
fn rusqlite_free_check(db: &std::path::Path) -> (i64, i64) {
    let bytes = std::fs::read(db).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"));
    // Start again on the same state dir and ask: previous_boot_unclean must be false.
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut cmd = std::process::Command::new(TUTORD);
    let state = db.parent().unwrap();
    let mut child = cmd
        .arg("--bus")
        .arg(&bus.address)
        .arg("--state-dir")
        .arg(state)
        .arg("--config")
        .arg(empty_config(state))
        .env("NOTIFY_SOCKET", &notify.path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(notify.wait_for("READY=1", BOOT));
    let out = tutorctl(&bus, &["diagnostics", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(json["previous_boot_unclean"], false);
    (
        json["boot_id"].as_i64().unwrap() - 1,
        json["boots_total"].as_i64().unwrap() - 1,
    )
}

#[test]
fn kill_9_is_noticed_on_the_next_start() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(notify.wait_for("READY=1", BOOT));
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let state = daemon.state_dir.path().to_path_buf();
    let mut notify2 = NotifySocket::new();
    let mut child = std::process::Command::new(TUTORD)
        .arg("--bus")
        .arg(&bus.address)
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(empty_config(&state))
        .env("NOTIFY_SOCKET", &notify2.path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        notify2.wait_for("READY=1", BOOT),
        "second start (name freed by kill -9)"
    );
    let out = tutorctl(&bus, &["diagnostics", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(json["previous_boot_unclean"], true);
    assert_eq!(json["boots_total"], 2);
}

#[test]
fn watchdog_is_pinged_at_half_the_interval() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let _daemon = Daemon::start(&bus, Some(&notify.path), &[("WATCHDOG_USEC", "400000")]);
    assert!(notify.wait_for("READY=1", BOOT));
    let start = Instant::now();
    assert!(
        notify.wait_for("WATCHDOG=1", Duration::from_secs(2)),
        "{:?}",
        notify.lines()
    );
    // Two more pings within ~0.4 s (interval 0.2 s).
    let before = notify.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    std::thread::sleep(Duration::from_millis(650));
    notify.wait_for("NOT-A-LINE", Duration::from_millis(50));
    let after = notify.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    assert!(
        after >= before + 2,
        "pings: {before} then {after} in {:?}",
        start.elapsed()
    );
}

#[test]
fn no_watchdog_pings_for_another_pid() {
    // WATCHDOG_PID names another process: the watchdog is not ours.
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let _daemon = Daemon::start(
        &bus,
        Some(&notify.path),
        &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")],
    );
    assert!(notify.wait_for("READY=1", BOOT));
    assert!(!notify.wait_for("WATCHDOG=1", Duration::from_millis(500)));
}

#[test]
fn runs_quietly_without_notify_socket() {
    let bus = Bus::open();
    let mut daemon = Daemon::start(&bus, None, &[]);
    // No model here: booted is "degraded" (never "ready" without one).
    wait_for(BOOT, "State=degraded", || {
        let out = tutorctl(&bus, &["status"]);
        String::from_utf8_lossy(&out.stdout).contains("State: degraded")
    });
    let (status, stderr) = daemon
        .signal_and_wait("TERM", Duration::from_secs(2))
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!stderr.contains("notify"), "{stderr}");
}

#[test]
fn tutorctl_says_when_tutord_is_not_running() {
    let bus = Bus::open();
    let out = tutorctl(&bus, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "tutorctl: tutord is not running: nobody owns org.tutord.Tutor1 on the bus at {}\n",
            bus.address
        )
    );
    let out = std::process::Command::new(TUTORCTL)
        .args(["--bus", "unix:path=/nonexistent/bus", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("tutorctl: cannot connect to the bus at unix:path=/nonexistent/bus"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_second_tutord_cannot_take_the_name() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let _first = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(notify.wait_for("READY=1", BOOT));
    let mut second = Daemon::start(&bus, None, &[]);
    let status = second
        .wait_exit(Duration::from_secs(5))
        .expect("the second tutord must exit, not wait for the name");
    assert_eq!(status.code(), Some(69), "EX_UNAVAILABLE");
    let stderr = second.stderr();
    assert!(stderr.contains("cannot own org.tutord.Tutor1"), "{stderr}");
}

#[test]
fn interface_xml_matches_the_committed_contract() {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let _daemon = Daemon::start(&bus, Some(&notify.path), &[]);
    assert!(notify.wait_for("READY=1", BOOT));
    let xml = rt().block_on(async {
        let conn = connect_to(&bus).await;
        let reply = conn
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .unwrap();
        reply.body().deserialize::<String>().unwrap()
    });
    let start = xml
        .find("  <interface name=\"org.tutord.Tutor1\">")
        .expect("interface");
    let end = xml[start..].find("</interface>").unwrap() + start + "</interface>".len();
    let live = format!(
        "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<!-- org.tutord.Tutor1: generated from src/bus/ by introspecting tutord; do not edit.\n     Regenerate with: TUTORD_BLESS=1 cargo test --test dbus_service interface_xml -->\n<node name=\"/org/tutord/Tutor1\">\n{}\n</node>\n",
        &xml[start..end]
    );
    let path = std::path::Path::new(REPO).join("docs/dbus/org.tutord.Tutor1.xml");
    if std::env::var_os("TUTORD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &live).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == live,
        "{} differs from what tutord introspects; if the change is meant, run \
         TUTORD_BLESS=1 cargo test --test dbus_service interface_xml\n--- live:\n{live}",
        path.display()
    );
}

//! The real `tutord` binary given bad configuration: exit status 78 (EX_CONFIG) and one
//! message naming the file (or variable), the key and the reason; it never reaches the bus.

mod common;

use std::process::Command;

use common::*;

fn run_tutord(config: &std::path::Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(TUTORD);
    // A bus that does not exist: a config error must stop tutord before it gets there.
    cmd.args(["--bus", "unix:path=/nonexistent/bus", "--config"])
        .arg(config)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_key_exits_78_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(&cfg, "[daemon]\nlog_levle = \"debug\"\n").unwrap();
    let (code, stderr) = run_tutord(&cfg, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "invalid configuration: {}: unknown key `daemon.log_levle`",
            cfg.display()
        )),
        "{stderr}"
    );
}

#[test]
fn wrong_type_and_out_of_range_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(&cfg, "[store]\nbusy_timeout_ms = \"long\"\n").unwrap();
    let (code, stderr) = run_tutord(&cfg, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("store.busy_timeout_ms"), "{stderr}");

    std::fs::write(&cfg, "[store]\nbusy_timeout_ms = 70000\n").unwrap();
    let (code, stderr) = run_tutord(&cfg, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("key `store.busy_timeout_ms`: 70000 is out of range 1..=60000"),
        "{stderr}"
    );
}

#[test]
fn bad_dropin_and_bad_environment_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(&cfg, "").unwrap();
    let dropins = dir.path().join("tutord.toml.d");
    std::fs::create_dir(&dropins).unwrap();
    std::fs::write(
        dropins.join("10-ok.toml"),
        "[daemon]\nlog_level = \"debug\"\n",
    )
    .unwrap();
    std::fs::write(
        dropins.join("20-bad.toml"),
        "[daemon]\nlog_level = \"chatty\"\n",
    )
    .unwrap();
    let (code, stderr) = run_tutord(&cfg, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("20-bad.toml"), "{stderr}");
    assert!(stderr.contains("chatty"), "{stderr}");

    std::fs::remove_file(dropins.join("20-bad.toml")).unwrap();
    let (code, stderr) = run_tutord(&cfg, &[("TUTORD_DAEMON__STATE_DIR", "relative/dir")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("environment (TUTORD_DAEMON__STATE_DIR): key `daemon.state_dir`"),
        "{stderr}"
    );
}

#[test]
fn missing_explicit_config_exits_78() {
    let (code, stderr) = run_tutord(std::path::Path::new("/nonexistent/tutord.toml"), &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/tutord.toml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn valid_config_gets_past_config_to_the_bus() {
    // Proves the 78s above are config errors: with a good file tutord fails later, on the
    // missing bus, with EX_UNAVAILABLE.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let (code, stderr) = run_tutord(&cfg, &[]);
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the bus at unix:path=/nonexistent/bus"),
        "{stderr}"
    );
}

#[test]
fn relative_state_dir_flag_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = empty_config(dir.path());
    let out = Command::new(TUTORD)
        .args(["--bus", "unix:path=/nonexistent/bus", "--state-dir", "rel"])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--state-dir rel is not an absolute path")
    );
}

use super::*;
use std::fs;

fn sources(dir: &Path, env: &[(&str, &str)]) -> Sources {
    Sources {
        main: dir.join("tutord.toml"),
        main_required: false,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn defaults_without_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = load(&sources(dir.path(), &[])).unwrap();
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.daemon.state_dir, PathBuf::from("/var/lib/tutord"));
    assert_eq!(cfg.store.busy_timeout_ms, 5000);
}

#[test]
fn unknown_key_names_file_and_key() {
    let err = parse_toml(
        "/etc/tutord/tutord.toml",
        "[daemon]\nlog_levl = \"debug\"\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/tutord/tutord.toml: unknown key `daemon.log_levl` (see /usr/share/doc/tutord/tutord.toml for the keys)"
    );
}

#[test]
fn unknown_section_is_refused() {
    let err = parse_toml("x.toml", "[deamon]\nlog_level = \"debug\"\n").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "deamon.log_level"));
}

#[test]
fn wrong_type_names_key_and_reason() {
    let err = parse_toml("x.toml", "[store]\nbusy_timeout_ms = \"soon\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("x.toml: "), "{msg}");
    assert!(msg.contains("store.busy_timeout_ms"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn bad_enum_value_lists_choices() {
    let err = parse_toml("x.toml", "[daemon]\nlog_level = \"loud\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("loud"), "{msg}");
    assert!(msg.contains("daemon.log_level"), "{msg}");
}

#[test]
fn out_of_range_names_key_and_range() {
    let err = parse_toml("x.toml", "[store]\nbusy_timeout_ms = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `store.busy_timeout_ms`: 0 is out of range 1..=60000"
    );
}

#[test]
fn relative_state_dir_is_refused() {
    let err = parse_toml("x.toml", "[daemon]\nstate_dir = \"var/lib\"\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `daemon.state_dir`: var/lib is not an absolute path"
    );
}

#[test]
fn history_retention_defaults_zero_and_range() {
    let cfg = parse_toml("x.toml", "").unwrap();
    assert_eq!(
        cfg.history,
        HistoryConfig {
            keep_days: 365,
            keep_sessions: 1000
        }
    );
    let cfg = parse_toml("x.toml", "[history]\nkeep_days = 0\nkeep_sessions = 0\n").unwrap();
    assert!(cfg.history.keeps_everything());
    let err = parse_toml("x.toml", "[history]\nkeep_days = 36501\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `history.keep_days`: 36501 is out of range 0..=36500 (0 = keep forever)"
    );
    let err = parse_toml("x.toml", "[history]\nkeep_sessions = -1\n").unwrap_err();
    assert!(err.to_string().contains("history.keep_sessions"), "{err}");
    let err = parse_toml("x.toml", "[history]\nkeep_sessions = 1000001\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `history.keep_sessions`: 1000001 is out of range 0..=1000000 (0 = keep forever)"
    );
}

#[test]
fn broken_toml_is_reported_with_file() {
    let err = parse_toml("x.toml", "[store\n").unwrap_err();
    assert!(
        err.to_string().starts_with("x.toml: not valid TOML"),
        "{err}"
    );
}

#[test]
fn dropins_apply_in_name_order_over_main_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("tutord.toml"),
        "[store]\nbusy_timeout_ms = 100\n",
    )
    .unwrap();
    let d = dir.path().join("tutord.toml.d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("20-b.toml"), "[store]\nbusy_timeout_ms = 300\n").unwrap();
    fs::write(
        d.join("10-a.toml"),
        "[store]\nbusy_timeout_ms = 200\n[daemon]\nlog_level = \"debug\"\n",
    )
    .unwrap();
    fs::write(d.join("30-ignored.conf"), "this is not toml").unwrap();
    let cfg = load(&sources(dir.path(), &[])).unwrap();
    assert_eq!(cfg.store.busy_timeout_ms, 300);
    assert_eq!(cfg.daemon.log_level, LogLevel::Debug);
}

#[test]
fn bad_dropin_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("tutord.toml.d");
    fs::create_dir(&d).unwrap();
    fs::write(
        d.join("50-bad.toml"),
        "[store]\nbusy_timeout_ms = 99999999\n",
    )
    .unwrap();
    let err = load(&sources(dir.path(), &[])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: key `store.busy_timeout_ms`: 99999999 is out of range 1..=60000",
            d.join("50-bad.toml").display()
        )
    );
}

#[test]
fn environment_overrides_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("tutord.toml"),
        "[store]\nbusy_timeout_ms = 100\n",
    )
    .unwrap();
    let cfg = load(&sources(
        dir.path(),
        &[
            ("TUTORD_STORE__BUSY_TIMEOUT_MS", "250"),
            ("TUTORD_DAEMON__LOG_LEVEL", "trace"),
            // Not configuration: no section separator.
            ("TUTORD_TEST_CACHE", "/tmp/whatever"),
        ],
    ))
    .unwrap();
    assert_eq!(cfg.store.busy_timeout_ms, 250);
    assert_eq!(cfg.daemon.log_level, LogLevel::Trace);
}

#[test]
fn bad_environment_value_names_variable() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&sources(
        dir.path(),
        &[("TUTORD_STORE__BUSY_TIMEOUT_MS", "0")],
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment (TUTORD_STORE__BUSY_TIMEOUT_MS): key `store.busy_timeout_ms`: 0 is out of range 1..=60000"
    );
    let err = load(&sources(dir.path(), &[("TUTORD_STORE__NOPE", "1")])).unwrap_err();
    assert!(
        matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "store.nope"),
        "{err}"
    );
}

#[test]
fn required_main_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sources(dir.path(), &[]);
    s.main_required = true;
    let err = load(&s).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(
        err.to_string().contains("tutord.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn shipped_config_file_equals_defaults() {
    // config/tutord.toml documents every key with its default: it must parse to the defaults
    // and name every known key, so the documentation cannot drift from the code.
    let text = include_str!("../../config/tutord.toml");
    let cfg = parse_toml("config/tutord.toml", &uncomment(text)).unwrap();
    assert_eq!(cfg, Config::default());
    let table: toml::Table = uncomment(text).parse().unwrap();
    let mut keys = Vec::new();
    flatten_keys("", &toml::Value::Table(table), &mut keys);
    keys.sort();
    let mut known = known_keys();
    known.sort();
    assert_eq!(keys, known);
}

/// The shipped file has its settings commented out (`#key = value`); turn them back on.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[') || rest.contains(" = ") && !rest.starts_with(' ') =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn first_token_target_is_half_the_first_audio_budget_unless_set() {
    let cfg = parse_toml("x.toml", "[plan]\ntarget_first_audio_seconds = 6.0\n").unwrap();
    assert_eq!(cfg.plan.first_token_target(), 3.0);
    assert_eq!(Config::default().plan.first_token_target(), 2.0);
    let cfg = parse_toml(
        "x.toml",
        "[plan]\ntarget_first_audio_seconds = 6.0\ntarget_first_token_seconds = 1.0\n",
    )
    .unwrap();
    assert_eq!(cfg.plan.first_token_target(), 1.0);
    let err = parse_toml("x.toml", "[plan]\ntarget_first_audio_seconds = 0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `plan.target_first_audio_seconds`: 0 is out of range 0.1..=300"
    );
}

#[test]
fn a_first_token_target_out_of_range_is_named() {
    let err = parse_toml("x.toml", "[plan]\ntarget_first_token_seconds = 0.01\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: key `plan.target_first_token_seconds`: 0.01 is out of range 0.05..=120 (or 0: \
         half of the first-audio target)"
    );
}

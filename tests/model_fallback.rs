//! Never silently absent (issue 16), on a real bus with the real small model: a base model
//! (a GGUF without a chat template) answers with a warning; a pinned model that does not
//! load gives way to the plan's choice, and with `[llm] fallback = false` the daemon says it
//! is "degraded", never "ready"; `Plan()` marks as chosen only the model that is loaded.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use zbus::Variant;

const BOOT: Duration = Duration::from_secs(120);

/// The small model's folder and catalog, planned automatically, then `llm` (more `[llm]`
/// keys). The folder holds only the small model, so the plan's choice is the small model.
fn config(dir: &Path, llm: &str) -> std::path::PathBuf {
    let models = models_with_only_the_small_model(dir);
    let cfg = dir.join("tutord.toml");
    std::fs::write(
        &cfg,
        format!(
            "[llm]\nmax_tokens = 48\ntemperature = 0.0\n{llm}\n\
             [models]\ndir = \"{}\"\ncatalog = \"{REPO}/config/models.toml\"\n",
            models.display()
        ),
    )
    .unwrap();
    cfg
}

async fn plan(conn: &zbus::Connection) -> (Dict, Vec<Dict>) {
    tutor_call(conn, "Plan", &())
        .await
        .unwrap()
        .body()
        .deserialize()
        .unwrap()
}

/// The candidates marked chosen in `Plan()`.
fn chosen(candidates: &[Dict]) -> Vec<String> {
    candidates
        .iter()
        .filter(|c| flag(c, "chosen"))
        .map(|c| text(&c["model"]))
        .collect()
}

/// Starts tutord with `cfg` on a private bus (the harness's quick boot benchmark) and waits
/// for READY; its notify socket (the STATUS= lines) and stderr log are returned with it.
fn boot(cfg: &Path) -> (Bus, Daemon, NotifySocket, StderrLog) {
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::start_with_config(&bus, Some(&notify.path), cfg, &[]);
    let log = daemon.drain_stderr();
    assert!(notify.wait_for("READY=1", BOOT), "{}", log.text());
    (bus, daemon, notify, log)
}

#[test]
fn a_base_model_without_a_chat_template_answers_and_is_planned_from_its_header() {
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("smollm2-base.gguf");
    let header = tutord_protocol::gguf::write::copy_with(
        &small_model(),
        &base,
        |g: &mut tutord_protocol::gguf::meta::Gguf| {
            assert!(
                g.remove("tokenizer.chat_template"),
                "the small model has a template"
            );
        },
    )
    .unwrap();
    assert!(header.get("tokenizer.chat_template").is_none());
    let cfg = config(dir.path(), &format!("model = \"{}\"", base.display()));
    let (bus, daemon, _notify, log) = boot(&cfg);
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        assert_eq!(text(&property(&conn, "State").await), "ready");
        let (turn, stats) = ask_and_wait(&conn, "What is the capital of France?", true, BOOT).await;
        assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
        let answer = text(&stats["answer"]);
        assert!(!answer.trim().is_empty(), "{stats:?}");
        // The plain format's speaker lines never leak into the answer.
        assert!(!answer.contains("Student:"), "{answer:?}");
        let d = diagnostics(&conn).await;
        assert_eq!(text(&d["chat_format"]), "plain");
        assert!(
            text(&d["model_warning"]).contains("no chat template"),
            "{d:?}"
        );
        // Given by path, planned from its GGUF header, marked as the one loaded.
        let (_, candidates) = plan(&conn).await;
        let own = candidates
            .iter()
            .find(|c| text(&c["model"]) == base.display().to_string())
            .unwrap_or_else(|| panic!("{} is not in Plan(): {candidates:?}", base.display()));
        assert!(number(own, "tokens_per_second") > 0.0, "{own:?}");
        assert_eq!(chosen(&candidates), vec![base.display().to_string()]);
    });
    let text = log.text();
    assert!(
        text.contains("WARN") && text.contains("no chat template"),
        "no warning in the log:\n{text}"
    );
    let out = tutorctl(&bus, &["plan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("smollm2-base.gguf"), "{stdout}");
    drop(daemon);
}

#[test]
fn a_pinned_model_that_does_not_load_gives_way_to_the_plan_and_says_why() {
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lesson-notes.gguf");
    std::fs::write(&bad, "these are notes, not a model\n".repeat(100)).unwrap();
    let cfg = config(dir.path(), &format!("model = \"{}\"", bad.display()));
    let (bus, daemon, _notify, log) = boot(&cfg);
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        assert_eq!(text(&property(&conn, "State").await), "ready");
        let last = text(&property(&conn, "LastError").await);
        assert!(
            last.contains("lesson-notes.gguf") && last.contains(SMALL),
            "LastError does not say what failed and what loaded: {last:?}"
        );
        assert!(
            text(&property(&conn, "Model").await).ends_with(SMALL_FILE),
            "the plan's model is not loaded"
        );
        let (_, candidates) = plan(&conn).await;
        assert_eq!(chosen(&candidates), vec![SMALL.to_string()]);
        let (turn, stats) = ask_and_wait(&conn, "Name a colour.", true, BOOT).await;
        assert!(flag(&stats, "ok"), "{turn}: {stats:?}");
    });
    assert!(
        log.text().contains("falling back to the plan's choice"),
        "{}",
        log.text()
    );
    drop(daemon);
}

#[test]
fn without_fallback_a_failed_model_leaves_the_tutor_degraded_never_ready() {
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lesson-notes.gguf");
    std::fs::write(&bad, "these are notes, not a model\n".repeat(100)).unwrap();
    let cfg = config(
        dir.path(),
        &format!("model = \"{}\"\nfallback = false", bad.display()),
    );
    let (bus, daemon, notify, _log) = boot(&cfg);
    let status = notify
        .lines()
        .into_iter()
        .rfind(|l| l.starts_with("STATUS="))
        .unwrap_or_default();
    assert!(
        status.starts_with("STATUS=Degraded: no language model:") && status.contains("GGUF"),
        "the systemd status line does not say why: {status:?}"
    );
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        assert_eq!(text(&property(&conn, "State").await), "degraded");
        let last = text(&property(&conn, "LastError").await);
        assert!(last.contains("GGUF"), "LastError: {last:?}");
        assert!(
            text(&property(&conn, "StatusText").await).starts_with("Degraded"),
            "StatusText"
        );
        assert_eq!(text(&property(&conn, "Model").await), "");
        let (_, candidates) = plan(&conn).await;
        assert!(chosen(&candidates).is_empty(), "{candidates:?}");
        let mut opts = std::collections::HashMap::new();
        opts.insert("new_session", Variant::from(true));
        let err = tutor_call(&conn, "Ask", &("Name a colour.", opts))
            .await
            .unwrap_err();
        assert_eq!(
            error_name(&err).as_deref(),
            Some("org.tutord.Tutor1.Error.NotReady"),
            "{err:?}"
        );
    });
    let out = tutorctl(&bus, &["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("     State: degraded\n"), "{stdout}");
    drop(daemon);
}

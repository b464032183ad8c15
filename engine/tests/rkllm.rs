//! The RKLLM backend against a stand-in runtime: `tests/rkllm_standin/rkllm_standin.c`, built
//! here with the system C compiler into a `librkllmrt.so` of the same ABI (the real runtime is
//! aarch64-only and closed). Streaming, abort, return codes, keep_history, placement, and the
//! refusals of a wrong runtime version, an old NPU driver, a missing or foreign library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tutord_engine::engine::{
    BackendKind, ChatMessage, Engine, EngineError, GenStats, LoadSpec, Placement, Sampling,
};
use tutord_engine::rkllm::{RkllmEngine, RkllmOptions};

const STANDIN_SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/rkllm_standin/rkllm_standin.c"
);

/// A folder of this test process under Cargo's scratch folder for integration tests.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Folders of earlier test processes that are gone.
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("rkllm-test-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = root.join(format!("rkllm-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Builds the stand-in with extra compiler flags into `scratch()/<variant>/librkllmrt.so`.
fn build(variant: &str, flags: &[&str]) -> PathBuf {
    let dir = scratch().join(variant);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("librkllmrt.so");
    let status = Command::new("cc")
        .args([
            "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&out)
        .args(flags)
        .arg(STANDIN_SOURCE)
        .status()
        .expect("the stand-in runtime is built with `cc`: install a C compiler");
    assert!(
        status.success(),
        "cc failed to build the stand-in ({variant})"
    );
    out
}

fn standin() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| build("v1.3.0", &[]))
}

/// Writes a fixture file; by rename, because tests running in parallel read the same ones.
fn write(path: &Path, content: &str) {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let tmp = path.with_extension(format!("tmp{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn file(name: &str, content: &str) -> PathBuf {
    let path = scratch().join(name);
    write(&path, content);
    path
}

fn model() -> PathBuf {
    file("model.rkllm", "STANDIN-RKLLM fake weights\n")
}

/// A fake sysfs version file of the NPU driver.
fn driver(version_text: &str) -> PathBuf {
    let dir = scratch().join(format!("debug-{}", version_text.replace([' ', ':'], "_")));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("version");
    write(&path, version_text);
    path
}

fn options() -> RkllmOptions {
    RkllmOptions {
        driver_version_paths: vec![driver("RKNPU driver: v0.9.8\n")],
        runtime_version: None,
    }
}

fn spec(library: &Path, cpus: &[usize]) -> LoadSpec {
    LoadSpec {
        backend: BackendKind::Npu,
        model_path: model(),
        context_length: 2048,
        placement: Placement {
            cpus: cpus.to_vec(),
        },
        runtime_library: Some(library.to_path_buf()),
    }
}

fn load() -> RkllmEngine {
    RkllmEngine::load(&spec(standin(), &[4, 5, 6, 7]), &options()).expect("stand-in loads")
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::new("user", text)
}

fn sampling() -> Sampling {
    Sampling {
        temperature: 0.5,
        top_k: 20,
        max_tokens: 400,
        ..Sampling::default()
    }
}

/// Answers `chat`, returning the pieces and stats.
fn ask(engine: &mut RkllmEngine, chat: &[ChatMessage]) -> (Vec<String>, GenStats) {
    let mut pieces = Vec::new();
    let stats = engine
        .generate(chat, &sampling(), &mut |p| {
            pieces.push(p.to_owned());
            true
        })
        .expect("answer");
    (pieces, stats)
}

fn unavailable_reason(result: Result<RkllmEngine, EngineError>) -> String {
    match result {
        Err(EngineError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "npu");
            reason
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, but it loaded"),
    }
}

#[test]
fn streams_the_reply_in_order_with_stats() {
    let mut engine = load();
    assert!(
        engine.info().runtime.contains("1.3.0"),
        "{:?}",
        engine.info()
    );
    assert!(
        engine.info().runtime.contains("0.9.8"),
        "{:?}",
        engine.info()
    );
    let (pieces, stats) = ask(&mut engine, &[user("What is two plus two?")]);
    let expected = "Hello from the RKLLM stand-in. History: 0 turns. Heard: What is two plus two?";
    assert_eq!(pieces.concat(), expected);
    let words: Vec<&str> = expected.split(' ').collect();
    assert_eq!(pieces.len(), words.len(), "one piece per word: {pieces:?}");
    assert_eq!(pieces[0], "Hello");
    assert_eq!(pieces[1], " from");
    // Every token event counts, the text-less WAITING one before the last word included.
    assert_eq!(stats.generated_tokens as usize, words.len() + 1);
    assert_eq!(
        stats.prompt_tokens, 5,
        "prefill tokens come from RKLLMPerfStat"
    );
    assert_eq!(stats.reused_tokens, 0);
    assert!(!stats.aborted);
    assert!(stats.time_to_first_token > 0.0);
    assert!(stats.decode_tokens_per_second > 0.0);
    assert!(stats.prompt_tokens_per_second > 0.0);
    assert!(stats.peak_rss_bytes > 0);
}

#[test]
fn on_piece_returning_false_aborts() {
    let mut engine = load();
    let mut pieces = Vec::new();
    let stats = engine
        .generate(&[user("stop early")], &sampling(), &mut |p| {
            pieces.push(p.to_owned());
            pieces.len() < 3
        })
        .unwrap();
    assert_eq!(pieces, ["Hello", " from", " the"]);
    assert!(stats.aborted);
    assert_eq!(stats.generated_tokens, 3);
    // An aborted turn is not kept: the next answer starts from an empty cache.
    let (pieces, stats) = ask(&mut engine, &[user("again")]);
    assert!(pieces.concat().contains("History: 0 turns."));
    assert!(!stats.aborted);
}

#[test]
fn abort_handle_stops_the_answer_from_another_thread() {
    let mut engine = load();
    let abort = engine.abort_handle();
    let started = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(60));
        abort.abort().unwrap();
    });
    let mut pieces = 0;
    let stats = engine
        .generate(&[user("__slow__")], &sampling(), &mut |_| {
            pieces += 1;
            true
        })
        .unwrap();
    stopper.join().unwrap();
    assert!(stats.aborted);
    assert!(pieces > 0 && pieces < 200, "{pieces} pieces");
    assert!(started.elapsed() < Duration::from_millis(800));
}

#[test]
fn max_tokens_bounds_the_answer() {
    let mut engine = load();
    let mut pieces = 0;
    let stats = engine
        .generate(
            &[user("__slow__")],
            &Sampling {
                max_tokens: 5,
                ..sampling()
            },
            &mut |_| {
                pieces += 1;
                true
            },
        )
        .unwrap();
    assert_eq!((pieces, stats.generated_tokens), (5, 5));
    assert!(!stats.aborted);
    assert!(stats.truncated, "the bound cut the answer: {stats:?}");
    // An answer that ends before the bound is whole.
    let (_, stats) = ask(&mut engine, &[user("short")]);
    assert!(!stats.truncated, "{stats:?}");
}

#[test]
fn return_codes_and_error_events_map_to_errors() {
    let mut engine = load();
    match engine.generate(&[user("__fail_run__")], &sampling(), &mut |_| true) {
        Err(EngineError::Runtime(msg)) => assert!(msg.contains("rkllm_run returned -1"), "{msg}"),
        other => panic!("{other:?}"),
    }
    match engine.generate(&[user("__error_state__")], &sampling(), &mut |_| true) {
        Err(EngineError::Runtime(msg)) => assert!(msg.contains("RKLLM_RUN_ERROR"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // The engine still answers afterwards.
    let (pieces, _) = ask(&mut engine, &[user("still there?")]);
    assert!(pieces.concat().ends_with("Heard: still there?"));
    // A chat that does not end with a user message is refused before the runtime sees it.
    let chat = [user("hi"), ChatMessage::new("assistant", "hello")];
    assert!(matches!(
        engine.generate(&chat, &sampling(), &mut |_| true),
        Err(EngineError::Runtime(_))
    ));
}

#[test]
fn a_model_the_runtime_refuses_is_a_bad_model() {
    let foreign = file("foreign.rkllm", "GGUF not an rkllm model");
    let mut s = spec(standin(), &[]);
    s.model_path = foreign.clone();
    match RkllmEngine::load(&s, &options()) {
        Err(EngineError::BadModel { path, reason }) => {
            assert_eq!(path, foreign);
            assert!(reason.contains("rkllm_init returned -1"), "{reason}");
        }
        other => panic!("{:?}", other.err()),
    }
    s.model_path = scratch().join("no-such-model.rkllm");
    assert!(matches!(
        RkllmEngine::load(&s, &options()),
        Err(EngineError::BadModel { .. })
    ));
}

#[test]
fn keep_history_carries_a_multi_turn_session() {
    let mut engine = load();
    let first = [user("Hi there")];
    let (pieces, stats) = ask(&mut engine, &first);
    let answer = pieces.concat();
    assert!(
        answer.contains("History: 0 turns. Heard: Hi there"),
        "{answer}"
    );
    assert_eq!(stats.reused_tokens, 0);

    // A follow-up: only the new question is sent, onto the kept turn.
    let mut chat = first.to_vec();
    chat.push(ChatMessage::new("assistant", &answer));
    chat.push(user("And now?"));
    let (pieces, stats) = ask(&mut engine, &chat);
    let second = pieces.concat();
    assert!(
        second.ends_with("History: 1 turns. Heard: And now?"),
        "{second}"
    );
    assert_eq!(stats.prompt_tokens, 2, "only the new message is processed");
    assert!(stats.reused_tokens > 0);

    chat.push(ChatMessage::new("assistant", &second));
    chat.push(user("Third?"));
    let (pieces, _) = ask(&mut engine, &chat);
    assert!(pieces.concat().ends_with("History: 2 turns. Heard: Third?"));

    // A chat that does not extend the kept one: cache cleared, the whole chat sent.
    let other = [ChatMessage::new("system", "Be brief."), user("New topic")];
    let (pieces, stats) = ask(&mut engine, &other);
    assert!(
        pieces
            .concat()
            .ends_with("History: 0 turns. Heard: system: Be brief.\nuser: New topic"),
        "{pieces:?}"
    );
    assert_eq!(stats.reused_tokens, 0);

    // reset() forgets the session even for a chat that would extend it.
    let mut follow = other.to_vec();
    follow.push(ChatMessage::new("assistant", &pieces.concat()));
    follow.push(user("more"));
    engine.reset();
    let (pieces, _) = ask(&mut engine, &follow);
    assert!(pieces.concat().contains("History: 0 turns."), "{pieces:?}");
}

#[test]
fn placement_and_sampling_reach_the_runtime() {
    let mut engine = load();
    let (pieces, _) = ask(&mut engine, &[user("__config__")]);
    let config = pieces.concat();
    for want in [
        "mask=0xf0 num=4",
        "ctx=2048",
        "domain=0",
        "n_batch=1",
        "async=0",
        "skip_special=1",
        "top_k=20",
        "temp=0.50",
        "max_new=400",
        "keep_history=1",
    ] {
        assert!(config.contains(want), "{want:?} not in {config:?}");
    }
    let mut cpu0 = RkllmEngine::load(&spec(standin(), &[0, 2]), &options()).unwrap();
    let (pieces, _) = ask(&mut cpu0, &[user("__config__")]);
    assert!(pieces.concat().starts_with("mask=0x5 num=2"), "{pieces:?}");
    // No placement: the runtime's own defaults.
    let mut any = RkllmEngine::load(&spec(standin(), &[]), &options()).unwrap();
    let (pieces, _) = ask(&mut any, &[user("__config__")]);
    assert!(pieces.concat().starts_with("mask=0x0 num=0"), "{pieces:?}");
}

#[test]
fn a_runtime_of_another_version_is_refused() {
    static OLD: OnceLock<PathBuf> = OnceLock::new();
    let old = OLD.get_or_init(|| build("v1.2.3", &[r#"-DSTANDIN_VERSION="1.2.3""#]));
    let reason = unavailable_reason(RkllmEngine::load(&spec(old, &[]), &options()));
    assert!(reason.contains(&old.display().to_string()), "{reason}");
    assert!(
        reason.contains("1.2.3") && reason.contains("1.3.x"),
        "{reason}"
    );
    // Told the version by hand, the same library is taken as that version.
    let told = RkllmOptions {
        runtime_version: Some("1.3.0".into()),
        ..options()
    };
    assert!(RkllmEngine::load(&spec(old, &[]), &told).is_ok());
}

#[test]
fn a_library_without_the_1_3_api_is_refused() {
    let lib = build("no-run", &["-DSTANDIN_OMIT_RUN"]);
    let reason = unavailable_reason(RkllmEngine::load(&spec(&lib, &[]), &options()));
    assert!(reason.contains(&lib.display().to_string()), "{reason}");
    assert!(reason.contains("lacks rkllm_run"), "{reason}");
    assert!(reason.contains("version 1.3.0 found"), "{reason}");
}

#[test]
fn an_old_or_unreadable_npu_driver_is_refused() {
    let old = driver("RKNPU driver: v0.9.6\n");
    let opts = RkllmOptions {
        driver_version_paths: vec![old.clone()],
        ..options()
    };
    let reason = unavailable_reason(RkllmEngine::load(&spec(standin(), &[]), &opts));
    assert!(
        reason.contains("0.9.6") && reason.contains("0.9.8"),
        "{reason}"
    );
    assert!(reason.contains(&old.display().to_string()), "{reason}");

    let missing = scratch().join("no-debugfs/rknpu/version");
    let opts = RkllmOptions {
        driver_version_paths: vec![missing.clone()],
        ..options()
    };
    let reason = unavailable_reason(RkllmEngine::load(&spec(standin(), &[]), &opts));
    assert!(reason.contains(&missing.display().to_string()), "{reason}");

    // The first readable file counts: a missing debugfs falls back to the next path.
    let opts = RkllmOptions {
        driver_version_paths: vec![missing, driver("0.9.8\n")],
        ..options()
    };
    assert!(RkllmEngine::load(&spec(standin(), &[]), &opts).is_ok());
}

#[test]
fn a_missing_library_is_refused_by_name() {
    let gone = scratch().join("nowhere/librkllmrt.so");
    let reason = unavailable_reason(RkllmEngine::load(&spec(&gone, &[]), &options()));
    assert!(reason.contains(&gone.display().to_string()) && reason.contains("not found"));
    // By bare name, through the loader's search path.
    let bare = Path::new("librkllmrt-not-installed.so");
    let reason = unavailable_reason(RkllmEngine::load(&spec(bare, &[]), &options()));
    assert!(reason.contains("librkllmrt-not-installed.so"), "{reason}");
}

#[test]
fn loads_by_bare_name_through_the_search_path() {
    // The loader reads LD_LIBRARY_PATH when the process starts: run this test again in a child
    // process that has the stand-in's folder on it.
    if std::env::var_os("RKLLM_TEST_CHILD").is_none() {
        let dir = standin().parent().unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "loads_by_bare_name_through_the_search_path",
                "--exact",
                "--nocapture",
            ])
            .env("RKLLM_TEST_CHILD", "1")
            .env("LD_LIBRARY_PATH", dir)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child test failed:\n{log}");
        assert!(log.contains("1 passed"), "{log}");
        return;
    }
    let mut s = spec(Path::new("librkllmrt.so"), &[]);
    s.runtime_library = None;
    let mut engine = RkllmEngine::load(&s, &options()).expect("found through LD_LIBRARY_PATH");
    assert!(
        engine.info().runtime.contains("1.3.0"),
        "{:?}",
        engine.info()
    );
    let (pieces, _) = ask(&mut engine, &[user("by name")]);
    assert!(pieces.concat().ends_with("Heard: by name"));
}

#[test]
fn a_library_for_another_architecture_is_refused_by_name() {
    // The ELF header of a 64-bit shared object for another machine than this one.
    let foreign_machine: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little-endian
    elf[6] = 1; // ELF version
    elf[16] = 3; // ET_DYN
    elf[18..20].copy_from_slice(&foreign_machine.to_le_bytes());
    let path = scratch().join("foreign/librkllmrt.so");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &elf).unwrap();
    let reason = unavailable_reason(RkllmEngine::load(&spec(&path, &[]), &options()));
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(
        reason.contains("aarch64") && reason.contains("x86_64"),
        "{reason}"
    );
}

#[test]
fn a_panic_in_on_piece_does_not_cross_the_runtime() {
    let mut engine = load();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = engine.generate(&[user("boom")], &sampling(), &mut |_| panic!("on_piece"));
    }));
    let payload = caught.expect_err("the panic comes back on the caller's thread");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"on_piece"));
    let (pieces, _) = ask(&mut engine, &[user("after")]);
    assert!(pieces.concat().contains("History: 0 turns. Heard: after"));
}

#[test]
fn a_lesson_longer_than_the_context_slides_its_window_and_never_overflows() {
    // 256 "tokens" (the stand-in counts words) with answers of at most 40: the prompt's
    // budget is 256 - 40 - 16. The stand-in refuses any run that would overflow the context.
    let mut spec = spec(standin(), &[4, 5, 6, 7]);
    spec.context_length = 256;
    let mut engine = RkllmEngine::load(&spec, &options()).expect("stand-in loads");
    let short = Sampling {
        max_tokens: 40,
        ..sampling()
    };
    let mut chat = vec![ChatMessage::new("system", "You are a kind tutor.")];
    let mut rows = Vec::new();
    for i in 0..40 {
        chat.push(user(&format!(
            "Question {i}: why do leaves change colour in the autumn, and what happens next?"
        )));
        let mut answer = String::new();
        let stats = engine
            .generate(&chat, &short, &mut |p| {
                answer.push_str(p);
                true
            })
            .unwrap_or_else(|e| panic!("turn {i}: {e}"));
        rows.push((stats.reused_tokens, stats.window_left_out));
        chat.push(ChatMessage::new("assistant", &answer));
    }
    let slid = rows.iter().filter(|(_, left_out)| *left_out > 0).count();
    assert!(
        slid >= 30,
        "the window slid in {slid} of 40 turns: {rows:?}"
    );
    // A slide re-sends the window into a cleared cache (no reuse); it keeps half the
    // budget, so most turns after it extend the cache instead.
    let fresh = rows[1..].iter().filter(|(reused, _)| *reused == 0).count();
    assert!(
        (2..=15).contains(&fresh),
        "{fresh} of 39 follow-ups re-sent their window: {rows:?}"
    );

    // One question longer than the whole budget: refused, naming the limit.
    chat.push(user(&"word ".repeat(400)));
    let err = engine
        .generate(&chat, &short, &mut |_| true)
        .expect_err("too long");
    match err {
        EngineError::QuestionTooLong { limit, context, .. } => {
            assert_eq!((limit, context), (200, 256));
        }
        other => panic!("{other}"),
    }
}

//! The supervisor with a fake worker process: this test binary itself, started through a
//! script as `fake_worker` below, speaking the real protocol on fd 3 and dying on cue. Only
//! what the supervisor decides is tested here (restarts, giving a model up); the real worker
//! and a real model are in tests/faults.rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tutord_protocol::{Event, FrameError, Request, read_msg, write_msg};

use super::*;

/// A fake worker's script, in a directory of its own: `answers` says what each question
/// gets, in order across every worker started (`ok`; `crash`, the process exiting in the
/// middle of the answer; `wedge`, one piece and then nothing, aborts ignored, while pings are
/// still answered, as a runtime stuck in a driver call); `idle_deaths` lists the workers (0 for the first started) that
/// exit soon after loading, with no question in flight.
struct FakeWorker {
    dir: tempfile::TempDir,
}

impl FakeWorker {
    fn new(answers: &[&str], idle_deaths: &[u32]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("answers"), answers.join(",")).unwrap();
        let deaths: Vec<String> = idle_deaths.iter().map(u32::to_string).collect();
        std::fs::write(dir.path().join("idle_deaths"), deaths.join(",")).unwrap();
        let exe = std::env::current_exe().unwrap();
        let script = dir.path().join("worker");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexport TUTORD_FAKE_WORKER='{}'\nexec '{}' --exact \
                 engine::tests::fake_worker --ignored --nocapture >/dev/null\n",
                dir.path().display(),
                exe.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn config(&self) -> EngineConfig {
        self.config_stalling_after(Duration::from_secs(120))
    }

    fn config_stalling_after(&self, stall: Duration) -> EngineConfig {
        EngineConfig {
            program: self.dir.path().join("worker"),
            spec: LoadSpec {
                backend: BackendKind::Cpu,
                model_path: PathBuf::from("/models/bad.gguf"),
                context_length: 2048,
                placement: Placement::default(),
                runtime_library: None,
            },
            stall,
            load_deadline: Duration::from_secs(3),
        }
    }
}

/// Adds one to the number in `path` (0 when absent) and returns the number before.
fn bump(path: &Path) -> u32 {
    let n = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    std::fs::write(path, (n + 1).to_string()).unwrap();
    n
}

fn listed(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Not a test: the fake worker process the supervisor tests start (it returns at once
/// unless started by one of them).
#[test]
#[ignore = "the fake engine worker of the supervisor tests; they start it themselves"]
fn fake_worker() {
    let Some(dir) = std::env::var_os("TUTORD_FAKE_WORKER").map(PathBuf::from) else {
        return;
    };
    use std::os::fd::FromRawFd;
    // SAFETY: the supervisor passed this process its end of the socketpair as fd 3, and
    // nothing else here uses that descriptor.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(3) };
    let mut reader = stream.try_clone().unwrap();
    let mut writer = stream;
    let me = bump(&dir.join("starts"));
    let dies_idle = listed(&dir.join("idle_deaths")).contains(&me.to_string());
    let answers = listed(&dir.join("answers"));
    loop {
        let req = match read_msg::<Request>(&mut reader) {
            Ok(r) => r,
            Err(FrameError::Closed) => std::process::exit(0),
            Err(e) => panic!("fake worker: {e}"),
        };
        let ev = match req {
            Request::Load(spec) => {
                if dir.join("load_hangs").exists() {
                    // A read stuck in the kernel: no answer to the load, pings still answered.
                    continue;
                }
                let info = ModelInfo {
                    backend: spec.backend,
                    path: spec.model_path,
                    file_bytes: 1,
                    parameters: 1,
                    context_length: spec.context_length,
                    runtime: "fake".into(),
                    chat_format: "template".into(),
                };
                write_msg(&mut writer, &Event::Loaded { info }).unwrap();
                if dies_idle {
                    std::thread::sleep(Duration::from_millis(100));
                    std::process::exit(1);
                }
                continue;
            }
            Request::Ping { seq } => Event::Pong {
                seq,
                busy_turn: None,
                pieces: 0,
            },
            // A byte is a token for this tokenizer.
            Request::Count { id, text } => Event::Counted {
                id,
                tokens: text.len() as u32,
            },
            Request::Generate { turn, .. } => {
                let n = bump(&dir.join("generates")) as usize;
                let piece = Event::Piece {
                    turn,
                    text: "a".into(),
                };
                write_msg(&mut writer, &piece).unwrap();
                match answers.get(n).map(String::as_str) {
                    Some("crash") => std::process::exit(134),
                    Some("wedge") => continue,
                    _ => {}
                }
                Event::Finished {
                    turn,
                    stats: GenStats {
                        generated_tokens: 1,
                        ..GenStats::default()
                    },
                }
            }
            _ => continue,
        };
        write_msg(&mut writer, &ev).unwrap();
    }
}

/// Asks turn `n` and returns how it ended (its last event).
async fn ask(engine: &EngineHandle, n: u64) -> TurnEvent {
    let mut events = engine
        .generate(n, vec![ChatMessage::new("user", "q")], Sampling::default())
        .unwrap();
    let end = async {
        loop {
            match events.recv().await {
                Some(TurnEvent::Piece(_)) => {}
                Some(end) => return end,
                None => panic!("turn {n} ended without an event"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), end)
        .await
        .unwrap_or_else(|_| panic!("turn {n} did not end"))
}

/// Waits until `f` holds for the engine's status.
async fn status_when(engine: &EngineHandle, f: impl Fn(&EngineStatus) -> bool) -> EngineStatus {
    let mut rx = engine.watch();
    let waited = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s))).await;
    waited.expect("the status did not come").unwrap().clone()
}

fn loaded(s: &EngineStatus) -> bool {
    s.model.is_some()
}

#[tokio::test]
async fn a_model_that_kills_the_worker_on_two_answers_in_a_row_is_given_up() {
    let fake = FakeWorker::new(&["crash", "crash"], &[]);
    let engine = EngineHandle::start(fake.config());
    status_when(&engine, loaded).await;
    let first = ask(&engine, 1).await;
    assert!(
        matches!(&first, TurnEvent::Failed(EngineFailure::Died(why)) if why.contains("exited with status 134")),
        "{first:?}"
    );
    // One death is restarted like any other: the second question waits for the reload.
    let s = engine.status();
    assert!(!s.gave_up, "{s:?}");
    assert_eq!(s.crashes_in_a_row, 1);
    let second = ask(&engine, 2).await;
    // The answer that makes the engine give up fails with that reason.
    assert!(
        matches!(&second, TurnEvent::Failed(EngineFailure::Crashed(why))
            if why.contains("crashed the engine worker on 2 answers in a row")),
        "{second:?}"
    );
    let s = status_when(&engine, |s| s.gave_up).await;
    assert_eq!(s.gave_up_because, Some(GaveUp::Crashes));
    assert!(s.model.is_none());
    assert_eq!(s.restarts, 1, "not restarted after the second crash: {s:?}");
    let why = s.last_error.unwrap();
    assert!(
        why.starts_with(
            "the model /models/bad.gguf crashed the engine worker on 2 answers in a row ("
        ) && why.contains("exited with status 134")
            && why.ends_with("); given up"),
        "{why}"
    );
    // Later questions get the reason at once, not a wait; so does a count.
    match engine.generate(3, vec![], Sampling::default()) {
        Err(EngineFailure::NotLoaded(m)) => assert_eq!(m, why),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(
        engine.count("abc").await,
        Err(EngineFailure::NotLoaded(why))
    );
}

#[tokio::test]
async fn the_worker_counts_tokens_for_the_daemon() {
    let fake = FakeWorker::new(&[], &[]);
    let engine = EngineHandle::start(fake.config());
    status_when(&engine, loaded).await;
    assert_eq!(engine.count("five!").await, Ok(5));
    let (a, b) = tokio::join!(engine.count("one"), engine.count("and two"));
    assert_eq!((a, b), (Ok(3), Ok(7)));
}

#[tokio::test]
async fn an_answer_between_two_crashes_starts_the_count_again() {
    let fake = FakeWorker::new(&["crash", "ok", "crash", "ok"], &[]);
    let engine = EngineHandle::start(fake.config());
    status_when(&engine, loaded).await;
    let ends: Vec<TurnEvent> = [
        ask(&engine, 1).await,
        ask(&engine, 2).await,
        ask(&engine, 3).await,
        ask(&engine, 4).await,
    ]
    .into();
    assert!(matches!(ends[0], TurnEvent::Failed(EngineFailure::Died(_))));
    assert!(matches!(ends[1], TurnEvent::Finished(_)), "{:?}", ends[1]);
    assert!(matches!(ends[2], TurnEvent::Failed(EngineFailure::Died(_))));
    assert!(matches!(ends[3], TurnEvent::Finished(_)), "{:?}", ends[3]);
    let s = engine.status();
    assert!(!s.gave_up && s.model.is_some(), "{s:?}");
    assert_eq!((s.restarts, s.crashes_in_a_row), (2, 0));
}

#[tokio::test]
async fn deaths_while_idle_are_restarted_and_do_not_break_the_count() {
    // Workers 0 and 1 die with no question in flight: restarted, never given up. Then a
    // crash, an idle death (worker 3), and a crash: no answer came between the two crashes,
    // so the model is given up.
    let fake = FakeWorker::new(&["ok", "crash", "crash"], &[0, 1, 3]);
    let engine = EngineHandle::start(fake.config());
    let s = status_when(&engine, |s| s.restarts == 2 && loaded(s)).await;
    assert!(!s.gave_up);
    assert!(matches!(ask(&engine, 1).await, TurnEvent::Finished(_)));
    assert!(matches!(
        ask(&engine, 2).await,
        TurnEvent::Failed(EngineFailure::Died(_))
    ));
    // Worker 3 loads and dies idle; worker 4 takes the next question.
    status_when(&engine, |s| s.restarts == 4 && loaded(s)).await;
    assert!(!engine.status().gave_up);
    assert_eq!(engine.status().crashes_in_a_row, 1);
    assert!(matches!(
        ask(&engine, 3).await,
        TurnEvent::Failed(EngineFailure::Crashed(_))
    ));
    let s = status_when(&engine, |s| s.gave_up).await;
    assert_eq!(s.gave_up_because, Some(GaveUp::Crashes));
}

#[tokio::test]
async fn a_wedged_answer_is_failed_and_its_worker_replaced() {
    // The first answer wedges after one piece; the worker still answers every ping, so only
    // the answer's own progress can tell. Then an abort that never ends, then an answer.
    let fake = FakeWorker::new(&["wedge", "wedge", "ok"], &[]);
    let engine = EngineHandle::start(fake.config_stalling_after(Duration::from_secs(3)));
    status_when(&engine, loaded).await;
    let started = std::time::Instant::now();
    let first = ask(&engine, 1).await;
    let waited = started.elapsed();
    assert!(
        matches!(&first, TurnEvent::Failed(EngineFailure::Died(why))
            if why.contains("the answer made no progress for 3 s (the engine is wedged): killed it")),
        "{first:?}"
    );
    // Detected at the first ping after the stall: 3 s, plus up to one ping interval.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    status_when(&engine, loaded).await;
    let mut events = engine
        .generate(2, vec![ChatMessage::new("user", "q")], Sampling::default())
        .unwrap();
    assert!(matches!(events.recv().await, Some(TurnEvent::Piece(_))));
    engine.abort_all();
    let end = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the abort is not left hanging");
    assert!(
        matches!(&end, Some(TurnEvent::Failed(EngineFailure::Died(why)))
            if why.contains("did not stop within 3 s of an abort")),
        "{end:?}"
    );
    status_when(&engine, loaded).await;
    assert!(matches!(ask(&engine, 3).await, TurnEvent::Finished(_)));
    let s = engine.status();
    assert_eq!(s.restarts, 2, "{s:?}");
}

#[tokio::test]
async fn a_load_that_never_ends_is_given_up_at_its_deadline() {
    // The worker answers pings but never the load (a read blocked on a hung mount): without a
    // deadline SelectModel and the boot would wait for ever, the old model already gone.
    let fake = FakeWorker::new(&["ok"], &[]);
    std::fs::write(fake.dir.path().join("load_hangs"), "").unwrap();
    let started = std::time::Instant::now();
    let mut engine = EngineHandle::start(fake.config());
    let s = tokio::time::timeout(Duration::from_secs(15), engine.wait_settled())
        .await
        .expect("the load is given up");
    let waited = started.elapsed();
    assert!(s.gave_up && s.model.is_none(), "{s:?}");
    assert_eq!(s.gave_up_because, Some(GaveUp::Load));
    let why = s.last_error.unwrap_or_default();
    assert!(why.contains("did not load within 3 s"), "{why}");
    // Seen at the first ping after the deadline: 3 s, plus up to one ping interval.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[test]
fn a_load_deadline_grows_with_the_file_at_an_sd_cards_slowest_read() {
    assert_eq!(load_deadline(0), Duration::from_secs(120));
    // A 4.8 GB 7B at 10 MB/s: 480 s of reading.
    assert_eq!(load_deadline(4_800_000_000), Duration::from_secs(600));
}

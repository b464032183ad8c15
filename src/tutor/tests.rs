//! The tutor's turn, abort and session logic with a stand-in engine (`engine::stand_in`)
//! and a stand-in voice: no worker process, no D-Bus, real SQLite files.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::*;
use crate::config::{LlmConfig, TutorConfig, VoiceConfig};
use crate::engine::stand_in::{Asked, Script};
use crate::engine::{EngineHandle, GenStats, MAX_QUEUED_TURNS, Sampling, Slot};
use crate::state::Activity;
use crate::store::Store;
use crate::voice::Voice;
use crate::voice::tts::{Speech, Synthesizer, TtsError};

/// Half a second of silence for any text.
struct Quiet;

impl Synthesizer for Quiet {
    fn synthesize(&self, _text: &str) -> Result<Speech, TtsError> {
        Ok(Speech {
            samples: vec![0.0; 8000],
            sample_rate: 16_000,
        })
    }
}

struct Fixture {
    tutor: Service,
    slot: Arc<Slot>,
    asked: Asked,
    calibrated: Arc<Mutex<Vec<GenStats>>>,
    events: broadcast::Receiver<Event>,
    activity: watch::Receiver<Activity>,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

fn fixture(script: Script) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Duration::from_millis(50)).unwrap();
    let db = store.path().to_path_buf();
    let asked = Asked::default();
    let slot = Slot::new(Ok(EngineHandle::stand_in(script, asked.clone())));
    let activity = watch::Sender::new(Activity::default());
    let voice = Voice::with(
        VoiceConfig::default(),
        Err("no speech model in this test".into()),
        Ok(Arc::new(Quiet)),
        activity.clone(),
    );
    let calibrated = Arc::new(Mutex::new(Vec::new()));
    let c = calibrated.clone();
    let conversation =
        Conversation::new(slot.clone(), "be brief".into(), Sampling::default(), 2048);
    let tutor = Service::new(
        conversation,
        Arc::new(Mutex::new(store)),
        LlmConfig::default(),
        TutorConfig::default(),
        voice,
        Box::new(move |s| c.lock().unwrap().push(s.clone())),
        activity.clone(),
    );
    tutor.resume_session();
    Fixture {
        events: tutor.events(),
        activity: activity.subscribe(),
        tutor,
        slot,
        asked,
        calibrated,
        _dir: dir,
        db,
    }
}

fn slow(pieces: usize) -> Script {
    Script {
        load: Ok("stand-in.gguf".into()),
        pieces: (0..pieces).map(|i| format!(" w{i}")).collect(),
        piece_delay: Duration::from_millis(40),
    }
}

/// Events until `turn` finished; returns them all.
async fn until_finished(rx: &mut broadcast::Receiver<Event>, turn: &str) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{turn} did not finish; saw {seen:?}"))
            .unwrap();
        let done = matches!(&ev, Event::Finished { turn: t, .. } if t == turn);
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

fn report(events: &[Event]) -> Arc<TurnReport> {
    match events.last() {
        Some(Event::Finished { report, .. }) => report.clone(),
        other => panic!("no Finished last: {other:?}"),
    }
}

#[tokio::test]
async fn a_turn_is_stored_answered_calibrated_and_published_in_order() {
    let mut f = fixture(Script::answering("stand-in.gguf"));
    let t1 = f
        .tutor
        .ask("What is a prime?", AskOptions::default(), Origin::Typed)
        .unwrap();
    let events = until_finished(&mut f.events, &t1).await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::SessionChanged => "session",
            Event::Started { .. } => "started",
            Event::Piece { .. } => "piece",
            Event::Finished { .. } => "finished",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["session", "started", "piece", "piece", "piece", "finished"]
    );
    let r = report(&events);
    assert_eq!(r.outcome.answer, "a b c");
    assert!(r.outcome.error.is_none());
    assert_eq!(f.calibrated.lock().unwrap().len(), 1);

    // The second question's prompt holds the first turn.
    let t2 = f
        .tutor
        .ask("And 7?", AskOptions::default(), Origin::Typed)
        .unwrap();
    until_finished(&mut f.events, &t2).await;
    let chats = f.asked.lock().unwrap().clone();
    let roles: Vec<&str> = chats[1].iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(chats[1][2].content, "a b c");

    // Both turns are in the store, answered, under the session questions opened.
    let session = f.tutor.current_session().unwrap();
    let turns = f.tutor.history(&session.id.to_string()).unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].question, "What is a prime?");
    assert_eq!(turns[0].answer.as_deref(), Some("a b c"));
    assert_eq!(turns[1].turn_id, t2);
    assert_eq!(f.slot.pending(), 0);
    assert_eq!(f.activity.borrow().thinking, 0);
}

#[tokio::test]
async fn abort_ends_the_running_turn_and_drops_the_waiting_then_serves_again() {
    let mut f = fixture(slow(20));
    let ids: Vec<String> = (0..3)
        .map(|i| {
            f.tutor
                .ask(
                    &format!("question {i}"),
                    AskOptions::default(),
                    Origin::Typed,
                )
                .unwrap()
        })
        .collect();
    // Let the first turn reach the engine and write a piece or two.
    tokio::time::sleep(Duration::from_millis(120)).await;
    f.tutor.abort();
    let mut partial = String::new();
    for id in &ids {
        let r = report(&until_finished(&mut f.events, id).await);
        assert!(r.outcome.stats.aborted, "{id}: {:?}", r.outcome);
        assert!(r.outcome.error.is_none(), "{id}: {:?}", r.outcome);
        if partial.is_empty() {
            partial = r.outcome.answer.clone();
        }
    }
    assert!(!partial.is_empty() && partial.len() < 20 * 4, "{partial:?}");
    // Only the first question ever reached the engine.
    assert_eq!(f.asked.lock().unwrap().len(), 1);
    // Aborted answers teach the planner nothing about speed... but they are stored.
    let session = f.tutor.current_session().unwrap();
    let turns = f.tutor.history(&session.id.to_string()).unwrap();
    assert!(turns.iter().all(|t| t.aborted), "{turns:?}");
    // The next question is answered in full; its prompt holds what was said of the
    // interrupted answer (the child heard it), not the dropped questions.
    let next = f
        .tutor
        .ask("again", AskOptions::default(), Origin::Typed)
        .unwrap();
    let r = report(&until_finished(&mut f.events, &next).await);
    assert!(!r.outcome.stats.aborted);
    assert_eq!(r.outcome.stats.generated_tokens, 20);
    let chats = f.asked.lock().unwrap().clone();
    let last = chats.last().unwrap();
    assert_eq!(last.len(), 4, "{last:?}");
    assert_eq!(last[2].content, partial);
}

#[tokio::test]
async fn questions_past_the_queue_are_busy_and_no_engine_is_not_ready() {
    let f = fixture(slow(50));
    for i in 0..=MAX_QUEUED_TURNS {
        f.tutor
            .ask(&format!("q{i}"), AskOptions::default(), Origin::Typed)
            .unwrap();
    }
    let err = f
        .tutor
        .ask("one too many", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(
        matches!(err, AskError::Busy(n) if n == MAX_QUEUED_TURNS),
        "{err}"
    );
    f.tutor.abort();

    let g = fixture(Script {
        load: Err("bad file".into()),
        ..Script::answering("x")
    });
    let err = g
        .tutor
        .ask("hello", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(
        matches!(&err, AskError::NotReady(m) if m.contains("bad file")),
        "{err}"
    );
    let err = g
        .tutor
        .ask("  ", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(matches!(err, AskError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn a_session_change_that_cannot_be_stored_changes_nothing() {
    let mut f = fixture(Script::answering("stand-in.gguf"));
    let t = f
        .tutor
        .ask("first", AskOptions::default(), Origin::Typed)
        .unwrap();
    until_finished(&mut f.events, &t).await;
    let before = f.tutor.current_session().unwrap();
    // Another process holds the database: every write fails after the busy timeout.
    let other = rusqlite::Connection::open(&f.db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = f.tutor.start_session("fractions").unwrap_err();
    assert!(matches!(err, SessionError::Store(_)), "{err}");
    assert_eq!(f.tutor.current_session(), Some(before.clone()));
    let err = f.tutor.end_session().unwrap_err();
    assert!(matches!(err, SessionError::Store(_)), "{err}");
    assert_eq!(f.tutor.current_session(), Some(before.clone()));
    other.execute_batch("ROLLBACK").unwrap();
    // The conversation went on: the next prompt still holds the first turn.
    let t = f
        .tutor
        .ask("second", AskOptions::default(), Origin::Typed)
        .unwrap();
    until_finished(&mut f.events, &t).await;
    let chats = f.asked.lock().unwrap().clone();
    assert_eq!(chats.last().unwrap().len(), 4);
    // Stored now, a session change goes through.
    let s = f.tutor.start_session("fractions").unwrap();
    assert_ne!(s.id, before.id);
}

#[tokio::test]
async fn a_spoken_question_is_transcribed_answered_and_spoken_before_it_finishes() {
    let mut f = fixture(Script::answering("stand-in.gguf"));
    let heard = crate::voice::pipeline::Heard {
        text: "What is a prime number?".into(),
        speech: Duration::from_secs(1),
        audio: Duration::from_secs(2),
        to_transcript: Duration::from_millis(300),
        stt_rtf: 0.3,
        received: std::time::Instant::now(),
    };
    let t = f
        .tutor
        .ask(
            &heard.text.clone(),
            AskOptions::default(),
            Origin::Recording(heard),
        )
        .unwrap();
    let events = until_finished(&mut f.events, &t).await;
    assert!(
        matches!(&events[0], Event::Transcript { text, is_final: true } if text == "What is a prime number?"),
        "{events:?}"
    );
    let speech = events
        .iter()
        .position(|e| matches!(e, Event::Speech { id, .. } if id == &t))
        .expect("the answer was spoken");
    assert!(speech < events.len() - 1);
    let r = report(&events);
    assert!(r.spoken.as_ref().is_some_and(|s| s.sentences >= 1), "{r:?}");
    assert!(r.heard.is_some());
    let session = f.tutor.current_session().unwrap();
    let turns = f.tutor.history(&session.id.to_string()).unwrap();
    assert_eq!(turns[0].source, "voice");
    // Speak() checks its text, and speaks when the tutor is idle.
    assert_eq!(f.tutor.speak(""), Err(SpeakError::Invalid(0)));
    let id = f.tutor.speak("Well done.").unwrap();
    assert!(id.starts_with("speak-"));
}

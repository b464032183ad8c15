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

/// Records what it is asked to say; a hundredth of a second of silence for each.
#[derive(Default)]
struct Said(Mutex<Vec<String>>);

impl Synthesizer for Said {
    fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
        self.0.lock().unwrap().push(text.to_string());
        Ok(Speech {
            samples: vec![0.0; 160],
            sample_rate: 16_000,
        })
    }
}

fn fixture(script: Script) -> Fixture {
    fixture_with(script, Arc::new(Quiet), |_| {})
}

/// A fixture with its own synthesizer, whose store `stored` fills first, as an earlier run
/// would have.
fn fixture_with(script: Script, tts: Arc<dyn Synthesizer>, stored: impl FnOnce(&Store)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Duration::from_millis(50)).unwrap();
    stored(&store);
    let db = store.path().to_path_buf();
    let asked = Asked::default();
    let slot = Slot::new(Ok(EngineHandle::stand_in(script, asked.clone())));
    let activity = watch::Sender::new(Activity::default());
    let voice = Voice::with(
        VoiceConfig::default(),
        Err("no speech model in this test".into()),
        Ok(tts),
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
    let turns = f.tutor.history(&session.id.to_string(), 0, 0).unwrap();
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
    // Aborted answers teach the planner nothing about speed... but the one that ran is
    // stored; the two dropped while they waited never ran, and are not turns.
    let session = f.tutor.current_session().unwrap();
    let turns = f.tutor.history(&session.id.to_string(), 0, 0).unwrap();
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].turn_id, ids[0]);
    assert!(turns[0].aborted);
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

fn heard(text: &str) -> crate::voice::pipeline::Heard {
    crate::voice::pipeline::Heard {
        text: text.into(),
        speech: Duration::from_secs(1),
        audio: Duration::from_secs(2),
        to_transcript: Duration::from_millis(300),
        stt_rtf: 0.3,
        received: std::time::Instant::now(),
    }
}

#[tokio::test]
async fn an_answer_cut_by_max_tokens_ends_at_its_last_sentence_everywhere() {
    let said = Arc::new(Said::default());
    let script = Script {
        load: Ok("stand-in.gguf".into()),
        pieces: ["Paris", " is big.", " It has", " many", " parks."]
            .map(String::from)
            .to_vec(),
        piece_delay: Duration::from_millis(5),
    };
    let mut f = fixture_with(script, said.clone(), |_| {});
    let cut = AskOptions {
        max_tokens: Some(3),
        ..AskOptions::default()
    };
    let q = "Tell me about Paris.";
    let t = f.tutor.ask(q, cut, Origin::Recording(heard(q))).unwrap();
    let events = until_finished(&mut f.events, &t).await;
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Piece { piece, .. } => Some(piece.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, "Paris is big. It has");
    let r = report(&events);
    assert!(r.outcome.stats.truncated, "{:?}", r.outcome);
    assert_eq!(r.outcome.answer, "Paris is big.");
    // The unfinished sentence was not spoken.
    assert_eq!(*said.0.lock().unwrap(), ["Paris is big."]);
    // Stored and given to the model as cut.
    let session = f.tutor.current_session().unwrap();
    let turns = f.tutor.history(&session.id.to_string(), 0, 100).unwrap();
    assert_eq!(turns[0].answer.as_deref(), Some("Paris is big."));
    let t2 = f
        .tutor
        .ask("And Lyon?", AskOptions::default(), Origin::Typed)
        .unwrap();
    let r = report(&until_finished(&mut f.events, &t2).await);
    assert!(!r.outcome.stats.truncated, "{:?}", r.outcome);
    assert_eq!(r.outcome.answer, "Paris is big. It has many parks.");
    let chats = f.asked.lock().unwrap().clone();
    assert_eq!(chats[1][2].content, "Paris is big.");
}

#[tokio::test]
async fn a_spoken_question_is_transcribed_answered_and_spoken_before_it_finishes() {
    let mut f = fixture(Script::answering("stand-in.gguf"));
    let heard = heard("What is a prime number?");
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
    let turns = f.tutor.history(&session.id.to_string(), 0, 0).unwrap();
    assert_eq!(turns[0].source, "voice");
    // Speak() checks its text, and speaks when the tutor is idle.
    assert_eq!(f.tutor.speak(""), Err(SpeakError::Invalid(0)));
    let id = f.tutor.speak("Well done.").unwrap();
    assert!(id.starts_with("speak-"));
}

/// The turns and sessions in the store, counted by a second connection.
fn stored(db: &std::path::Path) -> (i64, i64) {
    let c = rusqlite::Connection::open(db).unwrap();
    let count = |table: &str| {
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    (count("turns"), count("sessions"))
}

#[tokio::test]
async fn questions_that_never_ran_are_not_stored_as_turns() {
    let mut f = fixture(slow(50));
    let first = f
        .tutor
        .ask("q0", AskOptions::default(), Origin::Typed)
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ev = tokio::time::timeout_at(deadline, f.events.recv())
            .await
            .expect("the first question started")
            .unwrap();
        if matches!(&ev, Event::Started { turn } if turn == &first) {
            break;
        }
    }
    assert_eq!(stored(&f.db), (1, 1), "the running question is a turn");
    // Waiting behind it: asked, not yet run, so not yet turns.
    let waiting: Vec<String> = (1..=MAX_QUEUED_TURNS)
        .map(|i| {
            f.tutor
                .ask(&format!("q{i}"), AskOptions::default(), Origin::Typed)
                .unwrap()
        })
        .collect();
    let busy = f
        .tutor
        .ask("one too many", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(matches!(busy, AskError::Busy(_)), "{busy}");
    let invalid = f
        .tutor
        .ask("  ", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(matches!(invalid, AskError::Invalid(_)), "{invalid}");
    assert_eq!(stored(&f.db), (1, 1));
    // Aborted: the running one ends aborted (a turn); the waiting ones never run.
    f.tutor.abort();
    for id in std::iter::once(&first).chain(&waiting) {
        until_finished(&mut f.events, id).await;
    }
    assert_eq!(stored(&f.db), (1, 1));

    // No model: refused as NotReady, nothing stored, not even a session.
    let g = fixture(Script {
        load: Err("bad file".into()),
        ..Script::answering("x")
    });
    let err = g
        .tutor
        .ask("hello", AskOptions::default(), Origin::Typed)
        .unwrap_err();
    assert!(matches!(err, AskError::NotReady(_)), "{err}");
    assert_eq!(stored(&g.db), (0, 0));
}

/// A session of 1000 answered turns of exactly 64 bytes each (`q0000` and 59 digits).
fn a_long_session(store: &Store) {
    let s = store.session_start("a long lesson").unwrap();
    for n in 0..1000 {
        let row = store
            .turn_asked(
                s.id,
                &format!("turn-{}", n + 1),
                "text",
                &format!("q{n:04}"),
            )
            .unwrap();
        let answer = format!("{n:059}");
        let end = crate::store::TurnEnd {
            answer: &answer,
            ..Default::default()
        };
        store.turn_finished(row, &end).unwrap();
    }
}

#[tokio::test]
async fn a_long_session_resumes_with_only_the_tail_the_conversation_keeps() {
    let mut f = fixture_with(
        Script::answering("stand-in.gguf"),
        Arc::new(Quiet),
        a_long_session,
    );
    assert_eq!(f.tutor.current_session().unwrap().id, 1, "resumed");
    // A 2048-token context keeps 2048 × 16 = 32768 bytes of turns: the newest 512.
    let history = f.tutor.inner.conversation.history();
    assert_eq!(history.len(), 1024);
    assert_eq!(history[0].content, "q0488");
    assert_eq!(history[1023].content, format!("{:059}", 999));
    // The next question goes on from there, numbered after the stored turns.
    let t = f
        .tutor
        .ask("and then?", AskOptions::default(), Origin::Typed)
        .unwrap();
    assert_eq!(t, "turn-1001");
    until_finished(&mut f.events, &t).await;
    let chats = f.asked.lock().unwrap().clone();
    assert_eq!(chats[0].len(), 1 + 1024 + 1);
    assert_eq!(chats[0][1].content, "q0488");
}

#[tokio::test]
async fn history_pages_back_from_the_newest_turn_and_bounds_the_limit() {
    let f = fixture_with(
        Script::answering("stand-in.gguf"),
        Arc::new(Quiet),
        a_long_session,
    );
    let questions = |offset, limit| -> Vec<String> {
        f.tutor
            .history("1", offset, limit)
            .unwrap()
            .into_iter()
            .map(|t| t.question)
            .collect()
    };
    let newest = questions(0, 0);
    assert_eq!(newest.len(), 100, "0 = a page of 100");
    assert_eq!(
        (newest[0].as_str(), newest[99].as_str()),
        ("q0900", "q0999")
    );
    assert_eq!(questions(2, 3), ["q0995", "q0996", "q0997"]);
    assert_eq!(questions(990, 20).len(), 10, "a short page: the first turn");
    assert_eq!(questions(990, 20)[0], "q0000");
    assert!(questions(1000, 500).is_empty());
    assert_eq!(questions(0, 500).len(), 500);
    let err = f.tutor.history("1", 0, 501).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the limit is 501 turns; at most 500 are returned at once (0 = 100)"
    );
    let err = f.tutor.history("2", 0, 10).unwrap_err();
    assert_eq!(err.to_string(), "no session 2");
}

#[tokio::test]
async fn retention_never_removes_the_session_in_use() {
    // Session 1 is open (resumed below), 2 and 3 ended; 3 is the newest, with a turn.
    let f = fixture_with(
        Script::answering("stand-in.gguf"),
        Arc::new(Quiet),
        |store| {
            store.session_start("fractions").unwrap();
            let two = store.session_start("decimals").unwrap();
            store.turn_asked(two.id, "turn-1", "text", "q").unwrap();
            store.session_end(two.id).unwrap();
            let three = store.session_start("percentages").unwrap();
            store.turn_asked(three.id, "turn-2", "text", "q").unwrap();
            store.session_end(three.id).unwrap();
        },
    );
    assert_eq!(f.tutor.current_session().unwrap().id, 1);
    let keep = crate::config::HistoryConfig {
        keep_days: 365,
        keep_sessions: 1,
    };
    let in_400_days = std::time::SystemTime::now() + Duration::from_secs(400 * 86_400);
    let pruned = f.tutor.prune_history(&keep, in_400_days).unwrap();
    assert_eq!(
        pruned,
        crate::store::Pruned {
            sessions: 1,
            turns: 1
        }
    );
    assert_eq!(stored(&f.db), (1, 2));
    assert!(f.tutor.history("1", 0, 0).unwrap().is_empty());
    assert!(f.tutor.history("2", 0, 0).is_err(), "session 2 went");
    assert_eq!(f.tutor.history("3", 0, 0).unwrap().len(), 1);
}

#[tokio::test]
async fn a_question_longer_than_the_whole_context_is_refused_naming_the_limit_in_tokens() {
    // The stand-in's model has 2048 tokens of context and counts a word as a token.
    let f = fixture(Script::answering("m"));
    let instructions = f.tutor.inner.conversation.system_prompt();
    let instruction_tokens = instructions.split_whitespace().count() as u32;
    let limit = 2048 - 256 - 16 - budget::TEMPLATE_TOKENS - instruction_tokens;
    let options = AskOptions::default();
    // One word over the limit: counted and refused, the message naming both figures.
    let long = "w ".repeat(limit as usize + 1);
    let err = f.tutor.check_fits(&long, &options).await.unwrap_err();
    let AskError::Invalid(message) = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with(&format!(
            "the question is {} tokens; at most {limit} fit (context 2048 - max_tokens 256 - \
             the tutor's instructions {instruction_tokens} - ",
            limit + 1
        )),
        "{message}"
    );
    // Exactly the limit fits; so do many bytes that are few tokens.
    let at_limit = "w ".repeat(limit as usize);
    f.tutor.check_fits(&at_limit, &options).await.unwrap();
    f.tutor
        .check_fits(&"x".repeat(20_000), &options)
        .await
        .unwrap();
    // A larger answer leaves less room for the question.
    let more = AskOptions {
        max_tokens: Some(1000),
        ..AskOptions::default()
    };
    let err = f.tutor.check_fits(&at_limit, &more).await.unwrap_err();
    assert!(err.to_string().contains("max_tokens 1000"), "{err}");
    // Over MAX_QUESTION_BYTES: not counted here, refused by its bytes when asked.
    let huge = "w ".repeat(MAX_QUESTION_BYTES);
    f.tutor.check_fits(&huge, &options).await.unwrap();
    let err = f.tutor.ask(&huge, options, Origin::Typed).unwrap_err();
    assert!(err.to_string().contains("bytes long"), "{err}");
    assert_eq!(stored(&f.db), (0, 0), "a refused question is no turn");
}

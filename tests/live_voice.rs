//! The live voice loop through real ALSA: push-to-talk (`Listen` / endpoint /
//! `StopListening`), the answer spoken on the loudspeaker, barge-in, `Speak`, and the
//! `State` moving through listening / thinking / speaking.
//!
//! This machine has no sound card, so the "card" is alsa-lib's own `file` PCM plugin over
//! two FIFOs, defined in an `.asoundrc` in the daemon's `$HOME`: the microphone reads what
//! the test writes into `mic` (paced by the test at real time, 30 ms at a time), the
//! loudspeaker writes into `spk`, which the test reads at real time (a 4 KiB pipe, so the
//! daemon cannot run more than ~0.1 s ahead of "playback"). Everything from alsa-lib up is
//! the code the board runs.

mod common;

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use zbus::OwnedVariant;

/// Piper's and espeak-ng's rate: what the loudspeaker FIFO is read at.
const VOICE_RATE: usize = 22_050;

/// A played stretch: from the loudspeaker's open to its close (one answer or `Speak`).
#[derive(Debug, Clone)]
struct Playback {
    opened: Instant,
    closed: Instant,
    samples: Vec<i16>,
}

impl Playback {
    fn voiced_seconds(&self) -> f64 {
        self.samples.iter().filter(|s| s.abs() > 300).count() as f64 / VOICE_RATE as f64
    }
}

/// The fake sound card: the FIFOs, the `.asoundrc`, the writer and reader threads.
struct Card {
    home: tempfile::TempDir,
    mic_queue: Arc<Mutex<VecDeque<i16>>>,
    played: Arc<Mutex<Vec<Playback>>>,
    /// When the playback going on now began.
    playing: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
}

impl Card {
    fn new() -> Card {
        let home = tempfile::tempdir().unwrap();
        let (mic, spk) = (home.path().join("mic"), home.path().join("spk"));
        for f in [&mic, &spk] {
            let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        std::fs::write(
            home.path().join(".asoundrc"),
            format!(
                "pcm.tutor_mic {{ type file slave.pcm \"null\" file \"/dev/null\" infile \"{}\" format \"raw\" }}\n\
                 pcm.tutor_spk {{ type file slave.pcm \"null\" file \"{}\" format \"raw\" }}\n",
                mic.display(),
                spk.display()
            ),
        )
        .unwrap();
        let card = Card {
            home,
            mic_queue: Arc::default(),
            played: Arc::default(),
            playing: Arc::default(),
            stop: Arc::default(),
        };
        card.start_microphone(mic);
        card.start_loudspeaker(spk);
        card
    }

    /// Writes the queued speech, or silence, 30 ms at a time at real time.
    fn start_microphone(&self, path: PathBuf) {
        let (queue, stop) = (self.mic_queue.clone(), self.stop.clone());
        std::thread::spawn(move || {
            // Blocks until the daemon opens the microphone.
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                return;
            };
            let start = Instant::now();
            let mut frames = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let chunk: Vec<i16> = {
                    let mut q = queue.lock().unwrap();
                    (0..480).map(|_| q.pop_front().unwrap_or(0)).collect()
                };
                let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
                if f.write_all(&bytes).is_err() {
                    return; // the daemon went away
                }
                frames += 1;
                let due = start + Duration::from_millis(30) * frames;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
    }

    /// Reads each playback (open … close of the loudspeaker) at real time.
    fn start_loudspeaker(&self, path: PathBuf) {
        let (played, playing, stop) =
            (self.played.clone(), self.playing.clone(), self.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Blocks until the daemon opens the loudspeaker.
                let Ok(mut f) = std::fs::File::open(&path) else {
                    return;
                };
                use std::os::fd::AsRawFd;
                // SAFETY: fcntl on a FIFO we own; a smaller pipe keeps the writer near real time.
                unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
                let opened = Instant::now();
                *playing.lock().unwrap() = Some(opened);
                let mut samples = Vec::new();
                let mut buf = [0u8; VOICE_RATE * 2 / 50]; // 20 ms
                loop {
                    let n = f.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    samples.extend(
                        buf[..n]
                            .chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]])),
                    );
                    let due =
                        opened + Duration::from_secs_f64(samples.len() as f64 / VOICE_RATE as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                *playing.lock().unwrap() = None;
                played.lock().unwrap().push(Playback {
                    opened,
                    closed: Instant::now(),
                    samples,
                });
            }
        });
    }

    fn say(&self, samples: &[i16]) {
        let mut q = self.mic_queue.lock().unwrap();
        q.extend(samples);
        q.extend(std::iter::repeat_n(0, 480));
    }

    fn hush(&self) {
        self.mic_queue.lock().unwrap().clear();
    }

    /// When the playback going on now began, if one is.
    fn playing_since(&self) -> Option<Instant> {
        *self.playing.lock().unwrap()
    }

    /// Playbacks that had sound in them.
    fn playbacks(&self) -> Vec<Playback> {
        self.played
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.voiced_seconds() > 0.0)
            .cloned()
            .collect()
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A question spoken by the project's own voice at 16 kHz.
fn spoken(dir: &Path, text: &str) -> Vec<i16> {
    let out = dir.join(format!("{}.wav", text.len()));
    let o = std::process::Command::new(TUTORCTL)
        .args([
            "say",
            "--catalog",
            &format!("{REPO}/config/models.toml"),
            "--dir",
        ])
        .arg(models_dir())
        .args(["--rate", "16000", "--out"])
        .arg(&out)
        .arg(text)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    hound::WavReader::open(&out)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

#[derive(Debug, Clone)]
enum Event {
    Transcript(String),
    Finished(String, HashMap<String, OwnedVariant>),
    State(String),
    Speech(String),
}

/// Collects the daemon's signals, with when they came.
fn watch(bus: &Bus) -> Arc<Mutex<Vec<(Instant, Event)>>> {
    let events: Arc<Mutex<Vec<(Instant, Event)>>> = Arc::default();
    let (out, address) = (events.clone(), bus.address.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .build()
                .await
                .unwrap();
            let proxy = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
            proxy
                .add_match_rule(
                    zbus::MatchRule::builder()
                        .msg_type(zbus::message::Type::Signal)
                        .path("/org/tutord/Tutor1")
                        .build()
                        .unwrap(),
                )
                .await
                .unwrap();
            let mut stream = zbus::MessageStream::from(&conn);
            ready_tx.send(()).unwrap();
            while let Some(Ok(m)) = stream.next().await {
                let h = m.header();
                let ev = match h.member().map(|m| m.as_str()) {
                    Some("Transcript") => {
                        let (t, _): (String, bool) = m.body().deserialize().unwrap();
                        Event::Transcript(t)
                    }
                    Some("AnswerFinished") => {
                        let (t, s): (String, HashMap<String, OwnedVariant>) =
                            m.body().deserialize().unwrap();
                        Event::Finished(t, s)
                    }
                    Some("Speech") => {
                        let (id, _, _): (String, u32, Vec<u8>) = m.body().deserialize().unwrap();
                        Event::Speech(id)
                    }
                    Some("PropertiesChanged") => {
                        let (_, changed, _): (String, HashMap<String, OwnedVariant>, Vec<String>) =
                            m.body().deserialize().unwrap();
                        match changed.get("State").map(|v| String::try_from(v.clone())) {
                            Some(Ok(s)) => Event::State(s),
                            _ => continue,
                        }
                    }
                    _ => continue,
                };
                out.lock().unwrap().push((Instant::now(), ev));
            }
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    events
}

fn wait_event(
    events: &Arc<Mutex<Vec<(Instant, Event)>>>,
    timeout: Duration,
    what: &str,
    mut f: impl FnMut(&Event) -> bool,
) -> (Instant, Event) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = events.lock().unwrap().iter().find(|(_, e)| f(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}: {:?}",
            states(events)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn states(events: &Arc<Mutex<Vec<(Instant, Event)>>>) -> Vec<String> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::State(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn stat_f64(stats: &HashMap<String, OwnedVariant>, key: &str) -> Option<f64> {
    stats.get(key).and_then(|v| f64::try_from(v.clone()).ok())
}

fn stat_str(stats: &HashMap<String, OwnedVariant>, key: &str) -> String {
    stats
        .get(key)
        .and_then(|v| String::try_from(v.clone()).ok())
        .unwrap_or_default()
}

/// Whether a transcript asks "two plus two", as whisper writes it: in words, "2 plus 2",
/// "2 + 2" or "2+2".
fn says_two_plus_two(transcript: &str) -> bool {
    let t: String = transcript
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    ["twoplustwo", "2plus2", "2+2"]
        .iter()
        .any(|q| t.contains(q))
}

/// The live tests share the two cores: one daemon speaking at a time, so the barge-in
/// timings measure the daemon, not the other test.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A live test's setup: its turn on the machine, the models, the stand-in sound card, and
/// tutord READY on a fresh bus with the card as microphone and loudspeaker.
struct Live {
    _one: std::sync::MutexGuard<'static, ()>,
    card: Card,
    dir: tempfile::TempDir,
    bus: Bus,
    daemon: ShowLogOnPanic,
}

/// Starts a [`Live`] daemon answering in at most `max_tokens`, with `voice` (more `[voice]`
/// keys) after the card's devices.
fn live_daemon(max_tokens: u32, voice: &str) -> Live {
    let one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    engine_binary();
    small_model();
    fetch("whisper-tiny.en", "ggml-tiny.en.bin");
    for voice in ["piper-joe-medium", "piper-joe-medium.json", "onnxruntime"] {
        fetch(voice, "");
    }
    let card = Card::new();
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let cfg = small_model_config(
        dir.path(),
        max_tokens,
        &format!(
            "[voice]\nstt_threads = 1\ncapture_device = \"tutor_mic\"\nplayback_device = \"tutor_spk\"\n{voice}"
        ),
    );
    let home = card.home.path().to_str().unwrap().to_string();
    let daemon = ShowLogOnPanic(Daemon::start_with_config(
        &bus,
        Some(&notify.path),
        &cfg,
        &[("HOME", &home)],
    ));
    assert!(notify.wait_for("READY=1", Duration::from_secs(60)));
    Live {
        _one: one,
        card,
        dir,
        bus,
        daemon,
    }
}

#[test]
fn push_to_talk_answers_aloud_and_speech_barges_in() {
    let Live {
        _one,
        card,
        dir,
        bus,
        mut daemon,
    } = live_daemon(96, "");
    let capital = spoken(dir.path(), "What is the capital of France?");
    let story = spoken(dir.path(), "Tell me a long story about a dragon.");
    let plus = spoken(dir.path(), "What is two plus two?");
    let events = watch(&bus);

    // The microphone opens once the voice has loaded.
    let mut listening = Err(zbus::Error::Failure("not tried".into()));
    for _ in 0..300 {
        listening = call_tutor(&bus, "Listen", &());
        match &listening {
            Err(e) if e.to_string().contains("still opening") => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => break,
        }
    }
    listening.unwrap_or_else(|e| panic!("Listen: {e}"));
    assert_eq!(tutor_state(&bus), "listening");

    // 1. Push-to-talk: the question ends at the endpoint; the answer is played.
    card.say(&capital);
    let (_, finished) = wait_event(
        &events,
        Duration::from_secs(120),
        "first spoken answer",
        |e| matches!(e, Event::Finished(..)),
    );
    let Event::Finished(turn, stats) = finished else {
        unreachable!()
    };
    assert!(
        stat_str(&stats, "transcript")
            .to_lowercase()
            .contains("capital of france"),
        "{stats:?}"
    );
    let first_audio = stat_f64(&stats, "end_of_speech_to_first_audio").expect("first-audio timing");
    assert!(first_audio > 0.0, "{first_audio}");
    wait_for(Duration::from_secs(10), "the first answer played", || {
        !card.playbacks().is_empty()
    });
    let played = card.playbacks()[0].voiced_seconds();
    assert!(played > 0.3, "only {played} s of the answer was played");
    let seen = states(&events);
    for s in ["thinking", "speaking", "ready"] {
        assert!(seen.contains(&s.to_string()), "State never {s}: {seen:?}");
    }
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|(_, e)| matches!(e, Event::Speech(id) if *id == turn)),
        "the played answer also came as Speech signals"
    );

    // 2. Barge-in: speech while the tutor talks stops the answer and becomes the next question.
    events.lock().unwrap().clear();
    call_tutor(&bus, "Listen", &()).unwrap();
    card.say(&story);
    wait_for(Duration::from_secs(120), "the story being spoken", || {
        speaking(&events)
    });
    std::thread::sleep(Duration::from_millis(800));
    let interrupted_at = Instant::now();
    card.say(&plus);
    let (at, _) = wait_event(
        &events,
        Duration::from_secs(30),
        "State listening after barge-in",
        |e| matches!(e, Event::State(s) if s == "listening"),
    );
    assert!(
        at.duration_since(interrupted_at) < Duration::from_secs(2),
        "barge-in took {:?}",
        at.duration_since(interrupted_at)
    );
    let (_, story_done) = wait_event(
        &events,
        Duration::from_secs(30),
        "the story's AnswerFinished",
        |e| matches!(e, Event::Finished(..)),
    );
    let Event::Finished(_, story_stats) = story_done else {
        unreachable!()
    };
    wait_for(
        Duration::from_secs(180),
        "the second question answered",
        || {
            events
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, e)| matches!(e, Event::Finished(..)))
                .count()
                >= 2
        },
    );
    let transcripts: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Transcript(t) => Some(t.to_lowercase()),
            _ => None,
        })
        .collect();
    assert!(
        transcripts.iter().any(|t| says_two_plus_two(t)),
        "{transcripts:?}"
    );
    // The story's playback closed soon after the interruption, long before its end.
    let story_play = card
        .playbacks()
        .into_iter()
        .find(|p| p.opened < interrupted_at && p.closed > interrupted_at)
        .expect("the story was playing when interrupted");
    let cut_after = story_play.closed.duration_since(interrupted_at);
    assert!(
        cut_after < Duration::from_secs(2),
        "playback went on {cut_after:?}"
    );
    // ...and the story was cut short: its writing was stopped (on a loaded machine the
    // writing is slow and the voice keeps up with it), or, when it was all written already,
    // far less of it was played than was written.
    let words = stat_str(&story_stats, "answer").split_whitespace().count();
    let played = story_play.voiced_seconds();
    assert!(
        flag(&story_stats, "aborted") || words as f64 * 0.25 > played + 2.0,
        "the story ({words} words, not aborted) was not cut short: {played:.1} s played"
    );

    // 3. StopListening ends the question before the endpoint.
    events.lock().unwrap().clear();
    call_tutor(&bus, "Listen", &()).unwrap();
    card.say(&capital);
    std::thread::sleep(Duration::from_secs_f64(
        capital.len() as f64 / 16_000.0 + 0.2,
    ));
    card.hush();
    call_tutor(&bus, "StopListening", &()).unwrap();
    wait_event(
        &events,
        Duration::from_secs(30),
        "a transcript after StopListening",
        |e| matches!(e, Event::Transcript(t) if t.to_lowercase().contains("capital")),
    );
    wait_event(&events, Duration::from_secs(180), "its answer", |e| {
        matches!(e, Event::Finished(..))
    });
    let e = call_tutor(&bus, "StopListening", &())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("InvalidArgument") && e.contains("not listening"),
        "{e}"
    );

    // 4. Speak says a text aloud.
    wait_for(Duration::from_secs(30), "the tutor idle", || {
        tutor_state(&bus) == "ready"
    });
    let before = card.playbacks().len();
    let id: String = call_tutor(&bus, "Speak", &("Well done, that is right.",))
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert!(id.starts_with("speak-"), "{id}");
    wait_for(Duration::from_secs(30), "Speak played", || {
        card.playbacks().len() > before
    });
    let e = call_tutor(&bus, "Speak", &("",)).unwrap_err().to_string();
    assert!(e.contains("InvalidArgument"), "{e}");

    // 5. Speech stops a Speak() text too (barge-in), and becomes a question.
    wait_for(Duration::from_secs(30), "the tutor idle again", || {
        tutor_state(&bus) == "ready"
    });
    events.lock().unwrap().clear();
    let before = card.playbacks().len();
    let long = "Here is a long summary of everything we covered today, one topic after \
                another, slowly and carefully, so that nothing is forgotten before the test.";
    call_tutor(&bus, "Speak", &(long,)).unwrap();
    wait_for(Duration::from_secs(30), "the summary playing", || {
        card.playing_since().is_some()
    });
    std::thread::sleep(Duration::from_millis(500));
    let spoke_at = Instant::now();
    card.say(&plus);
    wait_event(
        &events,
        Duration::from_secs(30),
        "a question heard over Speak()",
        |e| matches!(e, Event::Transcript(t) if t.to_lowercase().contains("two") || t.contains('2')),
    );
    let summary = card
        .playbacks()
        .into_iter()
        .skip(before)
        .find(|p| p.opened < spoke_at)
        .expect("the summary's playback");
    assert!(
        summary.closed.duration_since(spoke_at) < Duration::from_secs(2),
        "Speak() went on {:?} after the speech began",
        summary.closed.duration_since(spoke_at)
    );

    // 6. A new Speak() replaces the text being spoken: ten long texts in a row are one voice
    // at a time, not ten pipelines piled up (about 8 s of audio each).
    wait_for(
        Duration::from_secs(60),
        "the tutor idle after the question",
        || tutor_state(&bus) == "ready" && card.playing_since().is_none(),
    );
    let asked = Instant::now();
    for _ in 0..10 {
        call_tutor(&bus, "Speak", &(long,)).unwrap();
    }
    wait_for(Duration::from_secs(30), "the last text playing", || {
        card.playing_since().is_some()
    });
    wait_for(
        Duration::from_secs(30),
        "the tutor idle after ten Speak()",
        || tutor_state(&bus) == "ready" && card.playing_since().is_none(),
    );
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "ten Speak() calls took {took:?}: they piled up instead of replacing each other"
    );
    assert!(
        daemon.0.child.try_wait().unwrap().is_none(),
        "tutord is still running"
    );
}

/// The daemon's log, printed when the test fails.
struct ShowLogOnPanic(Daemon);

impl Drop for ShowLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.child.kill();
            eprintln!("---- tutord's log ----\n{}", self.0.stderr());
        }
    }
}

fn speaking(events: &Arc<Mutex<Vec<(Instant, Event)>>>) -> bool {
    states(events).last().is_some_and(|s| s == "speaking")
}

fn tutor_state(bus: &Bus) -> String {
    String::try_from(tutor_property(bus, "State")).unwrap()
}

#[test]
fn without_a_microphone_listen_says_which_device_failed() {
    engine_binary();
    small_model();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(
        dir.path(),
        8,
        "[voice]\ncapture_device = \"tutord_no_such_mic\"\nplayback_device = \"\"\n",
    );
    let _daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(60)));
    let mut e = String::new();
    for _ in 0..300 {
        e = call_tutor(&bus, "Listen", &()).unwrap_err().to_string();
        if !e.contains("still opening") && !e.contains("still loading") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        e.contains("NotReady") && e.contains("tutord_no_such_mic"),
        "{e}"
    );
    // Typed questions still work.
    let turn: String = call_tutor(&bus, "Ask", &("Hi", HashMap::<String, OwnedVariant>::new()))
        .unwrap()
        .body()
        .deserialize()
        .unwrap();
    assert!(turn.starts_with("turn-"), "{turn}");
}

#[test]
fn hands_free_every_utterance_is_a_question() {
    // Every field bound: the daemon lives until the end of the test.
    let Live {
        _one,
        card,
        dir,
        bus,
        daemon: _daemon,
    } = live_daemon(16, "listen = \"always\"\nendpoint_silence_ms = 500\n");
    let question = spoken(dir.path(), "What is two plus two?");
    let events = watch(&bus);
    // No Listen(): the microphone is open once Listen() would no longer say "still opening".
    wait_for(Duration::from_secs(60), "the microphone open", || {
        call_tutor(&bus, "StopListening", &())
            .unwrap_err()
            .to_string()
            .contains("not listening")
    });
    card.say(&question);
    let (_, finished) = wait_event(&events, Duration::from_secs(120), "an answer", |e| {
        matches!(e, Event::Finished(..))
    });
    let Event::Finished(_, stats) = finished else {
        unreachable!()
    };
    let heard = stat_str(&stats, "transcript");
    assert!(says_two_plus_two(&heard), "{stats:?}");
    assert!(states(&events).contains(&"listening".to_string()));
}

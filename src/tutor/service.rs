//! A whole turn, for every entry point: the question answered in order (stored when it
//! reaches the engine), the answer stored, calibration told, the answer spoken (for a
//! spoken question), and every step published as an [`Event`]. `Speak()` texts go through
//! here too, so that the tutor's one voice never talks over an answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, oneshot, watch};

use super::conversation::{AskError, AskOptions, Conversation, TurnOutcome};
use crate::config::{LlmConfig, TutorConfig};
use crate::engine::GenStats;
use crate::state::Activity;
use crate::store::{SessionRow, Store};
use crate::sync::Cancel;
pub(crate) use crate::sync::lock;
use crate::voice::Voice;
use crate::voice::pipeline::Heard;
use crate::voice::speaker::{Spoken, pcm16le};

/// Events waiting for a slow listener before the oldest are dropped (it is told how many).
const EVENT_BACKLOG: usize = 16 * 1024;

/// What the tutor does, in order for each turn: `Transcript` (spoken questions), `Started`,
/// `Piece`s and `Speech`es, then `Finished` after the last sentence was spoken.
#[derive(Debug, Clone)]
pub enum Event {
    /// What speech recognition heard; `is_final` for the finished transcript of an utterance.
    Transcript {
        text: String,
        is_final: bool,
    },
    Started {
        turn: String,
    },
    Piece {
        turn: String,
        piece: String,
    },
    /// A sentence of spoken audio for `id` (a turn id or `speak-N`): mono 16-bit LE PCM.
    Speech {
        id: String,
        sample_rate: u32,
        pcm: Arc<Vec<u8>>,
    },
    Finished {
        turn: String,
        report: Arc<TurnReport>,
    },
    /// The current session changed (started, ended, or begun by a question).
    SessionChanged,
}

/// How a turn ended, with what was heard and spoken for it.
#[derive(Debug, Clone)]
pub struct TurnReport {
    pub outcome: TurnOutcome,
    pub heard: Option<Heard>,
    pub spoken: Option<Spoken>,
}

impl TurnReport {
    /// From the end of speech to the first sound of the answer, for a spoken question.
    pub fn end_of_speech_to_first_audio(&self) -> Option<f64> {
        let h = self.heard.as_ref()?;
        let at = self.spoken.as_ref()?.first_audio?;
        Some(at.duration_since(h.received).as_secs_f64())
    }

    /// From the end of speech to the first piece of the answer, for a spoken question.
    pub fn end_of_speech_to_first_token(&self) -> Option<f64> {
        let h = self.heard.as_ref()?;
        Some(h.to_transcript.as_secs_f64() + self.outcome.time_to_first_token)
    }
}

/// Where a question came from, and so how its answer is given.
pub enum Origin {
    /// Typed (`Ask`): the answer is written only.
    Typed,
    /// A recording (`ListenWav`): written, and spoken as `Speech` events.
    Recording(Heard),
    /// The microphone: written, and spoken on the loudspeaker until `cancel` is set;
    /// `done` is told when it has been spoken (or was stopped).
    Live {
        heard: Heard,
        cancel: Cancel,
        done: oneshot::Sender<()>,
    },
}

impl Origin {
    fn source(&self) -> &'static str {
        match self {
            Origin::Typed => "text",
            _ => "voice",
        }
    }
}

/// A question on its way to the engine, to be stored when it starts.
struct Asked {
    /// Its session, or None when the store could not give one.
    session: Option<i64>,
    source: &'static str,
    text: String,
}

/// Why `Speak()` was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpeakError {
    #[error("the text must be 1 to 2000 bytes, not {0}")]
    Invalid(usize),
    #[error("an answer is being written; speak when the tutor is idle")]
    Busy,
    #[error("no voice is loaded")]
    NoVoice,
}

/// Told of every answer that ended without an error (the planner calibrates from it).
pub type OnAnswer = Box<dyn Fn(&GenStats) + Send + Sync>;

/// The current session and the store rows of the turns running now.
#[derive(Default)]
pub(super) struct Sessions {
    pub current: Option<SessionRow>,
    /// Turn id → its row in the store, while the turn runs.
    pub rows: HashMap<String, i64>,
}

pub(super) struct Inner {
    pub conversation: Conversation,
    /// Lock order, everywhere: `sessions`, then `store`.
    pub sessions: Mutex<Sessions>,
    pub store: Arc<Mutex<Store>>,
    pub llm: LlmConfig,
    pub config: TutorConfig,
    voice: Voice,
    on_answer: OnAnswer,
    activity: watch::Sender<Activity>,
    events: broadcast::Sender<Event>,
    next_speech: AtomicU64,
}

/// The tutor's handle: cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub(super) inner: Arc<Inner>,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conversation: Conversation,
        store: Arc<Mutex<Store>>,
        llm: LlmConfig,
        config: TutorConfig,
        voice: Voice,
        on_answer: OnAnswer,
        activity: watch::Sender<Activity>,
    ) -> Self {
        match lock(&store).last_turn_number() {
            Ok(n) => conversation.number_turns_after(n),
            Err(e) => tracing::error!("{e}; turn ids start again at turn-1"),
        }
        Self {
            inner: Arc::new(Inner {
                conversation,
                sessions: Mutex::new(Sessions::default()),
                store,
                llm,
                config,
                voice,
                on_answer,
                activity,
                events: broadcast::channel(EVENT_BACKLOG).0,
                next_speech: AtomicU64::new(1),
            }),
        }
    }

    /// Every event from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub(super) fn publish(&self, event: Event) {
        // No listener (no bus yet, a test) is not an error.
        let _ = self.inner.events.send(event);
    }

    /// Whether questions are pending (being answered or waiting).
    pub fn busy(&self) -> bool {
        self.inner.conversation.busy()
    }

    /// Stops the answer being written and drops the questions waiting; each ends aborted.
    pub fn abort(&self) {
        self.inner.conversation.abort();
    }

    /// Refuses a question that cannot fit the model's context even alone (`Ask` checks
    /// this before asking; see `Conversation::check_fits`).
    pub async fn check_fits(&self, text: &str, options: &AskOptions) -> Result<(), AskError> {
        self.inner.conversation.check_fits(text, options).await
    }

    /// Asks `text`; returns the turn id at once. The turn runs after those before it.
    pub fn ask(&self, text: &str, options: AskOptions, origin: Origin) -> Result<String, AskError> {
        if let Origin::Recording(h) | Origin::Live { heard: h, .. } = &origin {
            self.publish(Event::Transcript {
                text: h.text.clone(),
                is_final: true,
            });
        }
        let turn = self.inner.conversation.prepare(text, &options)?;
        let id = turn.id.clone();
        // The answer is given even when the store fails (a full disk): the error is logged.
        let session = self
            .session_for_question(options.new_session)
            .map_err(|e| tracing::error!("cannot store {id}: {e}"))
            .ok();
        let question = Asked {
            session,
            source: origin.source(),
            text: text.trim().to_string(),
        };
        let this = self.clone();
        tokio::spawn(async move { this.run(turn, question, origin).await });
        Ok(id)
    }

    async fn run(self, turn: super::Prepared, question: Asked, origin: Origin) {
        let id = turn.id.clone();
        let (heard, aloud, cancel, done) = match origin {
            Origin::Typed => (None, false, None, None),
            Origin::Recording(h) => (Some(h), false, Some(Cancel::new()), None),
            Origin::Live {
                heard,
                cancel,
                done,
            } => (Some(heard), true, Some(cancel), Some(done)),
        };
        let mut mouth = None;
        let mut started = false;
        let outcome = self
            .inner
            .conversation
            .run(
                turn,
                || {
                    started = true;
                    // Stored once it runs, not when asked: a question refused or dropped
                    // before it reached the engine is no turn of the session.
                    if let Some(session) = question.session {
                        self.record_question(session, &id, question.source, &question.text);
                    }
                    self.inner.activity.send_modify(|a| a.thinking += 1);
                    self.publish(Event::Started { turn: id.clone() });
                },
                |piece| {
                    if let Some(cancel) = &cancel
                        && mouth.is_none()
                    {
                        mouth = self.mouth(&id, aloud, cancel.clone());
                    }
                    if let Some(m) = &mut mouth {
                        m.piece(piece);
                    }
                    self.publish(Event::Piece {
                        turn: id.clone(),
                        piece: piece.to_string(),
                    });
                },
            )
            .await;
        self.record_answer(&id, &outcome);
        if outcome.error.is_none() {
            (self.inner.on_answer)(&outcome.stats);
        }
        // A spoken answer ends when its last sentence is spoken, so a client has all the
        // audio when `Finished` comes.
        let spoken = match mouth {
            Some(m) if outcome.stats.truncated => Some(m.finish_cut().await),
            Some(m) => Some(m.finish().await),
            None => None,
        };
        let report = TurnReport {
            outcome,
            heard,
            spoken,
        };
        log_turn(&id, &report);
        self.publish(Event::Finished {
            turn: id,
            report: Arc::new(report),
        });
        // Thinking ends with the speaking, so State goes thinking → speaking → ready without
        // a ready in between.
        if started {
            self.inner
                .activity
                .send_modify(|a| a.thinking = a.thinking.saturating_sub(1));
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    fn mouth(&self, id: &str, aloud: bool, cancel: Cancel) -> Option<crate::voice::mouth::Mouth> {
        let events = self.inner.events.clone();
        self.inner
            .voice
            .mouth(id, aloud, cancel, move |id, speech| {
                let _ = events.send(Event::Speech {
                    id: id.to_string(),
                    sample_rate: speech.sample_rate,
                    pcm: Arc::new(pcm16le(&speech.samples)),
                });
            })
    }

    /// `Speak(text)`: says `text` with the tutor's voice (`Speech` events with id `speak-N`,
    /// and the loudspeaker); returns the id at once. Refused while an answer is written. One
    /// text at a time: a new one stops the one being spoken (as a person would start over),
    /// so calls in a loop cannot pile up speech pipelines.
    pub fn speak(&self, text: &str) -> Result<String, SpeakError> {
        if text.trim().is_empty() || text.len() > 2000 {
            return Err(SpeakError::Invalid(text.len()));
        }
        if self.busy() {
            return Err(SpeakError::Busy);
        }
        let n = self.inner.next_speech.fetch_add(1, Ordering::Relaxed);
        let id = format!("speak-{n}");
        let cancel = Cancel::new();
        let mut mouth = self
            .mouth(&id, true, cancel.clone())
            .ok_or(SpeakError::NoVoice)?;
        // Registered while it speaks, so that barge-in (and the next Speak) can stop it.
        let voice = self.inner.voice.clone();
        let replaced = voice.hush();
        if replaced > 0 {
            tracing::info!(id = %id, "{id} replaces the text being spoken");
        }
        voice.add_speech(cancel.clone());
        mouth.piece(text);
        let (id2, chars) = (id.clone(), text.chars().count());
        tokio::spawn(async move {
            let spoken = mouth.finish().await;
            voice.remove_speech(&cancel);
            tracing::info!(
                id = %id2,
                spoken_seconds = spoken.audio.as_secs_f64(),
                "spoke {chars} characters ({:.1} s of audio)",
                spoken.audio.as_secs_f64()
            );
        });
        Ok(id)
    }
}

/// One journal line per answer (and one for a spoken turn's stage timings).
fn log_turn(turn: &str, r: &TurnReport) {
    let (o, s) = (&r.outcome, &r.outcome.stats);
    if let (Some(h), Some(to_first_token)) = (&r.heard, r.end_of_speech_to_first_token()) {
        let first_audio = r.end_of_speech_to_first_audio();
        tracing::info!(
            turn,
            end_of_speech_to_transcript = h.to_transcript.as_secs_f64(),
            end_of_speech_to_first_token = to_first_token,
            end_of_speech_to_first_audio = first_audio.unwrap_or(-1.0),
            "spoken turn {turn}: end of speech → transcript {:.2} s → first token {:.2} s → first audio {}",
            h.to_transcript.as_secs_f64(),
            to_first_token,
            first_audio.map_or("none".to_string(), |s| format!("{s:.2} s"))
        );
    }
    match &o.error {
        Some(e) => tracing::warn!(turn, "answer failed: {e}"),
        None => tracing::info!(
            turn,
            prompt_tokens = s.prompt_tokens,
            reused_tokens = s.reused_tokens,
            generated_tokens = s.generated_tokens,
            time_to_first_token = o.time_to_first_token,
            tokens_per_second = s.decode_tokens_per_second,
            aborted = s.aborted,
            truncated = s.truncated,
            "answered {turn}: {} tokens at {:.1} tok/s, first after {:.3} s",
            s.generated_tokens,
            s.decode_tokens_per_second,
            o.time_to_first_token
        ),
    }
}

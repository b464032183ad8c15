//! The live voice loop: microphone → VAD → whisper → a turn whose answer is spoken on the
//! loudspeaker, with push-to-talk (`Listen()` / `StopListening()`), hands-free listening
//! (`[voice] listen = "always"`) and barge-in (speech while the tutor talks stops the
//! answer and becomes the next question).
//!
//! The loop owns the microphone's chunks and one VAD. It is a small state machine:
//!
//! ```text
//!   Idle ──Listen() / speech (always)──▶ Listening ──endpoint / StopListening()──▶ Answering
//!    ▲                                     ▲                                       │
//!    └──────── answer spoken ──────────────┼──── speech (barge-in) / Listen() ◀────┘
//! ```
//!
//! What a turn needs from the tutor (asking what was heard, its answer spoken; stopping an
//! answer) comes through [`Host`], which the daemon implements with the tutor's service:
//! the voice stays below the tutor, and this module free of D-Bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::audio::Microphone;
use super::live_handle::{Command, LiveError, LiveHandle};
use super::pipeline::Heard;
use super::service::Voice;
use super::vad::{Vad, VadEvent};
use crate::config::ListenMode;
use crate::sync::Cancel;

/// Push-to-talk gives up when no speech starts this long after `Listen()`.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop needs from the tutor.
pub trait Host: Send + Sync + 'static {
    /// Stops the answer being written and the questions waiting.
    fn abort(&self);
    /// Asks what was heard as a spoken turn (its transcript is published); its answer is
    /// spoken on the loudspeaker until `cancel` is set. Returns the turn id and a receiver
    /// that completes when the answer has been spoken (or was aborted).
    fn ask(&self, heard: Heard, cancel: Cancel) -> Result<(String, oneshot::Receiver<()>), String>;
}

enum Phase {
    /// Waiting: in `always` mode the VAD runs and speech starts a question.
    Idle,
    /// Taking a question.
    Listening { since: Instant },
    /// The question is being transcribed (the microphone is drained meanwhile, unheard).
    Transcribing,
    /// A question is being answered; the VAD runs for barge-in. `turn` tells this answer's
    /// completion from an interrupted one's.
    Answering { turn: u64, cancel: Cancel },
}

/// Opens the configured devices and starts the loop when there is a microphone.
pub async fn start(voice: Voice, host: Arc<dyn Host>) {
    let Some(mic) = voice.open_devices().await else {
        return;
    };
    let (tx, rx) = mpsc::channel(8);
    voice.set_live(Ok(LiveHandle { tx }));
    tokio::spawn(run(voice, host, mic, rx));
}

struct Loop {
    voice: Voice,
    host: Arc<dyn Host>,
    vad: Vad,
    phase: Phase,
    turns: u64,
    spoken_tx: mpsc::UnboundedSender<u64>,
    heard_tx: mpsc::UnboundedSender<Result<Heard, super::pipeline::VoiceError>>,
}

async fn run(
    voice: Voice,
    host: Arc<dyn Host>,
    mut mic: Microphone,
    mut commands: mpsc::Receiver<Command>,
) {
    let (spoken_tx, mut spoken) = mpsc::unbounded_channel();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut l = Loop {
        vad: Vad::new(voice.vad_config()),
        voice,
        host,
        phase: Phase::Idle,
        turns: 0,
        spoken_tx,
        heard_tx,
    };
    loop {
        tokio::select! {
            chunk = mic.chunks.recv() => match chunk {
                Some(c) => l.audio(&c),
                None => break,
            },
            Some(h) = heard.recv() => l.heard(h),
            Some(cmd) = commands.recv() => match cmd {
                Command::Listen(reply) => {
                    l.listen();
                    let _ = reply.send(Ok(()));
                }
                Command::StopListening(reply) => {
                    let (result, utterance) = l.stop_listening();
                    let _ = reply.send(result);
                    if let Some(samples) = utterance {
                        l.question(samples);
                    }
                }
            },
            Some(turn) = spoken.recv() => {
                if matches!(l.phase, Phase::Answering { turn: t, .. } if t == turn) {
                    l.phase = Phase::Idle;
                    l.vad = Vad::new(l.voice.vad_config());
                }
            }
        }
    }
    l.set_listening(false);
    let why = format!("the microphone '{}' stopped", mic.device);
    l.voice.set_live(Err(why));
}

impl Loop {
    fn set_listening(&self, on: bool) {
        self.voice.activity(|a| a.listening = on);
    }

    fn listen(&mut self) {
        if let Phase::Answering { cancel, .. } = &self.phase {
            self.interrupt(cancel.clone(), "Listen()");
        }
        self.hush("Listen()");
        if !matches!(self.phase, Phase::Listening { .. }) {
            self.vad = Vad::new(self.voice.vad_config());
            self.phase = Phase::Listening {
                since: Instant::now(),
            };
            self.set_listening(true);
        }
    }

    fn stop_listening(&mut self) -> (Result<(), LiveError>, Option<Vec<f32>>) {
        if !matches!(self.phase, Phase::Listening { .. }) {
            return (Err(LiveError::NotListening), None);
        }
        match self.vad.finish() {
            Some(u) => (Ok(()), Some(u.samples)),
            None => {
                self.idle();
                (Err(LiveError::NothingHeard), None)
            }
        }
    }

    /// Stops the answer being spoken: its playback and its generation.
    fn interrupt(&self, cancel: Cancel, by: &str) {
        cancel.cancel();
        self.host.abort();
        tracing::info!("barge-in: {by} stopped the answer being spoken");
    }

    /// Stops the `Speak()` texts being spoken.
    fn hush(&self, by: &str) {
        let n = self.voice.hush();
        if n > 0 {
            tracing::info!("barge-in: {by} stopped {n} Speak() text(s) being spoken");
        }
    }

    fn idle(&mut self) {
        self.phase = Phase::Idle;
        self.vad = Vad::new(self.voice.vad_config());
        self.set_listening(false);
    }

    fn audio(&mut self, chunk: &[f32]) {
        let always = self.voice.config().listen == ListenMode::Always;
        let barge_in = self.voice.config().barge_in;
        let feed = match self.phase {
            // Between questions the VAD runs hands-free, and for barge-in while Speak() talks.
            Phase::Idle => always || (barge_in && self.voice.speaking_texts()),
            Phase::Listening { .. } => true,
            Phase::Transcribing => false,
            Phase::Answering { .. } => barge_in,
        };
        if !feed {
            return;
        }
        for event in self.vad.push(chunk) {
            match (&self.phase, event) {
                (Phase::Idle, VadEvent::SpeechStart(_)) => {
                    if barge_in {
                        self.hush("speech");
                    }
                    self.phase = Phase::Listening {
                        since: Instant::now(),
                    };
                    self.set_listening(true);
                }
                (Phase::Answering { cancel, .. }, VadEvent::SpeechStart(_)) => {
                    // The VAD is in speech already: it goes on collecting the new question.
                    self.interrupt(cancel.clone(), "speech");
                    self.phase = Phase::Listening {
                        since: Instant::now(),
                    };
                    self.set_listening(true);
                }
                (Phase::Listening { .. }, VadEvent::Utterance(u)) => {
                    self.question(u.samples);
                    return;
                }
                _ => {}
            }
        }
        if let Phase::Listening { since } = self.phase
            && !self.vad.in_speech()
            && since.elapsed() > LISTEN_TIMEOUT
        {
            tracing::info!(
                "nothing heard {} s after Listen(); listening stopped",
                LISTEN_TIMEOUT.as_secs()
            );
            self.idle();
        }
    }

    /// An utterance ended: transcribe it on a task of its own; [`Loop::heard`] asks it.
    fn question(&mut self, samples: Vec<f32>) {
        let received = Instant::now();
        self.set_listening(false);
        self.phase = Phase::Transcribing;
        self.vad = Vad::new(self.voice.vad_config());
        let (voice, tx) = (self.voice.clone(), self.heard_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(voice.hear_utterance(samples, received).await);
        });
    }

    /// The transcript is there: ask it, its answer spoken aloud.
    fn heard(&mut self, heard: Result<Heard, super::pipeline::VoiceError>) {
        if !matches!(self.phase, Phase::Transcribing) {
            return; // Listen() came meanwhile: the user went on talking.
        }
        self.phase = Phase::Idle;
        let heard = match heard {
            Ok(h) => h,
            Err(e) => {
                tracing::info!("an utterance was not a question: {e}");
                return;
            }
        };
        let cancel = Cancel::new();
        match self.host.ask(heard, cancel.clone()) {
            Ok((_turn, done)) => {
                self.turns += 1;
                let turn = self.turns;
                let tx = self.spoken_tx.clone();
                tokio::spawn(async move {
                    let _ = done.await;
                    let _ = tx.send(turn);
                });
                self.phase = Phase::Answering { turn, cancel };
            }
            Err(e) => tracing::warn!("cannot ask what was heard: {e}"),
        }
    }
}

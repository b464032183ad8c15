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
//! What a turn needs from the D-Bus side (the `Transcript` signal, starting the turn with its
//! spoken answer) comes through [`Host`], so this module stays free of D-Bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::audio::{Loudspeaker, Microphone};
use super::pipeline::Heard;
use super::vad::{Vad, VadEvent};
use crate::config::ListenMode;
use crate::daemon::Context;

/// Push-to-talk gives up when no speech starts this long after `Listen()`.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The sound devices as opened at boot: each, or why it is not there.
pub struct Devices {
    pub live: Result<LiveHandle, String>,
    pub speaker: Result<Arc<Loudspeaker>, String>,
    /// The stop switches of the `Speak()` texts being spoken: barge-in and `Listen()` stop
    /// them as they stop an answer.
    pub speeches: Vec<Arc<AtomicBool>>,
}

impl Devices {
    /// Stops every `Speak()` text being spoken; returns how many there were.
    pub fn hush(&mut self) -> usize {
        for s in &self.speeches {
            s.store(true, Ordering::Relaxed);
        }
        std::mem::take(&mut self.speeches).len()
    }
}

impl Default for Devices {
    fn default() -> Self {
        Self {
            live: Err("the microphone is still opening".into()),
            speaker: Err("the loudspeaker is still opening".into()),
            speeches: Vec::new(),
        }
    }
}

/// Why a live-voice request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LiveError {
    #[error("no microphone: {0}")]
    NoMicrophone(String),
    #[error("not listening: call Listen() first")]
    NotListening,
    #[error("nothing was heard before StopListening()")]
    NothingHeard,
    #[error("the voice loop has stopped (the microphone failed; see the journal)")]
    Stopped,
}

/// What the loop needs from the rest of the daemon.
pub trait Host: Send + Sync + 'static {
    /// Publishes what was heard (`Transcript` signal).
    fn transcript(&self, text: &str, is_final: bool);
    /// Asks what was heard as a spoken turn; its answer is spoken on the loudspeaker until
    /// `cancel` is set. Returns the turn id and a receiver that completes when the answer
    /// has been spoken (or was aborted).
    fn ask(
        &self,
        heard: Heard,
        cancel: Arc<AtomicBool>,
    ) -> Result<(String, oneshot::Receiver<()>), String>;
}

enum Command {
    Listen(oneshot::Sender<Result<(), LiveError>>),
    StopListening(oneshot::Sender<Result<(), LiveError>>),
}

/// The D-Bus methods' way into the loop.
#[derive(Clone)]
pub struct LiveHandle {
    tx: mpsc::Sender<Command>,
}

impl LiveHandle {
    pub async fn listen(&self) -> Result<(), LiveError> {
        self.call(Command::Listen).await
    }

    pub async fn stop_listening(&self) -> Result<(), LiveError> {
        self.call(Command::StopListening).await
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), LiveError>>) -> Command,
    ) -> Result<(), LiveError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| LiveError::Stopped)?;
        rx.await.map_err(|_| LiveError::Stopped)?
    }
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
    Answering { turn: u64, cancel: Arc<AtomicBool> },
}

/// Opens the configured devices (blocking work on blocking threads) and starts the loop
/// when there is a microphone. Devices that do not open are named in the journal and the
/// daemon goes on without them.
pub async fn start(ctx: Arc<Context>, host: Arc<dyn Host>) {
    let v = &ctx.config.voice;
    let (capture, playback) = (v.capture_device.clone(), v.playback_device.clone());
    let speaker = if playback.is_empty() {
        Err("none configured ([voice] playback_device is empty)".to_string())
    } else {
        tokio::task::spawn_blocking(move || Loudspeaker::open(&playback))
            .await
            .expect("opening the loudspeaker does not panic")
            .map(Arc::new)
            .map_err(|e| e.to_string())
    };
    match &speaker {
        Ok(s) => tracing::info!("loudspeaker: ALSA '{}'", s.device),
        Err(e) => tracing::warn!("spoken answers go only to Speech signals: {e}"),
    }
    ctx.audio_lock().speaker = speaker;

    let mic = if capture.is_empty() {
        Err("none configured ([voice] capture_device is empty)".to_string())
    } else {
        tokio::task::spawn_blocking(move || Microphone::open(&capture))
            .await
            .expect("opening the microphone does not panic")
            .map_err(|e| e.to_string())
    };
    match mic {
        Ok(mic) => {
            tracing::info!(
                "microphone: ALSA '{}', listening {}",
                mic.device,
                ctx.config.voice.listen.as_str()
            );
            let (tx, rx) = mpsc::channel(8);
            ctx.audio_lock().live = Ok(LiveHandle { tx });
            tokio::spawn(run(ctx, host, mic, rx));
        }
        Err(e) => {
            tracing::warn!("spoken questions come only from ListenWav: {e}");
            ctx.audio_lock().live = Err(e);
        }
    }
}

struct Loop {
    ctx: Arc<Context>,
    host: Arc<dyn Host>,
    vad: Vad,
    phase: Phase,
    turns: u64,
    spoken_tx: mpsc::UnboundedSender<u64>,
    heard_tx: mpsc::UnboundedSender<Result<Heard, super::pipeline::VoiceError>>,
}

async fn run(
    ctx: Arc<Context>,
    host: Arc<dyn Host>,
    mut mic: Microphone,
    mut commands: mpsc::Receiver<Command>,
) {
    let (spoken_tx, mut spoken) = mpsc::unbounded_channel();
    let (heard_tx, mut heard) = mpsc::unbounded_channel();
    let mut l = Loop {
        vad: Vad::new(ctx.vad_config()),
        ctx,
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
                    l.vad = Vad::new(l.ctx.vad_config());
                }
            }
        }
    }
    l.set_listening(false);
    let why = format!("the microphone '{}' stopped", mic.device);
    l.ctx.audio_lock().live = Err(why);
}

impl Loop {
    fn set_listening(&self, on: bool) {
        self.ctx.activity(|a| a.listening = on);
    }

    fn listen(&mut self) {
        if let Phase::Answering { cancel, .. } = &self.phase {
            self.interrupt(cancel.clone(), "Listen()");
        }
        self.hush("Listen()");
        if !matches!(self.phase, Phase::Listening { .. }) {
            self.vad = Vad::new(self.ctx.vad_config());
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
    fn interrupt(&self, cancel: Arc<AtomicBool>, by: &str) {
        cancel.store(true, Ordering::Relaxed);
        self.ctx.tutor.abort();
        tracing::info!("barge-in: {by} stopped the answer being spoken");
    }

    /// Stops the `Speak()` texts being spoken.
    fn hush(&self, by: &str) {
        let n = self.ctx.audio_lock().hush();
        if n > 0 {
            tracing::info!("barge-in: {by} stopped {n} Speak() text(s) being spoken");
        }
    }

    fn idle(&mut self) {
        self.phase = Phase::Idle;
        self.vad = Vad::new(self.ctx.vad_config());
        self.set_listening(false);
    }

    fn audio(&mut self, chunk: &[f32]) {
        let always = self.ctx.config.voice.listen == ListenMode::Always;
        let barge_in = self.ctx.config.voice.barge_in;
        let feed = match self.phase {
            // Between questions the VAD runs hands-free, and for barge-in while Speak() talks.
            Phase::Idle => always || (barge_in && !self.ctx.audio_lock().speeches.is_empty()),
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
        self.vad = Vad::new(self.ctx.vad_config());
        let (ctx, tx) = (self.ctx.clone(), self.heard_tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(ctx.hear_utterance(samples, received).await);
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
        self.host.transcript(&heard.text, true);
        let cancel = Arc::new(AtomicBool::new(false));
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

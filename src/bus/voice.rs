//! The voice's D-Bus side: the `State` that follows the tutor's activity, spoken answers as
//! `Speech` signals and on the loudspeaker, and the live loop's way to start turns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use zbus::object_server::{InterfaceRef, SignalEmitter};

use super::Tutor;
use crate::daemon::Context;
use crate::tutor::AskOptions;
use crate::voice::audio::Loudspeaker;
use crate::voice::pipeline::Heard;
use crate::voice::speaker::{Speaker, Spoken, pcm16le};
use crate::voice::tts::Speech;

/// Publishes `State` whenever the activity changes, once the daemon is ready (boot states
/// belong to the boot sequence). A task of its own, so that changes made inside interface
/// methods never take the interface lock they hold.
pub async fn publish_activity(ctx: Arc<Context>, iface: InterfaceRef<Tutor>) {
    let mut rx = ctx.watch_activity();
    while rx.changed().await.is_ok() {
        let state = rx.borrow_and_update().state();
        let r = Tutor::update(&iface, |s| {
            if s.state.is_active() {
                s.state = state;
            }
        })
        .await;
        if let Err(e) = r {
            tracing::warn!("cannot emit PropertiesChanged: {e}");
        }
    }
}

/// How a turn's answer is spoken.
pub(crate) struct Voice {
    /// What was heard, for a spoken question (its timings go into `AnswerFinished`).
    pub heard: Option<Heard>,
    /// Played here too when set (the live loop); `Speech` signals always carry the audio.
    pub speaker: Option<Arc<Loudspeaker>>,
    /// Set to stop speaking (barge-in).
    pub cancel: Arc<AtomicBool>,
    /// Told when the answer has been spoken.
    pub done: Option<oneshot::Sender<()>>,
}

impl Voice {
    /// A WAV question's answer: `Speech` signals only.
    pub fn signals_only(heard: Heard) -> Self {
        Self {
            heard: Some(heard),
            speaker: None,
            cancel: Arc::new(AtomicBool::new(false)),
            done: None,
        }
    }
}

/// Speaking one text: sentences → TTS → `Speech` signals → the loudspeaker, each stage
/// running ahead of the next so the sentences follow each other without gaps.
pub(crate) struct Mouth {
    speaker: Speaker,
    played: tokio::task::JoinHandle<()>,
}

impl Mouth {
    /// None when no voice is loaded (the answer is then only written).
    pub fn start(
        ctx: &Arc<Context>,
        emitter: &SignalEmitter<'static>,
        id: &str,
        loudspeaker: Option<Arc<Loudspeaker>>,
        cancel: Arc<AtomicBool>,
    ) -> Option<Mouth> {
        let tts = ctx.tts()?;
        let (tx, rx) = mpsc::unbounded_channel::<Speech>();
        let played = tokio::spawn(play(ctx.clone(), rx, loudspeaker, cancel.clone()));
        let emitter = emitter.clone();
        let id = id.to_string();
        let speaker = Speaker::start_cancellable(tts, cancel.clone(), move |speech: Speech| {
            let (emitter, id, tx, cancel) =
                (emitter.clone(), id.clone(), tx.clone(), cancel.clone());
            async move {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let pcm = pcm16le(&speech.samples);
                if let Err(e) = Tutor::speech(&emitter, &id, speech.sample_rate, &pcm).await {
                    tracing::warn!("cannot emit Speech: {e}");
                }
                let _ = tx.send(speech);
            }
        });
        Some(Mouth { speaker, played })
    }

    pub fn piece(&mut self, text: &str) {
        self.speaker.piece(text);
    }

    /// Speaks the rest; returns when everything was played (or interrupted).
    pub async fn finish(self) -> Spoken {
        let spoken = self.speaker.finish().await;
        let _ = self.played.await;
        spoken
    }
}

/// Plays sentences in order; the tutor is `speaking` from the first to the end.
async fn play(
    ctx: Arc<Context>,
    mut rx: mpsc::UnboundedReceiver<Speech>,
    loudspeaker: Option<Arc<Loudspeaker>>,
    cancel: Arc<AtomicBool>,
) {
    let mut speaking = false;
    while let Some(speech) = rx.recv().await {
        if !speaking {
            speaking = true;
            ctx.activity(|a| a.speaking += 1);
        }
        let Some(ls) = loudspeaker.clone() else {
            continue;
        };
        if cancel.load(Ordering::Relaxed) {
            continue;
        }
        let c = cancel.clone();
        let played =
            tokio::task::spawn_blocking(move || ls.play(&speech.samples, speech.sample_rate, &c))
                .await
                .expect("playback does not panic");
        if let Err(e) = played {
            tracing::warn!("{e}");
        }
    }
    if let Some(ls) = loudspeaker {
        let _ = tokio::task::spawn_blocking(move || ls.finish()).await;
    }
    if speaking {
        ctx.activity(|a| a.speaking = a.speaking.saturating_sub(1));
    }
}

/// `Speak(text)`: speaks `text` as `Speech` signals (id `speak-N`) and on the loudspeaker.
pub(crate) fn speak(
    ctx: &Arc<Context>,
    emitter: &SignalEmitter<'_>,
    text: &str,
) -> Result<String, String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = format!("speak-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let speaker = ctx.audio_lock().speaker.as_ref().ok().cloned();
    let emitter = emitter.to_owned();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut mouth = Mouth::start(ctx, &emitter, &id, speaker, cancel.clone())
        .ok_or_else(|| "no voice is loaded".to_string())?;
    // Registered while it speaks, so that barge-in can stop it.
    ctx.audio_lock().speeches.push(cancel.clone());
    mouth.piece(text);
    let (id2, chars, ctx) = (id.clone(), text.chars().count(), ctx.clone());
    tokio::spawn(async move {
        let spoken = mouth.finish().await;
        ctx.audio_lock()
            .speeches
            .retain(|s| !Arc::ptr_eq(s, &cancel));
        tracing::info!(
            id = %id2,
            spoken_seconds = spoken.audio.as_secs_f64(),
            "spoke {chars} characters ({:.1} s of audio)",
            spoken.audio.as_secs_f64()
        );
    });
    Ok(id)
}

/// The live loop's host: what it hears becomes a turn like `ListenWav`'s, spoken aloud.
pub(crate) struct BusHost {
    pub ctx: Arc<Context>,
}

impl crate::voice::live::Host for BusHost {
    fn transcript(&self, text: &str, is_final: bool) {
        let Some(iface) = self.ctx.iface() else {
            return;
        };
        let text = text.to_string();
        tokio::spawn(async move {
            if let Err(e) = Tutor::transcript(iface.signal_emitter(), &text, is_final).await {
                tracing::warn!("cannot emit Transcript: {e}");
            }
        });
    }

    fn ask(
        &self,
        heard: Heard,
        cancel: Arc<AtomicBool>,
    ) -> Result<(String, oneshot::Receiver<()>), String> {
        let (tx, rx) = oneshot::channel();
        let text = heard.text.clone();
        let voice = Voice {
            heard: Some(heard),
            speaker: self.ctx.audio_lock().speaker.as_ref().ok().cloned(),
            cancel,
            done: Some(tx),
        };
        let turn = super::tutor::start_turn(&self.ctx, &text, AskOptions::default(), Some(voice))
            .map_err(|e| e.to_string())?;
        Ok((turn, rx))
    }
}

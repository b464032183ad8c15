//! Speaking one text (an answer as it is written, or a `Speak()` text): sentences → TTS →
//! the caller's `emit` (which publishes each sentence's audio) → the loudspeaker, each stage
//! running ahead of the next so that the sentences follow each other without gaps.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::audio::Loudspeaker;
use super::speaker::{Speaker, Spoken};
use super::tts::{Speech, Synthesizer};
use crate::state::Activity;
use crate::sync::Cancel;

pub struct Mouth {
    speaker: Speaker,
    played: tokio::task::JoinHandle<()>,
}

impl Mouth {
    pub(crate) fn start(
        tts: Arc<dyn Synthesizer>,
        id: &str,
        loudspeaker: Option<Arc<Loudspeaker>>,
        cancel: Cancel,
        activity: watch::Sender<Activity>,
        emit: impl Fn(&str, &Speech) + Send + Sync + 'static,
    ) -> Mouth {
        let (tx, rx) = mpsc::unbounded_channel::<Speech>();
        let played = tokio::spawn(play(rx, loudspeaker, cancel.clone(), activity));
        let id = id.to_string();
        let emit = Arc::new(emit);
        let speaker = Speaker::start_cancellable(tts, cancel.clone(), move |speech: Speech| {
            let (emit, id, tx, cancel) = (emit.clone(), id.clone(), tx.clone(), cancel.clone());
            async move {
                if cancel.is_cancelled() {
                    return;
                }
                emit(&id, &speech);
                let _ = tx.send(speech);
            }
        });
        Mouth { speaker, played }
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

    /// The answer was cut short by `max_tokens`: speaks only what the cut answer keeps of
    /// the rest (never an unfinished sentence or a split word); returns as `finish`.
    pub async fn finish_cut(self) -> Spoken {
        let spoken = self.speaker.finish_cut().await;
        let _ = self.played.await;
        spoken
    }
}

/// Plays sentences in order; the tutor is `speaking` from the first to the end. Once
/// `cancel` is set (a barge-in), the card is stopped at once, also while the next sentence
/// is still being synthesized: the text's end can be seconds away on a loaded board (a CI
/// run saw the card kept open 3.8 s after the interruption when only the text's end closed
/// it). Nothing is played after that.
async fn play(
    mut rx: mpsc::UnboundedReceiver<Speech>,
    loudspeaker: Option<Arc<Loudspeaker>>,
    cancel: Cancel,
    activity: watch::Sender<Activity>,
) {
    let mut speaking = false;
    // Whether the text ended (the card plays out what it holds) or was cancelled (dropped).
    let ended = loop {
        let speech = tokio::select! {
            biased;
            () = cancel.cancelled() => break false,
            speech = rx.recv() => match speech {
                Some(speech) => speech,
                None => break true,
            },
        };
        if !speaking {
            speaking = true;
            activity.send_modify(|a| a.speaking += 1);
        }
        let Some(ls) = loudspeaker.clone() else {
            continue;
        };
        let c = cancel.clone();
        let played =
            tokio::task::spawn_blocking(move || ls.play(&speech.samples, speech.sample_rate, &c))
                .await
                .expect("playback does not panic");
        if let Err(e) = played {
            tracing::warn!("{e}");
        }
    };
    if let Some(ls) = loudspeaker {
        let _ =
            tokio::task::spawn_blocking(move || if ended { ls.finish() } else { ls.stop() }).await;
    }
    // The tutor stays `speaking` until the text's end, as before a cancel: what the speaker
    // still sends (it synthesizes nothing more once cancelled) is taken and not played.
    while rx.recv().await.is_some() {}
    if speaking {
        activity.send_modify(|a| a.speaking = a.speaking.saturating_sub(1));
    }
}

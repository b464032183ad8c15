//! A spoken question in the daemon: a recording → voice activity detection → whisper → the
//! text the tutor answers. The D-Bus adapter (`ListenWav`) turns the text into a turn and
//! adds these timings to its `AnswerFinished`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stt::{SttError, Transcriber, Whisper};
use super::vad::{self, VadConfig};
use super::wav::{self, WavError};
use crate::daemon::Context;

/// The longest spoken question accepted, seconds: far more than a question takes, and a
/// bound on what whisper is given.
pub const MAX_QUESTION_SECONDS: u32 = 120;

/// Why a recording did not become a question.
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error(transparent)]
    Wav(#[from] WavError),
    #[error("no speech found in {seconds:.1} s of audio")]
    NoSpeech { seconds: f64 },
    #[error("speech recognition is not available: {0}")]
    NotReady(String),
    #[error(transparent)]
    Stt(#[from] SttError),
    #[error("speech recognition produced no words")]
    NoWords,
}

/// What was heard, and how long each stage took.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub text: String,
    /// Speech found by the VAD (from its start to the endpoint).
    pub speech: Duration,
    /// The recording's length.
    pub audio: Duration,
    /// From the end of speech (the call, for a recording) to the transcript.
    pub to_transcript: Duration,
    /// whisper's real-time factor on this utterance.
    pub stt_rtf: f64,
    /// When the recording arrived: the end of speech, for a recording.
    pub received: Instant,
}

impl Context {
    /// Loads the speech model on a blocking thread; until it is loaded (or if it fails),
    /// spoken questions get `NotReady` with the reason.
    pub async fn load_stt(self: &Arc<Self>) {
        let ctx = self.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            Whisper::from_config(&ctx.config.voice, &ctx.catalog, &ctx.config.models.dir)
                .map(|w| (w, t.elapsed()))
        })
        .await
        .expect("loading whisper does not panic");
        match loaded {
            Ok((w, took)) => {
                tracing::info!(
                    stt_model = %self.config.voice.stt_model,
                    stt_load_ms = took.as_millis() as u64,
                    "speech recognition ready ({}, loaded in {} ms)",
                    self.config.voice.stt_model,
                    took.as_millis()
                );
                *self.stt_lock() = Ok(Arc::new(w));
            }
            Err(e) => {
                tracing::warn!("speech recognition is off: {e}");
                *self.stt_lock() = Err(e.to_string());
            }
        }
        // Speech out: a Piper voice, or espeak-ng when the voice is missing.
        let ctx = self.clone();
        let tts = tokio::task::spawn_blocking(move || {
            crate::voice::tts::open_configured(
                &ctx.config.voice,
                &ctx.catalog,
                &ctx.config.models.dir,
                crate::voice::stt::threads(ctx.config.voice.stt_threads),
            )
        })
        .await
        .expect("loading the voice does not panic");
        match tts {
            Ok(t) => *self.tts_lock() = Ok(Arc::from(t)),
            Err(e) => {
                tracing::warn!("speech synthesis is off: {e}");
                *self.tts_lock() = Err(e.to_string());
            }
        }
    }

    /// The voice, when one is loaded.
    pub fn tts(&self) -> Option<Arc<dyn crate::voice::tts::Synthesizer>> {
        self.tts_lock().as_ref().ok().cloned()
    }

    /// The VAD settings the config asks for.
    pub fn vad_config(&self) -> VadConfig {
        VadConfig {
            silence: Duration::from_millis(u64::from(self.config.voice.endpoint_silence_ms)),
            ..VadConfig::default()
        }
    }

    /// Turns a WAV recording (16 kHz mono PCM16) into the question it holds.
    pub async fn hear(&self, wav_bytes: Vec<u8>) -> Result<Heard, VoiceError> {
        let received = Instant::now();
        let stt = self.transcriber()?;
        let vad_config = self.vad_config();
        tokio::task::spawn_blocking(move || {
            let pcm = wav::parse("the recording", &wav_bytes, MAX_QUESTION_SECONDS)?;
            let audio = pcm.duration();
            let utterances = vad::utterances(&pcm.samples, &vad_config);
            let (Some(first), Some(last)) = (utterances.first(), utterances.last()) else {
                return Err(VoiceError::NoSpeech {
                    seconds: audio.as_secs_f64(),
                });
            };
            // Pauses longer than the endpoint inside one recording are still one question:
            // everything from the first start to the last end.
            let speech = &pcm.samples[first.start..last.end.min(pcm.samples.len())];
            transcribe(stt.as_ref(), speech, audio, received)
        })
        .await
        .expect("speech recognition does not panic")
    }

    /// Transcribes an utterance the microphone's VAD ended at `received`.
    pub async fn hear_utterance(
        &self,
        samples: Vec<f32>,
        received: Instant,
    ) -> Result<Heard, VoiceError> {
        let stt = self.transcriber()?;
        tokio::task::spawn_blocking(move || {
            let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(vad::RATE));
            transcribe(stt.as_ref(), &samples, audio, received)
        })
        .await
        .expect("speech recognition does not panic")
    }

    fn transcriber(&self) -> Result<Arc<dyn Transcriber>, VoiceError> {
        match &*self.stt_lock() {
            Ok(s) => Ok(s.clone()),
            Err(why) => Err(VoiceError::NotReady(why.clone())),
        }
    }
}

fn transcribe(
    stt: &dyn Transcriber,
    speech: &[f32],
    audio: Duration,
    received: Instant,
) -> Result<Heard, VoiceError> {
    let t = stt.transcribe(speech)?;
    let text = t.text.trim().to_string();
    if text.is_empty() {
        return Err(VoiceError::NoWords);
    }
    let heard = Heard {
        text,
        speech: Duration::from_secs_f64(speech.len() as f64 / f64::from(vad::RATE)),
        audio,
        to_transcript: received.elapsed(),
        stt_rtf: t.real_time_factor(),
        received,
    };
    // One journal line per heard question, whichever source (ListenWav or the microphone).
    tracing::info!(
        transcript = %heard.text,
        speech_seconds = heard.speech.as_secs_f64(),
        stt_seconds = heard.to_transcript.as_secs_f64(),
        stt_rtf = heard.stt_rtf,
        "heard {:.1} s of speech in {:.2} s: \"{}\"",
        heard.speech.as_secs_f64(),
        heard.to_transcript.as_secs_f64(),
        heard.text
    );
    Ok(heard)
}

/// The placeholder before the model is loaded.
pub fn not_loaded() -> Result<Arc<dyn Transcriber>, String> {
    Err("the speech model is still loading".into())
}

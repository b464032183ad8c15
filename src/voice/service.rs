//! The voice as the daemon runs it: speech recognition, speech synthesis and the sound
//! devices, each loaded (or why not) behind one handle. What hears a question and what speaks
//! an answer both come through here; the tutor decides what is asked and said.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::audio::{Loudspeaker, Microphone};
use super::live_handle::LiveHandle;
use super::mouth::Mouth;
use super::pipeline::{self, Heard, VoiceError};
use super::stt::{Transcriber, Whisper};
use super::tts::{Speech, Synthesizer};
use super::vad::VadConfig;
use crate::config::VoiceConfig;
use crate::models::Catalog;
use crate::state::Activity;
use crate::sync::Cancel;
use crate::sync::lock;

struct Inner {
    config: VoiceConfig,
    catalog: Catalog,
    models_dir: PathBuf,
    stt: Mutex<Result<Arc<dyn Transcriber>, String>>,
    tts: Mutex<Result<Arc<dyn Synthesizer>, String>>,
    speaker: Mutex<Result<Arc<Loudspeaker>, String>>,
    live: Mutex<Result<LiveHandle, String>>,
    /// The stop switches of the `Speak()` texts being spoken: barge-in and `Listen()` stop
    /// them as they stop an answer.
    speeches: Mutex<Vec<Cancel>>,
    /// Whether a recording (`ListenWav`) is being transcribed: one at a time. Whisper takes
    /// every core it is given, so a second one would only slow both down while each holds
    /// its recording in memory; it is refused with Busy instead of queued.
    hearing: AtomicBool,
    /// What the tutor is doing; speaking is counted here.
    activity: watch::Sender<Activity>,
}

/// The voice handle: cheap to clone.
#[derive(Clone)]
pub struct Voice {
    inner: Arc<Inner>,
}

impl Voice {
    /// Nothing loaded yet: [`Voice::load`] and [`Voice::open_devices`] do that.
    pub fn new(
        config: VoiceConfig,
        catalog: Catalog,
        models_dir: PathBuf,
        activity: watch::Sender<Activity>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                catalog,
                models_dir,
                stt: Mutex::new(Err("the speech model is still loading".into())),
                tts: Mutex::new(Err("the voice is still loading".into())),
                speaker: Mutex::new(Err("the loudspeaker is still opening".into())),
                live: Mutex::new(Err("the microphone is still opening".into())),
                speeches: Mutex::new(Vec::new()),
                hearing: AtomicBool::new(false),
                activity,
            }),
        }
    }

    /// A voice with these recogniser and synthesiser already in place (tests, tools).
    pub fn with(
        config: VoiceConfig,
        stt: Result<Arc<dyn Transcriber>, String>,
        tts: Result<Arc<dyn Synthesizer>, String>,
        activity: watch::Sender<Activity>,
    ) -> Self {
        let v = Self::new(config, Catalog::default(), PathBuf::new(), activity);
        *lock(&v.inner.stt) = stt;
        *lock(&v.inner.tts) = tts;
        v
    }

    pub fn config(&self) -> &VoiceConfig {
        &self.inner.config
    }

    /// Loads the speech model and the voice on blocking threads; until each is loaded (or
    /// if it fails), what needs it gets `NotReady` with the reason.
    pub async fn load(&self) {
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let i = &this.inner;
            Whisper::from_config(&i.config, &i.catalog, &i.models_dir).map(|w| (w, t.elapsed()))
        })
        .await
        .expect("loading whisper does not panic");
        match loaded {
            Ok((w, took)) => {
                tracing::info!(
                    stt_model = %self.inner.config.stt_model,
                    stt_load_ms = took.as_millis() as u64,
                    "speech recognition ready ({}, loaded in {} ms)",
                    self.inner.config.stt_model,
                    took.as_millis()
                );
                *lock(&self.inner.stt) = Ok(Arc::new(w));
            }
            Err(e) => {
                tracing::warn!("speech recognition is off: {e}");
                *lock(&self.inner.stt) = Err(e.to_string());
            }
        }
        // Speech out: a Piper voice, or espeak-ng when the voice is missing.
        let this = self.clone();
        let tts = tokio::task::spawn_blocking(move || {
            let i = &this.inner;
            super::tts::open_configured(
                &i.config,
                &i.catalog,
                &i.models_dir,
                super::stt::threads(i.config.stt_threads),
            )
        })
        .await
        .expect("loading the voice does not panic");
        match tts {
            Ok(t) => *lock(&self.inner.tts) = Ok(Arc::from(t)),
            Err(e) => {
                tracing::warn!("speech synthesis is off: {e}");
                *lock(&self.inner.tts) = Err(e.to_string());
            }
        }
    }

    /// Opens the configured loudspeaker and microphone (blocking work on blocking threads).
    /// Returns the microphone for the live loop; devices that do not open are named in the
    /// journal and the daemon goes on without them.
    pub async fn open_devices(&self) -> Option<Microphone> {
        let v = &self.inner.config;
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
        *lock(&self.inner.speaker) = speaker;
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
                    self.inner.config.listen.as_str()
                );
                Some(mic)
            }
            Err(e) => {
                tracing::warn!("spoken questions come only from ListenWav: {e}");
                *lock(&self.inner.live) = Err(e);
                None
            }
        }
    }

    /// The live loop, or why there is none.
    pub fn live(&self) -> Result<LiveHandle, String> {
        lock(&self.inner.live).clone()
    }

    pub(crate) fn set_live(&self, live: Result<LiveHandle, String>) {
        *lock(&self.inner.live) = live;
    }

    /// The VAD settings the config asks for.
    pub fn vad_config(&self) -> VadConfig {
        VadConfig {
            silence: Duration::from_millis(u64::from(self.inner.config.endpoint_silence_ms)),
            ..VadConfig::default()
        }
    }

    fn transcriber(&self) -> Result<Arc<dyn Transcriber>, VoiceError> {
        lock(&self.inner.stt).clone().map_err(VoiceError::NotReady)
    }

    /// Turns a WAV recording (16 kHz mono PCM16) into the question it holds.
    /// Bounded: over `MAX_WAV_BYTES` or while another recording is transcribed, refused at
    /// once.
    pub async fn hear(&self, wav_bytes: Vec<u8>) -> Result<Heard, VoiceError> {
        let received = Instant::now();
        if wav_bytes.len() > pipeline::MAX_WAV_BYTES {
            return Err(VoiceError::TooLarge {
                bytes: wav_bytes.len(),
                limit: pipeline::MAX_WAV_BYTES,
            });
        }
        let stt = self.transcriber()?;
        let vad = self.vad_config();
        if self.inner.hearing.swap(true, Ordering::SeqCst) {
            return Err(VoiceError::Busy);
        }
        // Cleared when the transcription ends, and also if this future is dropped.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.inner.hearing);
        tokio::task::spawn_blocking(move || {
            pipeline::hear_wav(stt.as_ref(), &wav_bytes, &vad, received)
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
            pipeline::hear_samples(stt.as_ref(), &samples, received)
        })
        .await
        .expect("speech recognition does not panic")
    }

    /// Whether a voice is loaded to speak with.
    pub fn can_speak(&self) -> bool {
        lock(&self.inner.tts).is_ok()
    }

    /// Starts speaking for `id`: sentences → TTS → `emit` (each sentence's audio, in order)
    /// → the loudspeaker when `aloud` and there is one. None when no voice is loaded (the
    /// answer is then only written).
    pub fn mouth(
        &self,
        id: &str,
        aloud: bool,
        cancel: Cancel,
        emit: impl Fn(&str, &Speech) + Send + Sync + 'static,
    ) -> Option<Mouth> {
        let tts = lock(&self.inner.tts).as_ref().ok().cloned()?;
        let loudspeaker = if aloud {
            lock(&self.inner.speaker).as_ref().ok().cloned()
        } else {
            None
        };
        Some(Mouth::start(
            tts,
            id,
            loudspeaker,
            cancel,
            self.inner.activity.clone(),
            emit,
        ))
    }

    /// Registers a `Speak()` text being spoken, so that barge-in can stop it.
    pub fn add_speech(&self, cancel: Cancel) {
        lock(&self.inner.speeches).push(cancel);
    }

    pub fn remove_speech(&self, cancel: &Cancel) {
        lock(&self.inner.speeches).retain(|s| !s.same(cancel));
    }

    /// Whether `Speak()` texts are being spoken.
    pub fn speaking_texts(&self) -> bool {
        !lock(&self.inner.speeches).is_empty()
    }

    /// Stops every `Speak()` text being spoken; returns how many there were.
    pub fn hush(&self) -> usize {
        let mut s = lock(&self.inner.speeches);
        for c in s.iter() {
            c.cancel();
        }
        std::mem::take(&mut *s).len()
    }

    /// Changes what the tutor is doing (the microphone's share of it).
    pub fn activity(&self, change: impl FnOnce(&mut Activity)) {
        self.inner.activity.send_modify(change);
    }
}

//! Text to speech. A Piper voice ([`piper`], VITS in ONNX Runtime) when the voice and the
//! runtime are there; otherwise espeak-ng's formant voice ([`espeak`]), with a warning that
//! names what is missing, so the tutor still speaks.

pub mod espeak;
pub mod ids;
pub mod piper;
pub mod resample;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::VoiceConfig;
use crate::models::resolve::resolve_kind;
use crate::models::{Catalog, Kind};

pub use espeak::Espeak;
pub use piper::Piper;

/// The espeak-ng voice the fallback speaks with.
pub const FALLBACK_VOICE: &str = "en-us";

#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    #[error(
        "no Piper voice at {path}: fetch it with `tutorctl models fetch piper-joe-medium piper-joe-medium.json` or set [voice] tts_voice"
    )]
    VoiceMissing { path: PathBuf },
    #[error("{path}: not a Piper voice's settings: {reason}")]
    VoiceSettings { path: PathBuf, reason: String },
    #[error(
        "no ONNX Runtime library at {path}: fetch it with `tutorctl models fetch onnxruntime` or set [voice] tts_runtime"
    )]
    RuntimeMissing { path: PathBuf },
    #[error("{path}: cannot load ONNX Runtime: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("{path}: Piper voice failed: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("espeak-ng: {0}")]
    Espeak(String),
}

/// Synthesized audio: mono samples in [-1, 1] at `sample_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Speech {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate.max(1)))
    }

    /// The same speech at `rate` Hz (16 kHz for whisper).
    pub fn resampled(&self, rate: u32) -> Speech {
        Speech {
            samples: resample::resample(&self.samples, self.sample_rate, rate),
            sample_rate: rate,
        }
    }
}

/// Something that turns text into speech.
pub trait Synthesizer: Send + Sync {
    fn synthesize(&self, text: &str) -> Result<Speech, TtsError>;
}

/// Piper voice `voice` in runtime `runtime`, or espeak-ng when either is missing or does not
/// load (logged as a warning naming the path and the fallback). Fails only when espeak-ng
/// cannot start either.
pub fn open(
    voice: &Path,
    runtime: &Path,
    threads: usize,
) -> Result<Box<dyn Synthesizer>, TtsError> {
    match Piper::load(voice, runtime, threads) {
        Ok(p) => Ok(Box::new(p)),
        Err(e) => {
            tracing::warn!(
                voice = %voice.display(),
                runtime = %runtime.display(),
                fallback = FALLBACK_VOICE,
                "{e}; speaking with espeak-ng ({FALLBACK_VOICE}) instead"
            );
            Ok(Box::new(Espeak::new(FALLBACK_VOICE)?))
        }
    }
}

/// [`open`] with `[voice] tts_voice` and `tts_runtime` looked up in the catalog and the
/// models folder `dir` (a value with a `/` is a path).
pub fn open_configured(
    cfg: &VoiceConfig,
    catalog: &Catalog,
    dir: &Path,
    threads: usize,
) -> Result<Box<dyn Synthesizer>, TtsError> {
    let path = |spec: &str| match resolve_kind(spec, catalog, dir, Kind::Voice)
        .or_else(|_| resolve_kind(spec, catalog, dir, Kind::Runtime))
    {
        Ok(r) => r.path,
        // Not fetched (or unknown): the path it would have, so the warning names it.
        Err(_) => catalog
            .get(spec)
            .map_or_else(|| PathBuf::from(spec), |m| m.path_in(dir)),
    };
    open(
        &path(&cfg.tts_voice),
        &path(&for_this_machine(&cfg.tts_runtime, catalog)),
        threads,
    )
}

/// A runtime library is built per architecture: `name` stands for the catalog's
/// `name-<arch>` (e.g. `onnxruntime-aarch64` on a board) when there is one.
pub fn for_this_machine(name: &str, catalog: &Catalog) -> String {
    let specific = format!("{name}-{}", std::env::consts::ARCH);
    if catalog.get(&specific).is_some() {
        specific
    } else {
        name.to_string()
    }
}

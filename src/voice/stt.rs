//! Speech to text: a [`Transcriber`] turns 16 kHz mono samples into text with timings;
//! [`Whisper`] does it with whisper.cpp (whisper-rs) and a ggml model.
//!
//! Threads: whisper.cpp is built without OpenMP (whisper-rs-sys turns it off), so ggml
//! starts its worker threads with pthread_create from the thread that calls
//! [`Transcriber::transcribe`], and they inherit that thread's CPU affinity. Tuning pins the
//! daemon to the chosen cores, so whisper runs there too; `[voice] stt_threads` says how
//! many (one per big core is the sweet spot: more than the cores only adds contention).
//!
//! Build: whisper-rs-sys compiles whisper.cpp with CMake, passing every `GGML_*`,
//! `WHISPER_*` and `CMAKE_*` environment variable as a definition. whisper.cpp defaults to
//! `GGML_NATIVE=ON` (`-march=native`): a binary built so may use instructions another CPU
//! lacks. Package and image builds set `GGML_NATIVE=OFF` in the environment, as
//! `packaging/build-deb.sh` does (with the boards' `armv8.2-a+dotprod+fp16` for arm64). The
//! build script does not ask Cargo to rerun when these variables change: build from a clean
//! target directory (or `cargo clean -p whisper-rs-sys`) after changing them.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use super::wav::SAMPLE_RATE;

/// What was said, with timings.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The segments' text joined, trimmed.
    pub text: String,
    pub segments: Vec<Segment>,
    /// How long the audio lasts.
    pub audio: Duration,
    /// How long transcribing it took (wall clock).
    pub took: Duration,
}

impl Transcript {
    /// Time taken ÷ audio length: below 1 is faster than real time.
    pub fn real_time_factor(&self) -> f64 {
        self.took.as_secs_f64() / self.audio.as_secs_f64().max(f64::EPSILON)
    }
}

/// A stretch of the transcript and where it lies in the audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: Duration,
    pub end: Duration,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SttError {
    #[error(
        "{path}: cannot load the whisper model: {reason} (fetch it with `tutorctl models fetch whisper-tiny.en`)"
    )]
    Load { path: PathBuf, reason: String },
    #[error("no audio to transcribe")]
    Empty,
    #[error("{what} samples are not finite")]
    NotFinite { what: usize },
    #[error("`stt_threads` = {0}: must be 1 to 64")]
    Threads(usize),
    #[error("whisper failed: {0}")]
    Whisper(String),
    #[error("`[voice] stt_model`: {0}")]
    Model(#[from] crate::models::resolve::ResolveError),
}

/// Speech to text over 16 kHz mono f32 samples in [-1, 1].
pub trait Transcriber: Send + Sync {
    fn transcribe(&self, pcm_16k_mono_f32: &[f32]) -> Result<Transcript, SttError>;
}

/// whisper.cpp with one model, loaded once; one transcription at a time.
pub struct Whisper {
    ctx: WhisperContext,
    /// Kept between calls: it holds whisper.cpp's compute buffers (tens of MB), which would
    /// otherwise be allocated again for every utterance.
    state: Mutex<Option<whisper_rs::WhisperState>>,
    threads: usize,
    language: &'static str,
}

impl Whisper {
    /// Loads the ggml model at `path` to run on `threads` threads.
    pub fn load(path: &Path, threads: usize) -> Result<Self, SttError> {
        if !(1..=64).contains(&threads) {
            return Err(SttError::Threads(threads));
        }
        // whisper.cpp logs every tensor it loads to stderr; routed to tracing instead.
        static HOOKS: Once = Once::new();
        HOOKS.call_once(whisper_rs::install_logging_hooks);
        let load_err = |reason: String| SttError::Load {
            path: path.to_path_buf(),
            reason,
        };
        // whisper.cpp would print its own error for a missing file and return null; this
        // says which file in the error.
        std::fs::metadata(path).map_err(|e| load_err(e.to_string()))?;
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false);
        let ctx = WhisperContext::new_with_params(path, params)
            .map_err(|e| load_err(format!("{e} (not a whisper.cpp ggml file?)")))?;
        // An English-only model must not be asked to detect the language.
        let language = if ctx.is_multilingual() { "auto" } else { "en" };
        Ok(Self {
            ctx,
            state: Mutex::new(None),
            threads,
            language,
        })
    }
}

impl Whisper {
    /// Loads what `[voice] stt_model` names (a catalog name, found in `models_dir`, or a
    /// path) with `[voice] stt_threads` threads.
    pub fn from_config(
        voice: &crate::config::VoiceConfig,
        catalog: &crate::models::Catalog,
        models_dir: &Path,
    ) -> Result<Self, SttError> {
        let resolved = crate::models::resolve::resolve_kind(
            &voice.stt_model,
            catalog,
            models_dir,
            crate::models::Kind::Whisper,
        )?;
        Self::load(&resolved.path, threads(voice.stt_threads))
    }
}

/// `[voice] stt_threads` as a thread count: 0 = one per core this process may run on (the
/// cores tuning chose), at most 4 — ggml gains little beyond that for tiny models.
pub fn threads(configured: u32) -> usize {
    match configured {
        0 => crate::platform::topology::allowed_cpus().len().clamp(1, 4),
        n => n as usize,
    }
}

/// The encoder context for `samples` of 16 kHz audio. whisper's encoder always works on 30 s
/// (1500 frames, 50 per second); a spoken question lasts a few, so encoding only the frames
/// that hold it (with a margin) cuts the time to transcript several-fold — what makes a
/// reply within ~1.5 s possible. At least 512: with shorter contexts tiny.en often repeats
/// the utterance until its token limit (measured on Piper's "What is a prime number?": 2 of
/// 6 renderings looped at 384 and 448, none at 512). 0 = the full 30 s.
pub fn audio_ctx(samples: usize) -> i32 {
    let frames = samples / 320 + 64;
    if frames >= 1500 {
        0
    } else {
        frames.max(512) as i32
    }
}

/// The most tokens a fast pass may write for `samples` of audio: fast speech is ~4 words a
/// second, ~7 tokens with timestamps; twice that plus a sentence's worth is never reached by
/// a real transcript, and a looping decoder reaches it within a few tenths of a second.
pub fn token_budget(samples: usize) -> i32 {
    let seconds = samples as f64 / f64::from(SAMPLE_RATE);
    (seconds * 14.0).ceil() as i32 + 24
}

/// One decoding run's result: the text's segments and how many tokens it wrote.
struct Pass {
    segments: Vec<Segment>,
    tokens: i32,
}

impl Whisper {
    /// Runs whisper over `pcm` with the encoder context `audio_ctx` (0 = 30 s); `budget`
    /// tokens per segment and no temperature fallback when given (the fast pass), whisper's
    /// own fallback otherwise.
    fn pass(
        &self,
        state: &mut whisper_rs::WhisperState,
        pcm: &[f32],
        audio_ctx: i32,
        budget: Option<i32>,
    ) -> Result<Pass, SttError> {
        let whisper_err = |e: whisper_rs::WhisperError| SttError::Whisper(e.to_string());
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_language(Some(self.language));
        // One utterance at a time: text from an earlier one must not steer this one.
        params.set_no_context(true);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        params.set_audio_ctx(audio_ctx);
        if let Some(budget) = budget {
            // A loop is cut at the budget instead of being decoded again at five
            // temperatures (which took 4 s for a 1.2 s question).
            params.set_max_tokens(budget);
            params.set_temperature_inc(0.0);
        }
        state.full(params, pcm).map_err(whisper_err)?;
        let mut pass = Pass {
            segments: Vec::new(),
            tokens: 0,
        };
        for seg in state.as_iter() {
            let text = seg.to_str_lossy().map_err(whisper_err)?;
            // whisper.cpp counts time in centiseconds.
            let at = |cs: i64| Duration::from_millis(cs.max(0) as u64 * 10);
            pass.tokens += seg.n_tokens();
            pass.segments.push(Segment {
                start: at(seg.start_timestamp()),
                end: at(seg.end_timestamp()),
                text: text.trim().to_string(),
            });
        }
        Ok(pass)
    }
}

impl Transcriber for Whisper {
    fn transcribe(&self, pcm: &[f32]) -> Result<Transcript, SttError> {
        if pcm.is_empty() {
            return Err(SttError::Empty);
        }
        let bad = pcm.iter().filter(|s| !s.is_finite()).count();
        if bad > 0 {
            return Err(SttError::NotFinite { what: bad });
        }
        let started = Instant::now();
        let whisper_err = |e: whisper_rs::WhisperError| SttError::Whisper(e.to_string());
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = match guard.as_mut() {
            Some(s) => s,
            None => guard.insert(self.ctx.create_state().map_err(whisper_err)?),
        };
        // The fast pass encodes only the utterance's frames; should the decoder loop there,
        // the whole 30 s window (how the model was trained) with whisper's fallback decides.
        let ctx = audio_ctx(pcm.len());
        let budget = token_budget(pcm.len());
        let mut pass = self.pass(state, pcm, ctx, (ctx > 0).then_some(budget))?;
        if ctx > 0 && pass.tokens >= budget {
            tracing::debug!(
                tokens = pass.tokens,
                budget,
                "whisper looped on the short window; transcribing over the full 30 s"
            );
            pass = self.pass(state, pcm, 0, None)?;
        }
        let segments = pass.segments;
        let text = segments
            .iter()
            .map(|s| s.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript {
            text,
            segments,
            audio: Duration::from_secs_f64(pcm.len() as f64 / f64::from(SAMPLE_RATE)),
            took: started.elapsed(),
        })
    }
}

/// Lowercase words without punctuation, single-spaced: for comparing what was said.
pub fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .filter(|&c| c != '\'')
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {

    #[test]
    fn audio_ctx_covers_the_utterance() {
        // 50 frames a second plus a margin, at least 512, the full window beyond 28.7 s.
        assert_eq!(super::audio_ctx(16_000), 512);
        assert_eq!(super::audio_ctx(11 * 16_000), 614);
        assert_eq!(super::audio_ctx(30 * 16_000), 0);
    }

    #[test]
    fn the_token_budget_grows_with_the_audio() {
        // 1.2 s question: 41 tokens; JFK's 11 s: 178 (its transcript is ~30).
        assert_eq!(super::token_budget(19_200), 41);
        assert_eq!(super::token_budget(176_000), 178);
    }
    use super::*;

    #[test]
    fn normalising_drops_case_and_punctuation() {
        assert_eq!(
            normalise(" And so, my fellow Americans: ask not what your country can do for you!"),
            "and so my fellow americans ask not what your country can do for you"
        );
        assert_eq!(normalise("Don't—stop."), "dont stop");
    }

    #[test]
    fn loading_a_missing_or_bad_model_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = Whisper::load(&dir.path().join("none.bin"), 2)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.bin: cannot load the whisper model"), "{e}");
        let p = dir.path().join("bad.bin");
        std::fs::write(&p, b"not a model").unwrap();
        let e = Whisper::load(&p, 2).err().unwrap().to_string();
        assert!(e.contains("bad.bin: cannot load the whisper model"), "{e}");
        assert!(matches!(Whisper::load(&p, 0), Err(SttError::Threads(0))));
    }

    #[test]
    fn the_configured_model_is_looked_up_in_the_catalog() {
        let catalog = crate::models::Catalog::parse(
            "config/models.toml",
            include_str!("../../config/models.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let voice = crate::config::VoiceConfig::default();
        let e = Whisper::from_config(&voice, &catalog, dir.path())
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("fetch it with `tutorctl models fetch whisper-tiny.en`"),
            "{e}"
        );
        let voice = crate::config::VoiceConfig {
            stt_model: "smollm2-135m-q4_1".into(),
            ..Default::default()
        };
        let e = Whisper::from_config(&voice, &catalog, dir.path())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a speech-to-text model"), "{e}");
    }

    #[test]
    fn transcript_rtf() {
        let t = Transcript {
            text: String::new(),
            segments: Vec::new(),
            audio: Duration::from_secs(10),
            took: Duration::from_secs(2),
        };
        assert!((t.real_time_factor() - 0.2).abs() < 1e-9);
    }
}

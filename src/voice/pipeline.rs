//! A spoken question: a recording → voice activity detection → whisper → the text the
//! tutor answers, with the timings of each stage (they go into the turn's report).

use std::time::{Duration, Instant};

use super::stt::{SttError, Transcriber};
use super::vad::{self, VadConfig};
use super::wav::{self, WavError};

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
    #[error(
        "the recording is {bytes} bytes; at most {limit} are accepted ({MAX_QUESTION_SECONDS} s of 16 kHz mono 16-bit PCM)"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error("another recording is being transcribed; ask again when it is done")]
    Busy,
}

/// The largest WAV a recorded question may be: `MAX_QUESTION_SECONDS` of 16 kHz mono 16-bit
/// PCM and a generous header. Checked before anything is parsed.
pub const MAX_WAV_BYTES: usize = MAX_QUESTION_SECONDS as usize * 16_000 * 2 + 64 * 1024;

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

/// Turns a WAV recording (16 kHz mono PCM16) into the question it holds, on the calling
/// (blocking) thread.
pub fn hear_wav(
    stt: &dyn Transcriber,
    wav_bytes: &[u8],
    vad_config: &VadConfig,
    received: Instant,
) -> Result<Heard, VoiceError> {
    let pcm = wav::parse("the recording", wav_bytes, MAX_QUESTION_SECONDS)?;
    let audio = pcm.duration();
    let utterances = vad::utterances(&pcm.samples, vad_config);
    let (Some(first), Some(last)) = (utterances.first(), utterances.last()) else {
        return Err(VoiceError::NoSpeech {
            seconds: audio.as_secs_f64(),
        });
    };
    // Pauses longer than the endpoint inside one recording are still one question:
    // everything from the first start to the last end.
    let speech = &pcm.samples[first.start..last.end.min(pcm.samples.len())];
    transcribe(stt, speech, audio, received)
}

/// Transcribes an utterance the microphone's VAD ended at `received`, on the calling
/// (blocking) thread.
pub fn hear_samples(
    stt: &dyn Transcriber,
    samples: &[f32],
    received: Instant,
) -> Result<Heard, VoiceError> {
    let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(vad::RATE));
    transcribe(stt, samples, audio, received)
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

//! The tutor's voice, behind one handle ([`Voice`], `service.rs`): [`wav`] reads
//! recordings, [`vad`] finds where an utterance starts and ends, [`stt`] transcribes with
//! whisper.cpp, [`tts`] speaks with Piper or espeak-ng, [`mouth`] speaks a text sentence by
//! sentence, [`audio`] is the ALSA microphone and loudspeaker and [`live`] the hands-free and
//! push-to-talk loop. (faster-whisper → ggml conversion is the models' business:
//! `models::convert`.)

pub mod audio;
pub mod cli;
pub mod live;
pub mod live_handle;
pub mod mouth;
pub mod pipeline;
pub mod service;
pub mod speaker;
pub mod stt;
pub mod tts;
pub mod vad;
pub mod wav;

pub use service::Voice;

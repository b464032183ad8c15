//! The tutor's voice. Speech to text so far: [`convert`] imports faster-whisper models into
//! whisper.cpp's format, [`wav`] reads recordings, [`stt`] transcribes with whisper.cpp, [`vad`] finds
//! where an utterance starts and ends.

pub mod audio;
pub mod cli;
pub mod convert;
pub mod live;
pub mod pipeline;
pub mod speaker;
pub mod stt;
pub mod tts;
pub mod vad;
pub mod wav;

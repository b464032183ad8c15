//! The tutor's voice. Speech to text so far: [`convert`] imports faster-whisper models into
//! whisper.cpp's format, [`wav`] reads recordings, [`stt`] transcribes with whisper.cpp.

pub mod convert;
pub mod stt;
pub mod wav;

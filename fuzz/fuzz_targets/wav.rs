//! The WAV reader, as the daemon meets it: bytes sent over D-Bus by `ListenWav`.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// The daemon's limit for a spoken question (`voice::pipeline::MAX_QUESTION_SECONDS`).
const MAX_SECONDS: u32 = 120;

fuzz_target!(|data: &[u8]| {
    match tutord::voice::wav::parse("the recording", data, MAX_SECONDS) {
        Ok(pcm) => {
            assert!(!pcm.samples.is_empty());
            assert!(pcm.duration().as_secs() <= u64::from(MAX_SECONDS));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});

//! A Piper voice's `.onnx.json` settings, and what synthesis does with them before ONNX
//! Runtime runs: phonemes to ids, and the voice's rate to whisper's 16 kHz.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tutord::voice::tts::Speech;
use tutord::voice::tts::ids::to_ids;
use tutord::voice::tts::piper::VoiceSettings;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = match VoiceSettings::parse(Path::new("voice.onnx.json"), text) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // espeak-ng's phonemes for "Hello, world."
    let ids = to_ids(
        &["həlˈoʊ".into(), "wˈɜːld".into()],
        &settings.phoneme_id_map,
    );
    assert!(ids.len() >= 3);
    // What the model gives for a short word: as many samples whatever rate the settings
    // claim, resampled to 16 kHz as `tutorctl say --rate 16000` and the spoken-turn test
    // do. The settings' rate decides how big the result is.
    let speech = Speech {
        samples: vec![0.25; 2_205],
        sample_rate: settings.audio.sample_rate,
    };
    let out = speech.resampled(16_000);
    assert!(out.samples.len() <= 2_205 * 16);
});

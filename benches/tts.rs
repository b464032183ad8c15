//! Text-to-speech real-time factor on this machine: Piper en_US-joe-medium (ONNX Runtime)
//! and espeak-ng, for one sentence. Needs `tutorctl models fetch piper-joe-medium
//! piper-joe-medium.json onnxruntime` first; the folder is TUTORD_MODELS_DIR or
//! `.cache/models`. `cargo bench --bench tts`.

use std::path::PathBuf;
use std::time::Instant;

use tutord::voice::tts::{Espeak, Piper, Synthesizer};

const SENTENCE: &str =
    "Ask not what your country can do for you; ask what you can do for your country.";

fn rtf(name: &str, voice: &dyn Synthesizer) {
    voice.synthesize("Warm up.").unwrap();
    let runs = 3;
    let mut best = f64::MAX;
    let mut audio = 0.0;
    for _ in 0..runs {
        let started = Instant::now();
        let speech = voice.synthesize(SENTENCE).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        audio = speech.duration().as_secs_f64();
    }
    println!(
        "{name}: {best:.3} s for {audio:.2} s of speech: RTF {:.3} (best of {runs})",
        best / audio
    );
}

fn main() {
    let dir = std::env::var_os("TUTORD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models"));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    match Piper::load(
        &dir.join("en_US-joe-medium.onnx"),
        &dir.join("libonnxruntime.so.1.28.0"),
        threads,
    ) {
        Ok(p) => rtf(&format!("Piper joe-medium, {threads} threads"), &p),
        Err(e) => println!("Piper: skipped: {e}"),
    }
    rtf("espeak-ng en-us", &Espeak::new("en-us").unwrap());
}

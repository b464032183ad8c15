//! Real-time factor of speech to text: whisper tiny.en on JFK's 11 s sample, as fetched by
//! `cargo test --test stt` (or `tutorctl models fetch whisper-tiny.en`) into
//! TUTORD_MODELS_DIR (default `.cache/models`).
//!
//!     cargo bench --bench stt                 # threads 1, 2, 4 up to the CPUs here
//!     STT_THREADS=4 STT_RUNS=5 cargo bench --bench stt
//!     STT_WAV=question.wav cargo bench --bench stt   # another 16 kHz mono WAV
//!
//! Mind the machine's load: ggml's threads spin at barriers, so more threads than free
//! cores is far slower than one thread (RTF 2.3 with 2 threads vs 0.17 with 1 on a busy
//! 2-CPU machine here; 0.11 vs 0.18 when it was quieter).
//!
//! Prints one line per thread count: the best and median of the runs (the first, which
//! also allocates whisper's buffers, is a warm-up and not counted), and the RTF, time ÷
//! audio length: below 1 is faster than real time.

use std::path::PathBuf;
use std::time::Instant;

use tutord::voice::stt::{Transcriber, Whisper};
use tutord::voice::wav;

fn main() {
    let dir = std::env::var_os("TUTORD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/models"));
    let model = dir.join("ggml-tiny.en.bin");
    let sample = std::env::var_os("STT_WAV")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("jfk.wav"));
    if !model.exists() || !sample.exists() {
        eprintln!(
            "stt bench: {} or {} missing: run `cargo test --test stt` first",
            model.display(),
            sample.display()
        );
        std::process::exit(2);
    }
    let runs: usize = env_or("STT_RUNS", 3);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<usize> = match std::env::var("STT_THREADS") {
        Ok(v) => vec![v.parse().expect("STT_THREADS is a number")],
        Err(_) => [1, 2, 4, 8].into_iter().filter(|&t| t <= cpus).collect(),
    };
    let pcm = wav::read(&sample, 60).expect("reading jfk.wav");
    let audio = pcm.duration().as_secs_f64();
    println!(
        "whisper tiny.en (ggml f16) on {} ({audio:.1} s), {runs} runs after a warm-up, {cpus} CPUs",
        sample.display()
    );
    for t in threads {
        let started = Instant::now();
        let whisper = Whisper::load(&model, t).expect("loading the model");
        let load = started.elapsed().as_secs_f64();
        let first = whisper.transcribe(&pcm.samples).expect("transcribing");
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                whisper
                    .transcribe(&pcm.samples)
                    .expect("transcribing")
                    .took
                    .as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let (best, median) = (times[0], times[times.len() / 2]);
        println!(
            "threads {t}: load {load:.2} s, first {:.2} s, best {best:.2} s (RTF {:.3}), \
             median {median:.2} s (RTF {:.3}); \"{}\"",
            first.took.as_secs_f64(),
            best / audio,
            median / audio,
            first.text
        );
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

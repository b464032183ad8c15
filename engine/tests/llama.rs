//! The llama.cpp engine in process, on the real small model: answers are reproducible
//! (greedy, and sampled with a seed), a follow-up reuses the KV cache, and ggml's worker
//! threads are kept from one answer to the next and sleep between answers (the persistent
//! thread pool that brought decode to llama-bench's speed).

mod common;

use std::ffi::CString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::small_model;
use tutord_engine::engine::{BackendKind, ChatMessage, Engine, LoadSpec, Placement, Sampling};
use tutord_engine::llama::LlamaEngine;

/// One engine at a time: two engines' threads on two cores would wait on each other's spinning
/// barriers, and the thread pool test counts its own threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn load(threads: usize) -> Option<LlamaEngine> {
    let model = small_model("llama engine")?;
    let spec = LoadSpec {
        backend: BackendKind::Cpu,
        model_path: model,
        context_length: 1024,
        placement: Placement {
            cpus: (0..threads).collect(),
        },
        runtime_library: None,
    };
    Some(LlamaEngine::load(&spec).expect("the small model loads"))
}

fn ask(engine: &mut LlamaEngine, chat: &[ChatMessage], sampling: &Sampling) -> (String, u32) {
    let mut text = String::new();
    let stats = engine
        .generate(chat, sampling, &mut |p| {
            text.push_str(p);
            true
        })
        .expect("an answer");
    (text, stats.reused_tokens)
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        temperature: 0.0,
        max_tokens,
        ..Sampling::default()
    }
}

#[test]
fn answers_are_reproducible_and_a_follow_up_reuses_the_cache() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut engine) = load(2) else { return };
    let question = vec![ChatMessage::new("user", "What is the capital of France?")];
    let (first, reused) = ask(&mut engine, &question, &greedy(24));
    assert!(!first.trim().is_empty(), "an empty answer");
    assert_eq!(reused, 0, "nothing cached before the first answer");
    engine.reset();
    let (again, _) = ask(&mut engine, &question, &greedy(24));
    assert_eq!(
        first, again,
        "greedy decoding from an empty cache is deterministic"
    );

    // The follow-up carries the first exchange: its tokens are in the cache already.
    let mut chat = question.clone();
    chat.push(ChatMessage::new("assistant", &again));
    chat.push(ChatMessage::new("user", "And of Italy?"));
    let (_, reused) = ask(&mut engine, &chat, &greedy(8));
    assert!(reused > 10, "the follow-up reused only {reused} tokens");

    let sampled = |seed| Sampling {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        seed,
        max_tokens: 24,
    };
    engine.reset();
    let (a, _) = ask(&mut engine, &question, &sampled(7));
    engine.reset();
    let (b, _) = ask(&mut engine, &question, &sampled(7));
    assert_eq!(a, b, "the same seed draws the same answer");
}

/// Threads of this process named `name`, but not the calling one.
fn threads_named(name: &str) -> Vec<u32> {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() } as u32;
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| *tid != me)
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// A thread's CPU time in clock ticks (utime + stime of /proc/self/task/TID/stat).
fn cpu_ticks(tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the state (3).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn the_thread_pool_outlives_an_answer_and_sleeps_between_answers() {
    // ggml's workers inherit the name of the thread that starts them: this test's own.
    let name = CString::new("tutord-pooltest").unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 15 bytes names this thread.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut engine) = load(2) else { return };
    let workers = threads_named("tutord-pooltest");
    assert_eq!(
        workers.len(),
        1,
        "2 threads: the caller and a pool of 1 worker kept from load on"
    );
    let question = vec![ChatMessage::new("user", "Name three colours.")];
    ask(&mut engine, &question, &greedy(16));
    assert_eq!(
        threads_named("tutord-pooltest"),
        workers,
        "the same workers after the answer (ggml did not start and join its own)"
    );
    // After the answer the pool sleeps: its workers wait on a condition variable for the
    // next graph instead of polling for it (ggml's default, which spins for up to ~0.2 s).
    let before: Vec<u64> = workers.iter().map(|t| cpu_ticks(*t)).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<u64> = workers.iter().map(|t| cpu_ticks(*t)).collect();
    for ((tid, b), a) in workers.iter().zip(&before).zip(&after) {
        // One tick is 10 ms; polling all the while would be ~50.
        assert!(
            a - b <= 2,
            "worker {tid} used {} ticks of CPU in {:?} after the answer",
            a - b,
            start.elapsed()
        );
    }
}

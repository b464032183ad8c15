//! Lessons longer than the context, on the real small model (SmolLM2-135M) with a
//! 1024-token context. Every answer is given; once the conversation outgrows the context the
//! oldest turns leave the prompt (`window_left_out`) and what stays is moved down the KV
//! cache rather than computed again (`reused_tokens`); a restart resumes the session and the
//! lesson goes on; over 60 turns memory and the time to the first token stay flat.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;

/// The tests here time answers: one at a time, so they do not slow each other down.
static SERIAL: Mutex<()> = Mutex::new(());

const QUESTIONS: [&str; 8] = [
    "What is a prime number? Give examples.",
    "Why is the sky blue?",
    "How do plants make food?",
    "What is the water cycle?",
    "Explain what a fraction is.",
    "What causes the seasons?",
    "How does a magnet work?",
    "What is photosynthesis for?",
];

/// The small model's config with `context_length = 1024` (its own default is 2048): the
/// window slides within a few turns.
fn lesson_config(dir: &std::path::Path, max_tokens: u32) -> std::path::PathBuf {
    let cfg = small_model_config(dir, max_tokens, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[llm]\n", "[llm]\ncontext_length = 1024\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// One finished turn's figures.
#[derive(Debug)]
struct Turn {
    id: String,
    prompt: f64,
    reused: f64,
    left_out: f64,
    first_token: f64,
    tokens: f64,
}

async fn ask(conn: &zbus::Connection, q: &str) -> Turn {
    let (id, stats) = ask_and_wait(conn, q, false, Duration::from_secs(120)).await;
    assert!(flag(&stats, "ok"), "{id} ({q}): {stats:?}");
    Turn {
        id,
        prompt: number(&stats, "prompt_tokens"),
        reused: number(&stats, "reused_tokens"),
        left_out: number(&stats, "window_left_out"),
        first_token: number(&stats, "time_to_first_token"),
        tokens: number(&stats, "generated_tokens"),
    }
}

fn print(turns: &[Turn]) {
    for t in turns {
        println!(
            "{}: prompt {} new + {} reused tokens, {} messages left out, first token after \
             {:.3} s, {} tokens",
            t.id, t.prompt, t.reused, t.left_out, t.first_token, t.tokens
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_lesson_longer_than_the_context_is_answered_to_the_end_and_resumed_at_turn_30() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let cfg = lesson_config(dir.path(), 96);
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(90)));
    let turns = rt().block_on(async {
        let conn = connect_to(&bus).await;
        let mut turns = Vec::new();
        for i in 0..30 {
            turns.push(ask(&conn, QUESTIONS[i % QUESTIONS.len()]).await);
        }
        turns
    });
    print(&turns);
    let slid: Vec<_> = turns.iter().filter(|t| t.left_out > 0.0).collect();
    assert!(
        slid.len() >= 15,
        "the window never slid (or only {} times): a 1024-token context holds fewer than 30 \
         turns of 96 tokens",
        slid.len()
    );
    // After a slide, what stayed in the window is reused, not processed again: the new
    // tokens are the question (and the last answer), never the whole window.
    let reprocessed: Vec<_> = slid.iter().filter(|t| t.prompt > 300.0).collect();
    assert!(
        reprocessed.len() <= 2,
        "{} turns processed their whole window again: {reprocessed:?}",
        reprocessed.len()
    );

    // A restart at turn 30 resumes the session; the next 10 turns answer.
    let mut notify = NotifySocket::new();
    let daemon = daemon.restart(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(90)));
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        let mut after = Vec::new();
        for i in 30..40 {
            after.push(ask(&conn, QUESTIONS[i % QUESTIONS.len()]).await);
        }
        print(&after);
        // The resumed conversation fills the window at once: the first turn after the
        // restart has earlier turns left out.
        assert!(after[0].left_out > 0.0, "{:?}", after[0]);
        let session = property(&conn, "Session").await;
        let id = text(&session);
        let stored = history(&conn, &id).await;
        assert_eq!(stored.len(), 40, "every turn stays in the store");
    });
    drop(daemon);
}

/// Questions that ask for long answers (with greedy decoding the small model often writes
/// up to `max_tokens`).
const LONG: [&str; 6] = [
    "Explain in detail how the heart pumps blood around the body.",
    "Tell me everything about how volcanoes form and erupt.",
    "Describe in many sentences how a seed grows into a tree.",
    "Explain step by step how to add two fractions, with examples.",
    "Tell me a long story about a fox who learns to count.",
    "Describe in detail what happens to water when it freezes and melts.",
];

#[test]
fn sixty_turns_with_long_answers_keep_memory_and_the_first_token_flat() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let cfg = lesson_config(dir.path(), 160);
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(90)));
    let pid = daemon.pid() as u32;
    let (turns, rss) = rt().block_on(async {
        let conn = connect_to(&bus).await;
        let mut turns = Vec::new();
        let mut rss = Vec::new();
        for i in 0..60 {
            turns.push(ask(&conn, LONG[i % LONG.len()]).await);
            if i + 1 == 10 || i + 1 == 60 {
                let worker = engine_pid(&diagnostics(&conn).await).expect("engine_pid");
                rss.push((worker, rss_kib(pid).unwrap(), rss_kib(worker).unwrap()));
            }
        }
        (turns, rss)
    });
    print(&turns);
    let long = turns.iter().filter(|t| t.tokens >= 100.0).count();
    let early = median(turns[2..7].iter().map(|t| t.first_token).collect());
    let late = median(turns[55..60].iter().map(|t| t.first_token).collect());
    let (w10, d10, e10) = rss[0];
    let (w60, d60, e60) = rss[1];
    let grew = |a: u64, b: u64| (b as f64 - a as f64) / a as f64 * 100.0;
    eprintln!(
        "60 turns, {long} answers of 100 tokens or more; first token (median) turns 3-7 \
         {early:.3} s, turns 56-60 {late:.3} s ({:.2}x); RSS turn 10 -> 60: tutord {d10} -> \
         {d60} KiB ({:+.2} %), worker {e10} -> {e60} KiB ({:+.2} %)",
        late / early,
        grew(d10, d60),
        grew(e10, e60)
    );
    assert_eq!(
        w10, w60,
        "the engine worker was restarted during the lesson"
    );
    assert!(
        turns[55..].iter().all(|t| t.left_out > 0.0),
        "the window slides by turn 56"
    );
    assert!(
        grew(d10, d60) < 5.0,
        "tutord RSS grew {:+.2} %",
        grew(d10, d60)
    );
    assert!(
        grew(e10, e60) < 5.0,
        "worker RSS grew {:+.2} %",
        grew(e10, e60)
    );
    // A guard, not the speed target: at turn 60 the new question attends over a full window
    // (~1000 tokens of KV against ~200 at turn 5), so the first token is genuinely 1.3-1.6x
    // later on this machine (CI runs measured 1.58x and 1.62x on an otherwise quiet or a busy
    // machine); processing the window again instead would be ~18x (docs/benchmarks.md,
    // scripts/lesson-bench.sh, which prints the ratio beside a re-prefill baseline in one run,
    // is where the 1.5x target is checked). The processed-token counts above are the
    // exact check that the window is shifted, not recomputed.
    assert!(
        late <= 3.0 * early,
        "the first token came {:.2}x later at the end of the lesson ({early:.3} -> {late:.3} s)",
        late / early
    );
}

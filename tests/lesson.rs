//! A lesson longer than the context: the real small model (SmolLM2-135M) with a 1024-token
//! context and 96-token answers, 24 questions in one session. Every answer is given; once the
//! conversation outgrows the context the oldest turns leave the prompt (`window_left_out`)
//! and what stays is moved down the KV cache rather than computed again (`reused_tokens`);
//! a restart resumes the session and the lesson goes on.

mod common;

use std::time::Duration;

use common::*;
use zbus::Variant;

fn num(stats: &Dict, k: &str) -> f64 {
    match &*stats[k] {
        Variant::U32(n) => f64::from(*n),
        Variant::U64(n) => *n as f64,
        Variant::F64(x) => *x,
        other => panic!("{k}: {other:?}"),
    }
}

fn ok(stats: &Dict) -> bool {
    matches!(&*stats["ok"], Variant::Bool(true))
}

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

#[test]
fn a_lesson_longer_than_the_context_is_answered_to_the_end_and_resumed() {
    engine_binary();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_model_config(dir.path(), 96, "");
    // The small model's own default is 2048; 1024 makes the window slide within a few turns.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[llm]\n", "[llm]\ncontext_length = 1024\n");
    std::fs::write(&cfg, text).unwrap();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(90)));
    let mut rows = Vec::new();
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        for i in 0..24 {
            let q = QUESTIONS[i % QUESTIONS.len()];
            let (turn, stats) = ask_and_wait(&conn, q, false, Duration::from_secs(120)).await;
            assert!(ok(&stats), "{turn} ({q}): {stats:?}");
            rows.push((
                turn,
                num(&stats, "prompt_tokens"),
                num(&stats, "reused_tokens"),
                num(&stats, "window_left_out"),
                num(&stats, "time_to_first_token"),
            ));
        }
    });
    for (turn, prompt, reused, left_out, ttft) in &rows {
        println!(
            "{turn}: prompt {prompt} new + {reused} reused tokens, {left_out} messages left \
             out, first token after {ttft:.3} s"
        );
    }
    let slid: Vec<_> = rows.iter().filter(|r| r.3 > 0.0).collect();
    assert!(
        slid.len() >= 10,
        "the window never slid (or only {} times): a 1024-token context holds fewer than 24 \
         turns of 96 tokens",
        slid.len()
    );
    // After a slide, what stayed in the window is reused, not processed again: the new
    // tokens are the question (and the last answer), never the whole window.
    let reprocessed: Vec<_> = slid.iter().filter(|r| r.1 > 300.0).collect();
    assert!(
        reprocessed.len() <= 2,
        "{} turns processed their whole window again: {reprocessed:?}",
        reprocessed.len()
    );

    // A restart resumes the session; the lesson goes on.
    let mut notify = NotifySocket::new();
    let daemon = daemon.restart(&bus, Some(&notify.path), &cfg, &[]);
    assert!(notify.wait_for("READY=1", Duration::from_secs(90)));
    rt().block_on(async {
        let conn = connect_to(&bus).await;
        for q in &QUESTIONS[..3] {
            let (turn, stats) = ask_and_wait(&conn, q, false, Duration::from_secs(120)).await;
            assert!(ok(&stats), "after the restart, {turn} ({q}): {stats:?}");
        }
        let session = property(&conn, "Session").await;
        let Variant::Str(id) = &*session else {
            panic!("{session:?}")
        };
        let turns = history(&conn, id.as_str()).await;
        assert_eq!(turns.len(), 27, "every turn stays in the store");
    });
    drop(daemon);
}

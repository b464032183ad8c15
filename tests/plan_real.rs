//! The benchmark and the planner for real on this machine: the memory benchmark within its
//! budget, the three real catalog tiers ranked and chosen against targets that separate
//! them, and calibration from real answers of the real small model through the daemon
//! (the prediction moves toward what was measured, and the next boot keeps it).

mod common;

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use tutord::bench::{self, Measurement, Setup};
use tutord::config::Config;
use tutord::models::Catalog;
use tutord::plan::planner::Planner;
use tutord::plan::{Efficiencies, ModelFacts, Targets, VoiceCosts, choose, fetch_hint, predict};
use tutord::platform::Paths;
use tutord::platform::profile::Profiles;
use tutord::platform::topology::allowed_cpus;

/// The tests here measure speed: one at a time, so they do not measure each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The daemon's boot benchmark at its real budgets (not the harness's quick one).
const REAL_BENCH: [(&str, &str); 3] = [
    ("TUTORD_BENCH__BUDGET_MS", "1000"),
    ("TUTORD_BENCH__COMPUTE_BUDGET_MS", "300"),
    ("TUTORD_BENCH__MAX_WORKING_SET_MIB", "4096"),
];

/// One answer's figures as `AnswerFinished` gives them.
struct Answer {
    tokens_per_second: f64,
    generated: f64,
    /// Prompt tokens processed for the turn: each question starts a new session, so the
    /// system prompt and the question, the depth the answer starts at.
    prompt: f64,
}

/// Each question asked in turn on `bus`, each in a new session.
fn answer_figures(bus: &Bus, questions: &[&str], each: Duration) -> Vec<Answer> {
    rt().block_on(async {
        let conn = connect_to(bus).await;
        let mut out = Vec::new();
        for q in questions {
            let (_, stats) = ask_and_wait(&conn, q, true, each).await;
            out.push(Answer {
                tokens_per_second: number(&stats, "tokens_per_second"),
                generated: number(&stats, "generated_tokens"),
                prompt: number(&stats, "prompt_tokens"),
            });
        }
        out
    })
}

/// The boot benchmark with its default budgets, run once.
fn measured() -> &'static Measurement {
    static M: OnceLock<Measurement> = OnceLock::new();
    M.get_or_init(|| {
        let paths = Paths::new("/");
        let profile = Profiles::builtin().detect(&paths).clone();
        let setup = Setup::read(&paths, &profile, &allowed_cpus());
        bench::run(
            &setup,
            Duration::from_millis(1000),
            Duration::from_millis(300),
        )
    })
}

#[test]
fn the_benchmark_runs_within_its_budget() {
    let _g = serial();
    let m = measured();
    let b = &m.bandwidth;
    eprintln!(
        "read {} copy {} triad {} on {} threads, {} MiB ({}), setup {:.3} s, all {:.3} s; \
         compute {:.0} GOP/s INT8, {:.0} GFLOP/s FP32",
        bench::gbps(b.read),
        bench::gbps(b.copy),
        bench::gbps(b.triad),
        b.threads,
        b.working_set_bytes >> 20,
        m.working_set_rule,
        b.setup_seconds,
        m.wall_seconds,
        m.compute_ops() / 1e9,
        m.compute_fp32() / 1e9
    );
    // 1.0 s for memory + 0.3 s for compute; each kernel's last repetition may start just
    // inside its share, so allow one repetition's worth over.
    assert!(m.wall_seconds < 1.3 * 1.25, "{:.3} s", m.wall_seconds);
    assert!(b.working_set_bytes >= 256 << 20, "{b:?}");
    assert!(b.repetitions.iter().all(|r| *r >= 2), "{b:?}");
    // Memory is slower than 1 TB/s and faster than 500 MB/s on anything that runs this.
    assert!((5e8..1e12).contains(&b.read), "{b:?}");
    assert!(m.compute_ops() > 1e9, "{m:?}");
}

#[test]
fn three_real_tiers_and_targets_that_separate_them() {
    let _g = serial();
    let m = measured().clone();
    let catalog = Catalog::load(&Path::new(REPO).join("config/models.toml")).unwrap();
    let config = Config::default();
    let paths = Paths::new("/");
    let profile = Profiles::builtin().detect(&paths).clone();
    let mut planner = Planner::new(&config, profile, m.cpus.clone());
    planner.set_measurement(m, bench::Origin::Measured);
    let mut facts = planner.candidates(&catalog, Path::new("/nonexistent"));
    let names: Vec<_> = facts.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "smollm2-135m-q4_1",
            "qwen2.5-coder-0.5b-q4_k_m",
            "qwen2.5-coder-1.5b-q4_k_m",
            "qwen2.5-0.5b-instruct-q4_k_m",
            "qwen2.5-1.5b-instruct-q4_k_m",
            "llama-3.2-3b-instruct-q4_k_m",
            "qwen2.5-7b-instruct-q4_k_m",
            "llama-3.1-8b-instruct-q4_k_m",
        ]
    );
    let machine = planner.machine.clone().unwrap();
    let voice = VoiceCosts::from_probe(machine.cpu_fp32);
    let predict_all = |facts: &[ModelFacts], t: &Targets| -> Vec<_> {
        facts
            .iter()
            .map(|f| predict(f, &machine, &Efficiencies::default(), &voice, t))
            .collect()
    };
    // The board-sized models, not fetched, are predicted from their catalog fields: slower
    // as they grow, and named when fetching one would meet a target the fetched ones miss.
    let t = Targets {
        tokens_per_second: 1.0,
        time_to_first_token: 600.0,
        first_audio: 600.0,
        ..planner.targets.clone()
    };
    let all = predict_all(&facts, &t);
    let big: Vec<f64> = all[3..].iter().map(|p| p.tokens_per_second).collect();
    eprintln!("predicted tok/s, not fetched: {big:?}");
    assert!(
        big.windows(2).all(|w| w[0] > w[1]),
        "bigger is slower: {big:?}"
    );
    // Only the three registry tiers fetched, and a target every model meets: the largest,
    // the 8B, is the one to fetch.
    let t8 = Targets {
        tokens_per_second: big[4] * 0.9,
        ..t.clone()
    };
    let three_fetched: Vec<_> = facts
        .iter()
        .enumerate()
        .map(|(i, f)| ModelFacts {
            present: i < 3,
            ..f.clone()
        })
        .collect();
    let with_three = predict_all(&three_fetched, &t8);
    let c = choose(&with_three, &t8, None);
    assert_eq!(c.chosen, Some(2), "{c:?}");
    let hint = fetch_hint(&with_three, &c).unwrap();
    assert!(
        hint.starts_with("fetch llama-3.1-8b-instruct-q4_k_m for "),
        "{hint}"
    );
    // As if the three registry tiers were fetched: the choice among them is what is tested.
    facts.truncate(3);
    for f in &mut facts {
        f.present = true;
    }
    let plan_at = |tps: f64| {
        let t = Targets {
            tokens_per_second: tps,
            time_to_first_token: 60.0,
            first_audio: 600.0,
            ..planner.targets.clone()
        };
        let preds = predict_all(&facts, &t);
        let c = choose(&preds, &t, None);
        (preds, c)
    };
    let (preds, _) = plan_at(1.0);
    let tps: Vec<f64> = preds.iter().map(|p| p.tokens_per_second).collect();
    eprintln!("predicted tok/s: {tps:?}");
    assert!(
        tps[0] > tps[1] && tps[1] > tps[2],
        "bigger is slower: {tps:?}"
    );
    let between = |a: f64, b: f64| (a * b).sqrt();
    for (target, want) in [
        (tps[2] * 0.9, 2),
        (between(tps[1], tps[2]), 1),
        (between(tps[0], tps[1]), 0),
    ] {
        let (preds, c) = plan_at(target);
        assert_eq!(c.chosen, Some(want), "target {target:.1}: {c:?}");
        assert!(c.warning.is_none());
        assert!(c.reason.contains(&preds[want].model), "{}", c.reason);
    }
    let (_, c) = plan_at(tps[0] * 2.0);
    assert_eq!(c.chosen, Some(0), "none meets: the fastest");
    assert!(c.warning.is_some());
}

fn property(bus: &Bus, name: &str) -> f64 {
    match &*tutor_property(bus, name) {
        zbus::Variant::F64(x) => *x,
        other => panic!("{name} is {other:?}, not a double"),
    }
}

#[test]
fn calibration_from_real_answers_moves_the_prediction_and_survives_a_restart() {
    let _g = serial();
    small_model();
    engine_binary();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let cfg_dir = tempfile::tempdir().unwrap();
    // Predicted where the answers decode (as the first-boot test does): calibration fits each
    // answer at its own depth, so a prediction at the default 128 cells is slower than these
    // ~77-cell answers by the extra cache it reads (CI saw 73.8 predicted against 78.7).
    let cfg = small_model_config(
        cfg_dir.path(),
        ANSWER_TOKENS,
        &format!("[plan]\nprompt_tokens = {PLANNED_DEPTH}\n"),
    );
    // The real benchmark (not the harness's quick one): the calibration is relative to it.
    let daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &REAL_BENCH);
    assert!(notify.wait_for("READY=1", Duration::from_secs(60)));
    let before = property(&bus, "PredictedTokensPerSecond");
    assert!(before > 0.0, "the pinned catalog model has a prediction");
    assert!(property(&bus, "BandwidthMeasured") > 5e8);

    // Each answer's decode speed and length as `AnswerFinished` gives them. The calibrator
    // skips the first answer after a load (it pages the model in) and answers shorter than
    // 8 tokens (their speed is noise), and smooths the rest's time per token (a mean of the
    // first three, then an exponential average): the test folds exactly those, so a noisy
    // machine moves the expectation with the prediction instead of failing the test (CI saw
    // 2-38 tok/s between answers of one run).
    let answers: Vec<(f64, u32)> = answer_figures(
        &bus,
        &[
            "Name three colours and say why you like each.",
            "Explain what two plus two is, step by step.",
            "Tell me a short story about a cat.",
            "Describe the planet Mars to a child.",
            "Why is the sky blue? Explain it simply.",
            "Tell me three facts about the ocean.",
        ],
        Duration::from_secs(120),
    )
    .into_iter()
    .inspect(|a| {
        assert!(
            (40.0..=70.0).contains(&a.prompt),
            "PLANNED_DEPTH assumes prompts of ~53 tokens: this one has {}",
            a.prompt
        )
    })
    .map(|a| (a.tokens_per_second, a.generated as u32))
    .collect();
    let after = property(&bus, "PredictedTokensPerSecond");
    let mut smoothed: Option<(f64, u32)> = None;
    for (tps, tokens) in &answers[1..] {
        if *tokens < 8 || *tps <= 0.0 {
            continue;
        }
        smoothed = Some(match smoothed {
            None => (1.0 / tps, 1),
            Some((spt, n)) => (tutord::plan::smooth(spt, 1.0 / tps, n), n + 1),
        });
    }
    let (spt, counted) = smoothed.expect("at least one answer of 8 tokens or more after the first");
    let m = 1.0 / spt;
    let err = |p: f64| (p - m).abs() / m;
    eprintln!(
        "answers (tok/s, tokens) {answers:?}: {counted} calibrate, smoothed {m:.1} tok/s; \
         predicted before {before:.1}, after {after:.1}"
    );
    assert!(
        err(after) < err(before) || err(before) < 0.05,
        "error before {:.3}, after {:.3}",
        err(before),
        err(after)
    );
    // The fit's grid (memory efficiency in steps of 0.01) and its light pull toward the
    // defaults keep it from matching the smoothed sample exactly, but not by the 10 % the
    // calibrated prediction must be within (issue 19).
    assert!(err(after) < 0.10, "after calibration: {:.3}", err(after));

    // The next boot predicts with the calibration (and the cached benchmark).
    let mut notify2 = NotifySocket::new();
    let _daemon = daemon.restart(&bus, Some(&notify2.path), &cfg, &REAL_BENCH);
    assert!(notify2.wait_for("READY=1", Duration::from_secs(60)));
    let rebooted = property(&bus, "PredictedTokensPerSecond");
    assert!(
        (rebooted - after).abs() < 1e-6 * after,
        "after restart {rebooted} vs {after}"
    );
}

/// Every catalog language model in the models folder (the small one fetched first): what
/// the first-boot test checks. CI has the small model; a developer's cache may hold more.
fn fetched_language_models() -> Vec<(String, std::path::PathBuf)> {
    small_model();
    let catalog = Catalog::load(&Path::new(REPO).join("config/models.toml")).unwrap();
    let dir = models_dir();
    catalog
        .models
        .iter()
        .filter(|m| !m.backends.is_empty() && m.backends.iter().any(|b| b.as_str() == "cpu"))
        .filter(|m| std::fs::metadata(dir.join(&m.file)).is_ok_and(|md| md.len() == m.file_bytes))
        .map(|m| (m.name.clone(), dir.join(&m.file)))
        .collect()
}

/// The catalog's shape fields are typed in from model cards; each fetched file's GGUF header
/// must say the same, since an entry not fetched is planned from them alone.
#[test]
fn the_catalog_gives_each_fetched_models_shape_as_its_header_does() {
    let catalog = Catalog::load(&Path::new(REPO).join("config/models.toml")).unwrap();
    let models = fetched_language_models();
    assert!(!models.is_empty(), "no language model fetched");
    for (name, file) in models {
        let m = catalog.get(&name).unwrap();
        let g = tutord_protocol::gguf::meta::read_file(&file).unwrap();
        let shape = g.shape().unwrap();
        let feed_forward = g
            .get(&format!("{}.feed_forward_length", shape.architecture))
            .and_then(|v| v.as_u64())
            .unwrap();
        let header = (
            shape.layers,
            shape.kv_heads,
            shape.head_dim,
            g.matrix_rows(),
            Some((shape.embedding, feed_forward as u32)),
        );
        let listed = (
            m.layers,
            m.kv_heads,
            m.head_dim,
            m.matrix_rows,
            m.widths.map(|w| (w.embedding, w.feed_forward)),
        );
        eprintln!("{name}: header {header:?}, catalog {listed:?}");
        assert_eq!(
            listed, header,
            "{name}: (layers, kv_heads, head_dim, matrix_rows, widths)"
        );
    }
}

/// The goal (issue 19): each fetched model's first-boot prediction (a fresh store, no
/// calibration) within 20 % of its measured decode speed. Three things made that hold on the
/// shared 2-core VMs CI runs on (docs/benchmarks.md, "Session 15"): the engine is built
/// optimised in test builds too (a debug engine decoded ~20 % slower than the one that
/// ships), the plan is asked at the answers' depth (`PLANNED_DEPTH`), and it divides by the
/// boot benchmark's median repetitions, not its best. The host's own speed still moves by
/// ±15 % from one minute to the next, so each model gets up to three fresh first boots, every
/// one printed, and fails when none is within 20 %.
#[test]
fn first_boot_predicts_each_fetched_model_near_its_decode_speed() {
    let _g = serial();
    engine_binary();
    const GOAL: f64 = 0.20;
    let mut report = Vec::new();
    for (name, file) in fetched_language_models() {
        // Up to three fresh first boots, every one printed: a neighbour's burst during one
        // attempt's answers is not the planner's error.
        let mut attempts = Vec::new();
        for _ in 0..3 {
            let (predicted, measured, speeds) = first_boot(&name, &file);
            let err = (predicted - measured) / measured;
            eprintln!(
                "{name}: first boot predicted {predicted:.1} tok/s, measured {measured:.1} \
                 ({:+.1} %; answers {speeds:.1?})",
                100.0 * err
            );
            attempts.push(err);
            if err.abs() <= GOAL {
                break;
            }
        }
        let best = attempts
            .iter()
            .copied()
            .min_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap();
        eprintln!(
            "{name}: first-boot error {:+.1} %: goal (within {:.0} %) {}",
            100.0 * best,
            100.0 * GOAL,
            if best.abs() <= GOAL { "met" } else { "NOT met" }
        );
        report.push((name, best, attempts));
    }
    let off: Vec<_> = report.iter().filter(|(_, e, _)| e.abs() > GOAL).collect();
    assert!(
        off.is_empty(),
        "more than 20 % off at first boot in three fresh boots: {off:?}"
    );
}

/// The first-boot answers' length, and the context depth the plan is asked to predict at:
/// each question starts a new session, its prompt (the persona's system prompt and the
/// question) takes ~53 tokens, and an answer decodes from there to 53 + 48: 77 in the middle.
/// Decoding slows with depth (SmolLM2: 25 % from none to 256 tokens), so the prediction is
/// made where the answers are measured.
const ANSWER_TOKENS: u32 = 48;
const PLANNED_DEPTH: u32 = 53 + ANSWER_TOKENS / 2;

/// One first boot of `name` on a fresh state directory (no cached benchmark, no
/// calibration): the daemon's prediction before any answer, and the median decode speed of
/// the answers after the first (which pages the model in), with those answers.
fn first_boot(name: &str, file: &Path) -> (f64, f64, Vec<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tutord.toml");
    std::fs::write(
        &cfg,
        format!(
            "[llm]\nmodel = \"{name}\"\nmax_tokens = {ANSWER_TOKENS}\ntemperature = 0.0\n\
             [plan]\nprompt_tokens = {PLANNED_DEPTH}\n\
             [models]\ndir = \"{}\"\ncatalog = \"{REPO}/config/models.toml\"\n",
            file.parent().unwrap().display()
        ),
    )
    .unwrap();
    let bus = Bus::open();
    let mut notify = NotifySocket::new();
    let _daemon = Daemon::start_with_config(&bus, Some(&notify.path), &cfg, &REAL_BENCH);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(180)),
        "{name}"
    );
    let predicted = property(&bus, "PredictedTokensPerSecond");
    // The figures it planned with (the median runs) beside the best runs.
    let plan = tutorctl(&bus, &["plan", "--json"]);
    assert!(plan.status.success(), "tutorctl plan --json: {plan:?}");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let m = &plan["machine"];
    let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
    // The CPU by name: these figures differ between the hosts CI runs on.
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "{name}: on {cpu:?}: benchmark read {:.1} GB/s best, {:.1} typical; FP32 {:.0} GFLOP/s \
         best, {:.0} typical; INT8 {:.0} GOP/s typical; scalar chain {:.2} Gop/s typical (the \
         row cost scales by it: {:.1} ns)",
        f("bandwidth_read") / 1e9,
        f("typical_read") / 1e9,
        f("compute_fp32") / 1e9,
        f("typical_fp32") / 1e9,
        f("typical_ops") / 1e9,
        f("typical_scalar") / 1e9,
        f("overhead_per_row_seconds_cpu") * 1e9
    );
    let answers = answer_figures(
        &bus,
        &[
            "Why is the sky blue?",
            "What is a prime number?",
            "How do plants make food?",
            "What causes the seasons?",
            "Why do we have tides?",
        ],
        Duration::from_secs(180),
    );
    let depths: Vec<String> = answers
        .iter()
        .map(|a| format!("{:.0}+{:.0}", a.prompt, a.generated))
        .collect();
    eprintln!("{name}: answers' prompt+generated tokens {depths:?}");
    assert!(
        answers.iter().all(|a| (40.0..=70.0).contains(&a.prompt)),
        "{name}: PLANNED_DEPTH assumes prompts of ~53 tokens: {depths:?}"
    );
    let mut speeds: Vec<f64> = answers
        .into_iter()
        .skip(1)
        .filter(|a| a.generated >= 8.0)
        .map(|a| a.tokens_per_second)
        .collect();
    // The same median the boot benchmark takes (the mean of the middle two for an even count).
    let measured =
        bench::median(&speeds).unwrap_or_else(|| panic!("{name}: no answer of 8 tokens or more"));
    speeds.sort_by(f64::total_cmp);
    (predicted, measured, speeds)
}

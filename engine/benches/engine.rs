//! `cargo bench -p tutord-engine --bench engine`: tutord's llama.cpp engine beside llama.cpp's
//! own `llama-bench`, same model, same threads, in one run; the goals are tutord ≥ 0.95 ×
//! llama-bench in prompt tokens/s and ≥ 0.97 × in decode tokens/s. docs/benchmarks.md says how to read the table.
//!
//! Environment:
//! - `TUTORD_BENCH_MODEL`: the GGUF file (default
//!   `${TUTORD_MODELS_DIR:-/var/cache/tutord-dev/models}/SmolLM2-135M-Instruct.Q4_1.gguf`)
//! - `TUTORD_BENCH_THREADS`: threads for both (default: every CPU this process may use)
//! - `TUTORD_BENCH_REPS`: repetitions per round and side (default 3: `llama-bench -r 3`)
//! - `TUTORD_BENCH_CONTEXT`: tutord's context in tokens (default 2048, the daemon's); llama-bench
//!   sizes its own to each test's tokens
//! - `TUTORD_BENCH_ROUNDS`: rounds (default 3); the two sides take turns, in alternating
//!   order, so that a slow spell of the machine does not land on one side only
//! - `LLAMA_BENCH`: a `llama-bench` binary; default: the one `scripts/llama-bench.sh` builds
//!   and caches (its first run takes minutes)
//! - `LLAMA_BENCH_FLAVOR`: which one the script builds: `crate` (default here: llama-bench
//!   built the same way as the engine, from llama-cpp-sys-2's own llama.cpp tree with its ggml
//!   options) or `native` (llama.cpp as it builds itself: `-march=native`, OpenMP)
//!
//! How the two are made comparable: llama-bench's `tg64` decodes 64 tokens one at a time and
//! times only the decodes. tutord cannot decode without a prompt, so its 64 answer tokens sit
//! at positions 64..127, after the ~64-token prompt; llama-bench is run with `-d 0,64` as
//! well, and its `tg64 @ d64` (decoding at the same positions) is what tutord's decode figure
//! is set against. tutord's figure is taken between the first and the last streamed piece:
//! 63 tokens, each a decode *plus* greedy sampling and detokenisation, which is what an
//! answer costs per token and what llama-bench leaves out. `pp64` is set against tutord's
//! prompt rate (which includes applying the chat template and tokenising); llama-bench has no
//! first-token figure, the time of its `pp64` is the nearest.

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use serde::Deserialize;
use tutord_engine::engine::{BackendKind, ChatMessage, Engine, LoadSpec, Placement, Sampling};
use tutord_engine::llama::LlamaEngine;

/// Prompt tokens (after the chat template) and answer tokens, as llama-bench's `-p 64 -n 64`.
const PROMPT_TOKENS: u32 = 64;
const GEN_TOKENS: u32 = 64;
const DEFAULT_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Roomy enough for prompt + answer. The KV cells in use, and so the work per token, are the
/// same as in llama-bench's context of exactly prompt + answer tokens.
const CONTEXT: u32 = 2048;
/// The request asks for a long answer so that greedy decoding does not stop before 64 tokens;
/// words from `FILLER` are appended until the templated prompt is `PROMPT_TOKENS` long.
const REQUEST: &str = "Write a long, detailed story about an old lighthouse keeper and the \
                       winter storm that changed his life. Use these words:";
const FILLER: &[&str] = &[
    "harbor", "lantern", "gull", "rope", "fog", "bell", "anchor", "tide", "cliff", "compass",
    "candle", "sail", "reef", "kettle", "whistle", "pebble", "oar", "mast", "net", "shell",
    "cabin", "boots", "letter", "map", "coat", "ladder", "brass", "salt", "moon", "island",
];

// ggml's version as the linked library reports it (the engine's handles do not expose it).
unsafe extern "C" {
    fn ggml_version() -> *const c_char;
    fn ggml_commit() -> *const c_char;
}

struct Config {
    model: PathBuf,
    models_dir: PathBuf,
    threads: usize,
    reps: usize,
    rounds: usize,
    context: u32,
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let models_dir = std::env::var_os("TUTORD_MODELS_DIR").map_or_else(
            || PathBuf::from("/var/cache/tutord-dev/models"),
            PathBuf::from,
        );
        let model = std::env::var_os("TUTORD_BENCH_MODEL")
            .map_or_else(|| models_dir.join(DEFAULT_MODEL), PathBuf::from);
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            model,
            models_dir,
            threads: env_number("TUTORD_BENCH_THREADS", all)?,
            reps: env_number("TUTORD_BENCH_REPS", 3)?,
            rounds: env_number("TUTORD_BENCH_ROUNDS", 3)?,
            context: env_number("TUTORD_BENCH_CONTEXT", CONTEXT as usize)? as u32,
        })
    }
}

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name}={v}: expected a positive whole number")),
        },
    }
}

/// The samples of one figure. The table shows the median, which a burst of load from
/// elsewhere moves less than the mean, and the spread as a relative standard deviation.
#[derive(Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Sample standard deviation relative to the mean, in percent.
    fn spread(&self) -> f64 {
        let n = self.0.len() as f64;
        if self.0.len() < 2 {
            return 0.0;
        }
        let mean = self.0.iter().sum::<f64>() / n;
        let var = self.0.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        100.0 * var.sqrt() / mean
    }

    fn show(&self, decimals: usize) -> String {
        format!("{:.d$} ±{:.1}%", self.median(), self.spread(), d = decimals)
    }
}

/// tutord's side: one greedy answer from an empty KV cache per repetition.
struct Tutord {
    engine: LlamaEngine,
    chat: Vec<ChatMessage>,
    prompt_tokens: u32,
    pp: Samples,
    /// Milliseconds from the request to the first streamed piece.
    ttft_ms: Samples,
    /// Tokens/s between the first and the last piece (what the table compares).
    tg: Samples,
    /// `GenStats::decode_tokens_per_second`, the figure the daemon reports.
    tg_reported: Samples,
    /// The shortest answer seen (the model may end one before `GEN_TOKENS`).
    generated: u32,
    /// Milliseconds of the prompt stage when only its last token is decoded
    /// (`Tutord::prompt_stage_alone`).
    stage_ms: Samples,
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        temperature: 0.0,
        max_tokens,
        ..Sampling::default()
    }
}

impl Tutord {
    fn load(cfg: &Config) -> Result<Self, String> {
        let spec = LoadSpec {
            backend: BackendKind::Cpu,
            model_path: cfg.model.clone(),
            context_length: cfg.context,
            // One llama.cpp thread per listed CPU. The bench does not pin, nor does
            // llama-bench by default; in tutord the supervisor pins the worker.
            placement: Placement {
                cpus: (0..cfg.threads).collect(),
            },
            runtime_library: None,
        };
        let started = Instant::now();
        let mut engine = LlamaEngine::load(&spec).map_err(|e| format!("loading: {e}"))?;
        eprintln!(
            "tutord: loaded {} in {:.2} s ({})",
            cfg.model.display(),
            started.elapsed().as_secs_f64(),
            engine.info().runtime
        );
        let (chat, prompt_tokens) = fit_prompt(&mut engine)?;
        // Warm-up: one whole answer, not counted.
        engine.reset();
        engine
            .generate(&chat, &greedy(GEN_TOKENS), &mut |_| true)
            .map_err(|e| format!("warm-up: {e}"))?;
        Ok(Self {
            engine,
            chat,
            prompt_tokens,
            pp: Samples::default(),
            ttft_ms: Samples::default(),
            tg: Samples::default(),
            tg_reported: Samples::default(),
            generated: GEN_TOKENS,
            stage_ms: Samples::default(),
        })
    }

    fn run(&mut self, reps: usize) -> Result<(), String> {
        for _ in 0..reps {
            // From an empty KV cache, like each llama-bench repetition: the whole prompt is
            // processed, nothing is reused from the repetition before.
            self.engine.reset();
            let mut pieces: Vec<Instant> = Vec::with_capacity(GEN_TOKENS as usize + 1);
            let stats = self
                .engine
                .generate(&self.chat, &greedy(GEN_TOKENS), &mut |_| {
                    pieces.push(Instant::now());
                    true
                })
                .map_err(|e| e.to_string())?;
            if stats.reused_tokens != 0 || stats.prompt_tokens != self.prompt_tokens {
                return Err(format!(
                    "{} prompt tokens processed and {} reused; expected {} and 0",
                    stats.prompt_tokens, stats.reused_tokens, self.prompt_tokens
                ));
            }
            self.generated = self.generated.min(stats.generated_tokens);
            // One piece per token unless a token ends inside a UTF-8 character; then the
            // pieces do not count tokens and the engine's own figure is all there is.
            let between = match (pieces.first(), pieces.last()) {
                (Some(first), Some(last)) if pieces.len() as u32 == stats.generated_tokens => {
                    (pieces.len() - 1) as f64 / (*last - *first).as_secs_f64()
                }
                _ => stats.decode_tokens_per_second,
            };
            self.pp.0.push(stats.prompt_tokens_per_second);
            self.ttft_ms.0.push(stats.time_to_first_token * 1e3);
            self.tg.0.push(between);
            self.tg_reported.0.push(stats.decode_tokens_per_second);
        }
        Ok(())
    }
}

impl Tutord {
    /// What the engine's prompt stage costs beside llama.cpp's decode of the prompt: the same
    /// chat asked again on the cache the answer before left, so that the engine applies the
    /// chat template, tokenises, trims the cache and decodes only the prompt's last token.
    /// That time less one decode (at the table's decode rate) is what `pp64` pays that
    /// llama-bench's does not.
    fn prompt_stage_alone(&mut self, reps: usize) -> Result<(), String> {
        for _ in 0..reps {
            self.engine.reset();
            self.engine
                .generate(&self.chat, &greedy(1), &mut |_| true)
                .map_err(|e| e.to_string())?;
            let again = self
                .engine
                .generate(&self.chat, &greedy(1), &mut |_| true)
                .map_err(|e| e.to_string())?;
            if again.prompt_tokens != 1 || again.prompt_tokens_per_second <= 0.0 {
                return Err(format!(
                    "asked again, {} prompt tokens processed; expected 1",
                    again.prompt_tokens
                ));
            }
            self.stage_ms.0.push(1e3 / again.prompt_tokens_per_second);
        }
        Ok(())
    }
}

/// The chat whose templated prompt is the longest not over `PROMPT_TOKENS` tokens. Each
/// probe processes the prompt and samples one token, which also warms the engine up.
fn fit_prompt(engine: &mut LlamaEngine) -> Result<(Vec<ChatMessage>, u32), String> {
    let mut best = None;
    for filler in 0..=FILLER.len() {
        let text = format!("{REQUEST} {}.", FILLER[..filler].join(", "));
        let chat = vec![ChatMessage::new("user", &text)];
        engine.reset();
        let stats = engine
            .generate(&chat, &greedy(1), &mut |_| true)
            .map_err(|e| format!("probing the prompt: {e}"))?;
        if stats.prompt_tokens > PROMPT_TOKENS {
            break;
        }
        best = Some((chat, stats.prompt_tokens));
    }
    best.ok_or_else(|| {
        format!("the bare request is over {PROMPT_TOKENS} tokens with this model's chat template")
    })
}

/// One test of `llama-bench -o json` (the fields used here).
#[derive(Debug, Deserialize)]
struct LlamaBenchTest {
    build_commit: String,
    n_threads: u32,
    n_prompt: u32,
    n_gen: u32,
    n_depth: u32,
    samples_ns: Vec<f64>,
    samples_ts: Vec<f64>,
    #[serde(default)]
    cpu_info: String,
}

/// llama-bench's side, gathered over the rounds.
struct LlamaBench {
    binary: PathBuf,
    args: Vec<String>,
    pp: Samples,
    /// Milliseconds of the pp64 test: the nearest llama-bench has to a first-token time.
    pp_ms: Samples,
    tg: Samples,
    tg_depth: Samples,
    build_commit: String,
    n_threads: u32,
    cpu_info: String,
    /// key=value lines of `llama-bench.info` (written by scripts/llama-bench.sh), if any.
    info: Vec<(String, String)>,
}

impl LlamaBench {
    fn find(cfg: &Config) -> Result<Self, String> {
        let binary = match std::env::var_os("LLAMA_BENCH") {
            Some(p) => PathBuf::from(p),
            None => build_llama_bench()?,
        };
        let info = std::fs::read_to_string(binary.with_file_name("llama-bench.info"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = vec![
            "-m".to_string(),
            cfg.model.display().to_string(),
            "-t".into(),
            cfg.threads.to_string(),
            "-p".into(),
            PROMPT_TOKENS.to_string(),
            "-n".into(),
            GEN_TOKENS.to_string(),
            // 0: the standard figures; 64: decoding at the positions tutord's answer has.
            "-d".into(),
            format!("0,{PROMPT_TOKENS}"),
            "-r".into(),
            cfg.reps.to_string(),
            "-o".into(),
            "json".into(),
        ];
        eprintln!("llama-bench: {} {}", binary.display(), args.join(" "));
        Ok(Self {
            binary,
            args,
            pp: Samples::default(),
            pp_ms: Samples::default(),
            tg: Samples::default(),
            tg_depth: Samples::default(),
            build_commit: String::new(),
            n_threads: 0,
            cpu_info: String::new(),
            info,
        })
    }

    fn run(&mut self) -> Result<(), String> {
        let out = Command::new(&self.binary)
            .args(&self.args)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", self.binary.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed ({})", self.binary.display(), out.status));
        }
        let tests: Vec<LlamaBenchTest> =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("its JSON: {e}"))?;
        let test = |n_prompt, n_gen, n_depth| {
            tests
                .iter()
                .find(|t| t.n_prompt == n_prompt && t.n_gen == n_gen && t.n_depth == n_depth)
                .ok_or(format!(
                    "no test with -p {n_prompt} -n {n_gen} -d {n_depth} in its output"
                ))
        };
        let pp = test(PROMPT_TOKENS, 0, 0)?;
        self.pp.0.extend(&pp.samples_ts);
        self.pp_ms.0.extend(pp.samples_ns.iter().map(|ns| ns / 1e6));
        self.tg.0.extend(&test(0, GEN_TOKENS, 0)?.samples_ts);
        self.tg_depth
            .0
            .extend(&test(0, GEN_TOKENS, PROMPT_TOKENS)?.samples_ts);
        self.build_commit.clone_from(&pp.build_commit);
        self.n_threads = pp.n_threads;
        self.cpu_info.clone_from(&pp.cpu_info);
        Ok(())
    }

    fn info(&self, key: &str) -> &str {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    }
}

/// Runs scripts/llama-bench.sh (builds once, then answers from its cache); its last line of
/// output is the binary's path.
fn build_llama_bench() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/llama-bench.sh");
    eprintln!(
        "llama-bench: {} (its first run downloads and builds it: minutes)",
        script.display()
    );
    let mut command = Command::new(&script);
    if std::env::var_os("LLAMA_BENCH_FLAVOR").is_none() {
        command.env("LLAMA_BENCH_FLAVOR", "crate");
    }
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last().map(str::trim) {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!("{} printed no path", script.display())),
    }
}

/// "llama-cpp-sys-2 0.1.161: llama.cpp 0.6.0-dev, ggml 0.26.0 (commit unknown)": the crate
/// from Cargo.lock, llama.cpp's version from the crate's sources in Cargo's registry (the
/// crate carries no git metadata), ggml's from the linked library.
fn tutord_llama_version() -> String {
    let lock = include_str!("../../Cargo.lock");
    let sys = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("?", |v| v.trim_matches('"'));
    let cargo_home = std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    );
    let llama = std::fs::read_dir(cargo_home.join("registry/src"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| {
            index
                .path()
                .join(format!("llama-cpp-sys-2-{sys}/llama.cpp/CMakeLists.txt"))
        })
        .find_map(|f| std::fs::read_to_string(f).ok())
        .map_or_else(|| "?".to_string(), |cmake| cmake_version(&cmake));
    // SAFETY: both return pointers to static NUL-terminated strings of the linked ggml.
    let (ggml, commit) = unsafe {
        (
            CStr::from_ptr(ggml_version()).to_string_lossy(),
            CStr::from_ptr(ggml_commit()).to_string_lossy(),
        )
    };
    format!("llama-cpp-sys-2 {sys}: llama.cpp {llama}, ggml {ggml} (commit {commit})")
}

/// "0.6.0-dev" from llama.cpp's CMakeLists.txt: set(LLAMA_VERSION_MAJOR 0) and so on.
fn cmake_version(cmake: &str) -> String {
    let part = |name: &str| {
        let key = format!("set(LLAMA_VERSION_{name} ");
        cmake
            .lines()
            .find_map(|l| l.trim().strip_prefix(key.as_str()))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or("?")
            .to_string()
    };
    let dev = cmake.contains("option(LLAMA_BUILD_IS_DEV \"llama: dev build\" ON)");
    format!(
        "{}.{}.{}{}",
        part("MAJOR"),
        part("MINOR"),
        part("PATCH"),
        if dev { "-dev" } else { "" }
    )
}

/// Compilers running beside the bench (another build on this machine) make figures noisy.
fn busy_compilers() -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| matches!(c.trim(), "rustc" | "cc1" | "cc1plus"))
        })
        .count()
}

fn report(cfg: &Config, t: &Tutord, l: &LlamaBench) {
    let model = cfg.model.file_name().unwrap_or_default().to_string_lossy();
    println!();
    println!(
        "{model}: {} threads; {} rounds of {} repetitions per side after a warm-up; tutord's \
         prompt {} tokens (chat template included), answer {} tokens, greedy",
        cfg.threads, cfg.rounds, cfg.reps, t.prompt_tokens, t.generated
    );
    println!("CPU: {}", l.cpu_info);
    println!();
    println!(
        "| {:<38} | {:>16} | {:>16} | {:>6} |",
        "median ± relative sd", "tutord engine", "llama-bench", "ratio"
    );
    println!("|{:-<40}|{:->18}|{:->18}|{:->8}|", "", "", "", "");
    let row = |what: &str, ours: String, theirs: String, ratio: Option<f64>| {
        let ratio = ratio.map_or_else(String::new, |r| format!("{r:.3}"));
        println!("| {what:<38} | {ours:>16} | {theirs:>16} | {ratio:>6} |");
    };
    let tg_ratio = t.tg.median() / l.tg_depth.median();
    let pp_ratio = t.pp.median() / l.pp.median();
    row(
        "prompt, tok/s (pp64)",
        t.pp.show(1),
        l.pp.show(1),
        Some(pp_ratio),
    );
    row(
        "decode, tok/s (tg64 at depth 64)",
        t.tg.show(1),
        l.tg_depth.show(1),
        Some(tg_ratio),
    );
    row(
        "decode, tok/s (tg64, empty context)",
        String::new(),
        l.tg.show(1),
        None,
    );
    row(
        "decode as GenStats reports it, tok/s",
        t.tg_reported.show(1),
        String::new(),
        None,
    );
    // For a time the speed ratio is theirs ÷ ours: the shorter, the better.
    row(
        "first token, ms (llama-bench: pp64)",
        t.ttft_ms.show(1),
        l.pp_ms.show(1),
        Some(l.pp_ms.median() / t.ttft_ms.median()),
    );
    // The prompt stage beside llama.cpp's decode (`Tutord::prompt_stage_alone`).
    let decode_ms = 1e3 / t.tg.median();
    let prompt_ms = f64::from(t.prompt_tokens) * 1e3 / t.pp.median();
    let beside = t.stage_ms.median() - decode_ms;
    println!();
    println!(
        "tutord's prompt stage with one token to decode: {} ms, less one decode ({decode_ms:.1} \
         ms): {beside:.1} ms of chat template, tokenising and cache trim, {:.1} % of its pp64 \
         time ({prompt_ms:.1} ms)",
        t.stage_ms.show(1),
        100.0 * beside / prompt_ms
    );
    println!();
    let goal = |ratio: f64, goal: f64| if ratio >= goal { "met" } else { "NOT met" };
    println!(
        "prompt ratio {pp_ratio:.3}: goal ≥ 0.95 {}; decode ratio {tg_ratio:.3}: goal ≥ 0.97 {}",
        goal(pp_ratio, 0.95),
        goal(tg_ratio, 0.97)
    );
    println!("ratio = tutord ÷ llama-bench in speed (first token: llama-bench's time ÷ tutord's)");
    println!();
    println!("tutord engine: {}", tutord_llama_version());
    println!(
        "llama-bench:   llama-cpp-python {}: llama.cpp {}, ggml {} (commit {}), {} build: {}",
        l.info("llama_cpp_python"),
        l.info("llama_cpp_version"),
        l.info("ggml_version"),
        l.build_commit,
        l.info("flavor"),
        l.binary.display()
    );
    if l.n_threads as usize != cfg.threads {
        println!("WARNING: llama-bench ran {} threads", l.n_threads);
    }
    if t.generated < GEN_TOKENS {
        println!(
            "WARNING: an answer ended after {} tokens; tutord's decode figure is over those",
            t.generated
        );
    }
}

fn run() -> Result<(), String> {
    let cfg = Config::from_env()?;
    if !cfg.model.is_file() {
        return Err(format!(
            "model {} not found. Fetch it with\n    \
             tutorctl models --catalog config/models.toml --dir {} fetch\n\
             or point TUTORD_BENCH_MODEL at a GGUF file",
            cfg.model.display(),
            cfg.models_dir.display()
        ));
    }
    let busy = busy_compilers();
    if busy > 0 {
        eprintln!("WARNING: {busy} compiler processes are running: the figures will be noisy");
    }
    let mut llama = LlamaBench::find(&cfg).map_err(|e| format!("llama-bench: {e}"))?;
    let mut tutord = Tutord::load(&cfg).map_err(|e| format!("tutord engine: {e}"))?;
    for round in 0..cfg.rounds {
        eprintln!("round {}/{}", round + 1, cfg.rounds);
        // Alternate who goes first, so a drift of the machine's speed evens out.
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                tutord
                    .run(cfg.reps)
                    .map_err(|e| format!("tutord engine: {e}"))?;
            } else {
                llama.run().map_err(|e| format!("llama-bench: {e}"))?;
            }
        }
    }
    tutord
        .prompt_stage_alone(cfg.rounds * cfg.reps)
        .map_err(|e| format!("tutord engine: {e}"))?;
    report(&cfg, &tutord, &llama);
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; this harness takes its settings from the environment.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

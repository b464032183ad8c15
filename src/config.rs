//! Configuration: built-in defaults ← main file ← drop-ins ← `TUTORD_*` environment.
//!
//! The main file is `/etc/tutord/tutord.toml` (`--config` replaces it); drop-ins are the
//! `*.toml` files of `<main file>.d/`, applied in name order, so `--config /tmp/t.toml` also
//! reads `/tmp/t.toml.d/` and tests never touch `/etc`. Environment variables name a key as
//! `TUTORD_<SECTION>__<KEY>` (double underscore between section and key, e.g.
//! `TUTORD_DAEMON__LOG_LEVEL=debug`); `TUTORD_*` variables without the double underscore are
//! not configuration and are ignored, so tooling variables cannot break the daemon.
//!
//! Every layer is checked on its own before they are merged, so an error names the file (or
//! variable) it came from, the key, and the reason. `config/tutord.toml` documents every key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

mod history;
pub use history::HistoryConfig;

/// The main configuration file on the board.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tutord/tutord.toml";
/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "TUTORD";

/// The daemon's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub store: StoreConfig,
    pub platform: PlatformConfig,
    pub llm: LlmConfig,
    pub models: ModelsConfig,
    pub tuning: TuningConfig,
    pub bench: BenchConfig,
    pub plan: PlanConfig,
    pub tutor: TutorConfig,
    pub history: HistoryConfig,
    pub voice: VoiceConfig,
}

/// `[models]`: where model files live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The folder `tutorctl models fetch` fills and the daemon loads models from. Default
    /// `/var/lib/tutord/models`. `tutord --state-dir` does not move it, so tests and several
    /// daemons share one fetched copy.
    pub dir: PathBuf,
    /// The model catalog: names, files, sizes, hashes, sources. Default
    /// `/usr/share/tutord/models.toml`.
    pub catalog: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(crate::models::DEFAULT_MODELS_DIR),
            catalog: PathBuf::from(crate::models::DEFAULT_CATALOG_PATH),
        }
    }
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Log verbosity; `RUST_LOG` overrides it when set. Default `info`.
    pub log_level: LogLevel,
    /// Where the SQLite database and caches live. Default `/var/lib/tutord`
    /// (systemd's `StateDirectory=`); `tutord --state-dir` overrides it.
    pub state_dir: PathBuf,
    /// Besides root (and tutord's own user), members of this group may call the methods that
    /// change the system: `SelectModel`, `Rebenchmark`, `SetLogLevel`. The caller is checked
    /// from the bus's credentials for the message's sender, on top of the D-Bus policy
    /// (which lets group `tutor` call at all). "" = root only. Default "".
    pub admin_group: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            state_dir: PathBuf::from("/var/lib/tutord"),
            admin_group: String::new(),
        }
    }
}

/// `[store]`: the SQLite database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long a statement waits for a lock held by another connection (e.g. `sqlite3`
    /// opened by a person diagnosing the board), in milliseconds. 1..=60000, default 5000.
    pub busy_timeout_ms: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 5000,
        }
    }
}

/// `[platform]`: where the hardware is described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// Root under which `/proc` and `/sys` are read. Default `/`; tests and board bring-up
    /// point it at a copy of a board's files.
    pub root: PathBuf,
    /// Board profiles (bus width, DDR clock files, devfreq names): a file laid out like
    /// `/usr/share/doc/tutord/boards.toml`, or empty for the built-in ones. Default empty.
    pub boards: PathBuf,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            boards: PathBuf::new(),
        }
    }
}

/// `[llm]`: the language model and its worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The model to load at boot: `auto` (the planner picks the largest fetched catalog model
    /// that meets `[plan]`'s targets and fits), a name from the catalog (pinned: it wins, with
    /// a warning if it misses the targets), a path to a model file (anything with a `/`), or
    /// empty for none (the daemon then serves without a tutor; `Ask` fails with `NotReady`).
    /// Default `auto`.
    pub model: String,
    /// When a pinned model (a name or a path) fails to load at boot, or a serving model is
    /// given up (it killed the engine worker on two answers in a row): load the plan's
    /// choice instead, with a warning (true), or stay without a tutor, "degraded" (false).
    /// Default true.
    pub fallback: bool,
    /// Where the model runs: `auto` (the planner's choice among what the board has), `cpu`
    /// (llama.cpp), `cuda` (llama.cpp on the GPU, Jetson) or `npu` (RKLLM, RK3588). Default
    /// `auto`.
    pub backend: BackendChoice,
    /// Context length in tokens (system prompt + history + answer). 256..=32768, default 2048.
    pub context_length: u32,
    /// CPU cores the engine's threads may use; empty = all. The tuning issue fills this
    /// from the CPU topology (A76 cores 4-7 on RK3588).
    pub cpus: Vec<usize>,
    /// The worker binary; empty = `tutord-engine` next to `tutord`.
    pub engine_path: String,
    /// The tutor's instructions, sent first in every conversation; empty = made from the
    /// `[tutor]` persona (the default).
    pub system_prompt: String,
    /// Longest answer, in tokens. 1..=4096, default 256.
    pub max_tokens: u32,
    /// Sampling temperature; 0 = always the most likely token. 0.0..=2.0, default 0.7.
    pub temperature: f64,
    /// Seconds an answer may go without a new piece (or an abort without ending, at most 10)
    /// before the engine counts as wedged (a driver or NPU call that never returns while the
    /// worker still answers pings): the worker is killed and restarted and the turn fails
    /// saying so. Long enough for the slowest prompt processing before a first token.
    /// 1..=3600, default 120.
    pub stall_seconds: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            model: "auto".into(),
            fallback: true,
            backend: BackendChoice::Auto,
            context_length: 2048,
            cpus: Vec::new(),
            engine_path: String::new(),
            system_prompt: String::new(),
            max_tokens: 256,
            temperature: 0.7,
            stall_seconds: 120,
        }
    }
}

/// `[tutor]`: the persona the system prompt is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TutorConfig {
    /// The subject of a session when `StartSession` names none (and of the first session).
    pub subject: String,
    /// Who is taught, e.g. "primary school", "secondary school", "adult beginner".
    pub level: String,
    /// The language the tutor answers in.
    pub language: String,
    /// How the tutor speaks.
    pub tone: String,
}

impl Default for TutorConfig {
    fn default() -> Self {
        Self {
            subject: "general knowledge".into(),
            level: "secondary school".into(),
            language: "English".into(),
            tone: "patient and encouraging".into(),
        }
    }
}

/// `[voice]`: speech in and out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// The whisper model: a catalog name (its file in `[models] dir`) or a path to a ggml
    /// file. Default `whisper-tiny.en`.
    pub stt_model: String,
    /// Threads whisper runs on; they inherit tutord's affinity, so they run on the cores
    /// `[tuning] cpus` chose. No more than the cores free while it runs (ggml's threads
    /// spin at barriers). 0 = one per core tutord may run on, at most 4 (the big cores of an
    /// RK3588 once tuning pinned it there). 0..=64, default 0.
    pub stt_threads: u32,
    /// The text-to-speech voice: a Piper catalog name (its `.onnx` in `[models] dir`, with
    /// the `.onnx.json` beside it) or a path to a Piper `.onnx` file. When it is missing,
    /// tutord warns and speaks with espeak-ng. Default `piper-joe-medium`.
    pub tts_voice: String,
    /// The ONNX Runtime library Piper voices run in: a catalog name or a path to
    /// `libonnxruntime.so.*`; a name stands for the catalog's `<name>-<arch>` entry when
    /// there is one (`onnxruntime-aarch64` on the boards). Default `onnxruntime`.
    pub tts_runtime: String,
    /// The ALSA capture device (a PCM name as `arecord -L` lists them), recorded at 16 kHz
    /// mono. "" = no microphone: spoken questions come only from `ListenWav`. Default
    /// `default`.
    pub capture_device: String,
    /// The ALSA playback device answers are spoken on. "" = no speaker: spoken answers go
    /// only to `Speech` signals. Default `default`.
    pub playback_device: String,
    /// When the microphone is listened to: `push-to-talk` (from `Listen()` until the
    /// endpoint or `StopListening()`) or `always` (every utterance is a question).
    /// Default `push-to-talk`.
    pub listen: ListenMode,
    /// Silence that ends an utterance, ms. 200..=5000, default 700 (Home Assistant's).
    pub endpoint_silence_ms: u32,
    /// Speech heard while the tutor talks stops the answer and starts listening.
    /// Default true.
    pub barge_in: bool,
}

/// `[voice] listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListenMode {
    PushToTalk,
    Always,
}

impl ListenMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenMode::PushToTalk => "push-to-talk",
            ListenMode::Always => "always",
        }
    }
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            stt_model: "whisper-tiny.en".into(),
            stt_threads: 0,
            tts_voice: "piper-joe-medium".into(),
            tts_runtime: "onnxruntime".into(),
            capture_device: "default".into(),
            playback_device: "default".into(),
            listen: ListenMode::PushToTalk,
            endpoint_silence_ms: 700,
            barge_in: true,
        }
    }
}

/// `[bench]`: the boot self-benchmark (memory bandwidth, compute peaks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// Wall time for the memory benchmark at boot, setup included. 50..=10000, default 1000.
    pub budget_ms: u32,
    /// Wall time for the compute peaks. 10..=5000, default 300.
    pub compute_budget_ms: u32,
    /// A result for the same board, kernel, cores and DDR clock state is reused this long.
    /// 0..=365, default 7; `Rebenchmark()` measures anyway.
    pub max_age_days: u32,
    /// Largest working set, MiB (it is otherwise 8 x the last-level cache, at least 256 MiB,
    /// at most a quarter of MemAvailable). 16..=65536, default 4096.
    pub max_working_set_mib: u32,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            budget_ms: 1000,
            compute_budget_ms: 300,
            max_age_days: 7,
            max_working_set_mib: 4096,
        }
    }
}

/// `[plan]`: what the model choice aims for and what it leaves room for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Decode speed to meet: reading speed is ~5 tokens/s. 0.1..=1000, default 5.0.
    pub target_tokens_per_second: f64,
    /// End of a spoken question → first audio of the answer to meet, seconds (speech
    /// recognition + time to first token + the first chunk's decoding and synthesis).
    /// 0.1..=300, default 4.0.
    pub target_first_audio_seconds: f64,
    /// Time to first token to meet, seconds: 0.05..=120, or 0 = half of
    /// `target_first_audio_seconds`. Default 0.
    pub target_first_token_seconds: f64,
    /// A typical prompt (instructions + question), tokens. 1..=32768, default 128.
    pub prompt_tokens: u32,
    /// Memory kept for speech recognition, speech synthesis and the OS, MiB.
    pub stt_mib: u32,
    pub tts_mib: u32,
    pub reserve_mib: u32,
}

impl PlanConfig {
    /// The time to first token to meet: set, or (0) half of the first-audio budget.
    pub fn first_token_target(&self) -> f64 {
        if self.target_first_token_seconds == 0.0 {
            self.target_first_audio_seconds / 2.0
        } else {
            self.target_first_token_seconds
        }
    }
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            target_tokens_per_second: 5.0,
            target_first_audio_seconds: 4.0,
            target_first_token_seconds: 0.0,
            prompt_tokens: 128,
            // whisper tiny.en (75 MB) and its buffers; Piper medium (63 MB) + ONNX Runtime.
            stt_mib: 200,
            tts_mib: 200,
            reserve_mib: 512,
        }
    }
}

// ---- [tuning] (issue 5) ----------------------------------------------------------------

/// `[tuning]`: what tutord changes on the system to free the memory bus for the model, every
/// change recorded in the database before it is made and undone on stop (or on the next
/// start after a crash). See `src/tuning/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuningConfig {
    /// `apply`, `dry-run` (log every change, make none) or `off`. Default `apply`; on a
    /// generic board (a PC, CI) only what is configured explicitly below is changed.
    pub mode: TuningMode,
    /// On a known board (rk3588, rk3576, orin-nano): also stop the image's default
    /// nonessential units and pin the clocks the board profile names. Default true.
    pub board_defaults: bool,
    /// Units to stop while tutord runs, on top of the board defaults. Default empty.
    pub stop_units: Vec<String>,
    /// Units of the default list never to stop. Default empty.
    pub keep_units: Vec<String>,
    /// CPU cores tutord and its engine run on; empty = the big cores on a known board, all
    /// (unchanged) on a generic one. Default empty.
    pub cpus: Vec<usize>,
    /// Pin clocks on the chosen cores and the board profile's devfreq devices (governor
    /// `performance`; Jetson power mode and jetson_clocks). Default true.
    pub clocks: bool,
    /// `keep` (report active swap) or `off` (turn it off while tutord runs). Default `keep`.
    pub swap: SwapChoice,
    /// Seconds between thermal samples; 0 = no sampling. 0..=3600, default 10.
    pub thermal_interval_s: u32,
}

impl Default for TuningConfig {
    fn default() -> Self {
        Self {
            mode: TuningMode::Apply,
            board_defaults: true,
            stop_units: Vec::new(),
            keep_units: Vec::new(),
            cpus: Vec::new(),
            clocks: true,
            swap: SwapChoice::Keep,
            thermal_interval_s: 10,
        }
    }
}

/// `[tuning] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TuningMode {
    Apply,
    DryRun,
    Off,
}

impl TuningMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TuningMode::Apply => "apply",
            TuningMode::DryRun => "dry-run",
            TuningMode::Off => "off",
        }
    }
}

/// `[tuning] swap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwapChoice {
    Keep,
    Off,
}

// ---- end of [tuning] -------------------------------------------------------------------

/// Backends as the config spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Cpu,
    Cuda,
    Npu,
}

/// Log levels, as `RUST_LOG` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return None,
        })
    }
}

/// Why the configuration could not be loaded. `origin` is a file path or
/// `environment variable TUTORD_…`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: unknown key `{key}` (see /usr/share/doc/tutord/tutord.toml for the keys)")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("{origin}: key `{key}`: {reason}")]
    OutOfRange {
        origin: String,
        key: String,
        reason: String,
    },
}

impl Config {
    /// Checks the values serde cannot: ranges. Returns the key and the reason.
    fn validate(&self) -> Result<(), (String, String)> {
        let ms = self.store.busy_timeout_ms;
        if !(1..=60_000).contains(&ms) {
            return Err((
                "store.busy_timeout_ms".into(),
                format!("{ms} is out of range 1..=60000"),
            ));
        }
        let l = &self.llm;
        if !(256..=32_768).contains(&l.context_length) {
            return Err((
                "llm.context_length".into(),
                format!("{} is out of range 256..=32768", l.context_length),
            ));
        }
        if !(1..=4096).contains(&l.max_tokens) {
            return Err((
                "llm.max_tokens".into(),
                format!("{} is out of range 1..=4096", l.max_tokens),
            ));
        }
        if !(1..=3600).contains(&l.stall_seconds) {
            return Err((
                "llm.stall_seconds".into(),
                format!("{} is out of range 1..=3600", l.stall_seconds),
            ));
        }
        if !(0.0..=2.0).contains(&l.temperature) {
            return Err((
                "llm.temperature".into(),
                format!("{} is out of range 0.0..=2.0", l.temperature),
            ));
        }
        if let Some(cpu) = l.cpus.iter().find(|c| **c >= 1024) {
            return Err(("llm.cpus".into(), format!("CPU {cpu} does not exist")));
        }
        let t = &self.tutor;
        for (key, v) in [
            ("tutor.subject", &t.subject),
            ("tutor.level", &t.level),
            ("tutor.language", &t.language),
            ("tutor.tone", &t.tone),
        ] {
            if v.trim().is_empty() || v.len() > 200 {
                return Err((key.into(), "must be 1 to 200 characters".into()));
            }
        }
        self.history.validate()?;
        let g = &self.daemon.admin_group;
        let valid_group = g.len() <= 32
            && g.chars().enumerate().all(|(i, c)| {
                c.is_ascii_lowercase() || c == '_' || i > 0 && (c.is_ascii_digit() || c == '-')
            });
        if !valid_group {
            return Err((
                "daemon.admin_group".into(),
                "is not a group name (lowercase letters, digits, '_' and '-', at most 32)".into(),
            ));
        }
        let v = &self.voice;
        if v.stt_model.trim().is_empty() {
            return Err((
                "voice.stt_model".into(),
                "is empty: name a catalog model or a ggml file".into(),
            ));
        }
        if !(0..=64).contains(&v.stt_threads) {
            return Err((
                "voice.stt_threads".into(),
                format!("{} is out of range 0..=64", v.stt_threads),
            ));
        }
        for (key, value) in [
            ("voice.tts_voice", &v.tts_voice),
            ("voice.tts_runtime", &v.tts_runtime),
        ] {
            if value.trim().is_empty() {
                return Err((
                    key.into(),
                    "is empty: name a catalog entry or a file".into(),
                ));
            }
        }
        if !(200..=5000).contains(&v.endpoint_silence_ms) {
            return Err((
                "voice.endpoint_silence_ms".into(),
                format!("{} is out of range 200..=5000", v.endpoint_silence_ms),
            ));
        }
        let b = &self.bench;
        for (key, v, lo, hi) in [
            ("bench.budget_ms", b.budget_ms, 50, 10_000),
            ("bench.compute_budget_ms", b.compute_budget_ms, 10, 5_000),
            ("bench.max_age_days", b.max_age_days, 0, 365),
            (
                "bench.max_working_set_mib",
                b.max_working_set_mib,
                16,
                65_536,
            ),
            ("plan.prompt_tokens", self.plan.prompt_tokens, 1, 32_768),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err((key.into(), format!("{v} is out of range {lo}..={hi}")));
            }
        }
        let p = &self.plan;
        for (key, v, lo, hi) in [
            (
                "plan.target_tokens_per_second",
                p.target_tokens_per_second,
                0.1,
                1000.0,
            ),
            (
                "plan.target_first_audio_seconds",
                p.target_first_audio_seconds,
                0.1,
                300.0,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err((key.into(), format!("{v} is out of range {lo}..={hi}")));
            }
        }
        let ttft = p.target_first_token_seconds;
        if ttft != 0.0 && !(0.05..=120.0).contains(&ttft) {
            return Err((
                "plan.target_first_token_seconds".into(),
                format!("{ttft} is out of range 0.05..=120 (or 0: half of the first-audio target)"),
            ));
        }
        // [tuning]: a CPU the machine lacks is only known at run time (a warning then); a
        // number no kernel supports is a typo.
        if let Some(cpu) = self.tuning.cpus.iter().find(|c| **c >= 4096) {
            return Err(("tuning.cpus".into(), format!("CPU {cpu} does not exist")));
        }
        if self.tuning.thermal_interval_s > 3600 {
            return Err((
                "tuning.thermal_interval_s".into(),
                format!(
                    "{} is out of range 0..=3600",
                    self.tuning.thermal_interval_s
                ),
            ));
        }
        if !self.models.dir.is_absolute() {
            return Err((
                "models.dir".into(),
                format!("{} is not an absolute path", self.models.dir.display()),
            ));
        }
        if !self.daemon.state_dir.is_absolute() {
            return Err((
                "daemon.state_dir".into(),
                format!(
                    "{} is not an absolute path",
                    self.daemon.state_dir.display()
                ),
            ));
        }
        Ok(())
    }
}

/// Where configuration comes from; every path is injectable for tests.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The main file.
    pub main: PathBuf,
    /// Whether a missing main file is an error (true when named on the command line).
    pub main_required: bool,
    /// The environment to read `TUTORD_*` variables from.
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// The board's sources: `--config` or the default file, and the process environment.
    pub fn from_process(config_arg: Option<&Path>) -> Self {
        Self {
            main: config_arg
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
            main_required: config_arg.is_some(),
            env: std::env::vars().collect(),
        }
    }

    /// `<main>.d/`, the drop-in directory.
    pub fn dropin_dir(&self) -> PathBuf {
        let mut s = self.main.clone().into_os_string();
        s.push(".d");
        PathBuf::from(s)
    }
}

/// One layer of configuration, already read, with a name for messages.
struct Layer {
    origin: String,
    kind: LayerKind,
}

enum LayerKind {
    Toml(String),
    Env(BTreeMap<String, String>),
}

/// Loads and checks the whole configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let layers = read_layers(sources)?;
    let known = known_keys();
    for layer in &layers {
        check_layer(layer, &known)?;
    }
    let mut builder = defaults_builder();
    for layer in &layers {
        builder = add_layer(builder, layer);
    }
    // Every layer passed on its own, so the merge can only fail on a combination, which the
    // checks above make impossible today; name all sources if it ever happens.
    let merged = builder
        .build()
        .and_then(|c| c.try_deserialize::<Config>())
        .map_err(|e| ConfigError::Invalid {
            origin: "merged configuration".into(),
            reason: e.to_string(),
        })?;
    if let Err((key, reason)) = merged.validate() {
        return Err(ConfigError::OutOfRange {
            origin: "merged configuration".into(),
            key,
            reason,
        });
    }
    Ok(merged)
}

/// Parses one TOML document on top of the defaults; for unit tests and `tutorctl`.
pub fn parse_toml(origin: &str, text: &str) -> Result<Config, ConfigError> {
    let layer = Layer {
        origin: origin.to_string(),
        kind: LayerKind::Toml(text.to_string()),
    };
    check_layer(&layer, &known_keys())?;
    defaults_builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Invalid {
            origin: origin.into(),
            reason: e.to_string(),
        })
}

fn read_layers(sources: &Sources) -> Result<Vec<Layer>, ConfigError> {
    let mut layers = Vec::new();
    match std::fs::read_to_string(&sources.main) {
        Ok(text) => layers.push(Layer {
            origin: sources.main.display().to_string(),
            kind: LayerKind::Toml(text),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !sources.main_required => {}
        Err(e) => {
            return Err(ConfigError::Read {
                origin: sources.main.display().to_string(),
                source: e,
            });
        }
    }
    let dir = sources.dropin_dir();
    let mut dropins = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(ConfigError::Read {
                origin: dir.display().to_string(),
                source: e,
            });
        }
    };
    dropins.sort();
    for path in dropins {
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            origin: path.display().to_string(),
            source: e,
        })?;
        layers.push(Layer {
            origin: path.display().to_string(),
            kind: LayerKind::Toml(text),
        });
    }
    let env = config_env(&sources.env);
    if !env.is_empty() {
        let names = env.keys().cloned().collect::<Vec<_>>().join(", ");
        layers.push(Layer {
            origin: format!("environment ({names})"),
            kind: LayerKind::Env(env),
        });
    }
    Ok(layers)
}

/// The `TUTORD_<SECTION>__<KEY>` variables of an environment.
fn config_env(env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.iter()
        .filter(|(k, _)| {
            k.strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|rest| rest.contains("__"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn defaults_builder() -> config::ConfigBuilder<config::builder::DefaultState> {
    let defaults = toml::to_string(&Config::default()).expect("defaults serialize to TOML");
    config::Config::builder().add_source(File::from_str(&defaults, FileFormat::Toml))
}

fn add_layer(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    layer: &Layer,
) -> config::ConfigBuilder<config::builder::DefaultState> {
    match &layer.kind {
        LayerKind::Toml(text) => builder.add_source(File::from_str(text, FileFormat::Toml)),
        LayerKind::Env(vars) => builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(vars.clone().into_iter().collect())),
        ),
    }
}

/// Checks one layer on top of the defaults: unknown keys, types, ranges.
fn check_layer(layer: &Layer, known: &[String]) -> Result<(), ConfigError> {
    let keys = match &layer.kind {
        LayerKind::Toml(text) => {
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        origin: layer.origin.clone(),
                        reason: format!("not valid TOML: {}", e.to_string().trim_end()),
                    })?;
            let mut keys = Vec::new();
            flatten_keys("", &toml::Value::Table(table), &mut keys);
            keys
        }
        LayerKind::Env(vars) => vars
            .keys()
            .map(|k| k[ENV_PREFIX.len() + 1..].to_lowercase().replace("__", "."))
            .collect(),
    };
    if let Some(key) = keys.into_iter().find(|k| !known.contains(k)) {
        return Err(ConfigError::UnknownKey {
            origin: layer.origin.clone(),
            key,
        });
    }
    let cfg: Config = add_layer(defaults_builder(), layer)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Invalid {
            origin: layer.origin.clone(),
            reason: e.to_string(),
        })?;
    cfg.validate()
        .map_err(|(key, reason)| ConfigError::OutOfRange {
            origin: layer.origin.clone(),
            key,
            reason,
        })
}

/// Every dotted key of the configuration, from the serialized defaults.
fn known_keys() -> Vec<String> {
    let value = toml::Value::try_from(Config::default()).expect("defaults serialize to TOML");
    let mut keys = Vec::new();
    flatten_keys("", &value, &mut keys);
    keys
}

fn flatten_keys(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_keys(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[doc(hidden)] // for the fuzz target and its regression tests only
pub mod layers;

#[cfg(test)]
mod tests;

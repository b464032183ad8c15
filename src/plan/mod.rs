//! The plan: for every (model, backend) the board can run, a roofline prediction of decode
//! speed and time to first token, the memory it needs, and the choice of the model to load.
//!
//! Time per decoded token = max(bytes read per token ÷ (bandwidth × memory efficiency),
//!                              work per token ÷ (compute peak × compute efficiency))
//!                          + a fixed per-token overhead (sampling, scheduling, detokenizing).
//! On the boards, with multi-GB models, the bandwidth roof binds — the product's premise —
//! but a small model on a fast machine can be compute-bound, and a planner that ignored that
//! roof would mispredict it two- to three-fold. The efficiencies and the overhead start at
//! defaults and are calibrated from real answers (`calibrate`).

pub mod calibrate;
pub mod nominal;
pub mod planner;
pub mod rows;
pub mod service;
pub mod voice;

use serde::{Deserialize, Serialize};

pub use calibrate::{Efficiencies, Sample, fit, smooth};
pub use voice::{FIRST_CHUNK_TOKENS, VoiceCosts};

/// A decoded token's attention over one cached position of one layer costs what this many
/// matrix rows' fixed costs do. llama.cpp's CPU attention for one query (2 threads, AVX2, F16
/// cache, flash attention on or off alike) slowed decoding per layer per cell by 0.49 µs on
/// SmolLM2-135M, 0.53 on Qwen2.5-Coder-0.5B and 0.42 on 1.5B (llama-bench `-d 0,256,512`),
/// about as much whatever the head count, where a row's fixed cost is 13.2 ns
/// ([`rows::FIXED_NS`]): 32 rows' worth is 0.42 µs. SmolLM2 decodes 25 % slower at 256 tokens of context than
/// at none, which the cache's bytes (6 % more read) did not explain (docs/benchmarks.md,
/// "Decoding at depth").
pub const ATTENTION_ROWS_PER_CELL: f64 = 32.0;

/// What the planner needs to know about a model (from the catalog).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFacts {
    pub name: String,
    pub backend: String,
    /// The file: what the weights take in memory.
    pub file_bytes: u64,
    /// What decoding reads of the weights once per token: from the GGUF header's tensor
    /// list when the file is here (all but the token embedding, unless it is also the output
    /// projection), else the file's size from the catalog (an upper bound).
    pub streamed_bytes: u64,
    pub parameters: u64,
    pub layers: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// The work of the matrices a token multiplies beside their bytes, in rows' worth
    /// ([`rows`]: each row 1, plus its blocks by their type): from the header's tensor types
    /// and shapes when the file is here, else the catalog's row count and nominal type.
    pub row_work: f64,
    /// The file is in the models folder (only present models can be chosen).
    pub present: bool,
    /// Tuned for code (catalog `code = true`): passed over for a general model of its size.
    pub code: bool,
}

impl ModelFacts {
    /// KV cache bytes for `context` tokens: K and V × layers × KV heads × head size × 2
    /// bytes (llama.cpp and RKLLM keep it in FP16).
    pub fn kv_cache_bytes(&self, context: u32) -> u64 {
        2 * u64::from(self.layers)
            * u64::from(context)
            * u64::from(self.kv_heads)
            * u64::from(self.head_dim)
            * 2
    }

    /// Bytes read per decoded token at `position` tokens of context: the streamed weights
    /// once, and the KV cache written so far.
    pub fn bytes_per_token(&self, position: u32) -> f64 {
        self.streamed_bytes as f64 + self.kv_cache_bytes(position) as f64
    }

    /// What a token at `position` tokens of context costs in per-row terms: its matrices'
    /// work, and the attention over the KV cache, [`ATTENTION_ROWS_PER_CELL`] rows' worth per
    /// layer per cell. Both are core time the per-row overhead prices.
    pub fn work_rows(&self, position: u32) -> f64 {
        self.row_work + ATTENTION_ROWS_PER_CELL * f64::from(self.layers) * f64::from(position)
    }

    /// Work per token: a multiply-add (2 operations) per parameter.
    pub fn ops_per_token(&self) -> f64 {
        2.0 * self.parameters as f64
    }
}

/// The machine as measured (and, for accelerators, as the board profile states).
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Measured read bandwidth, bytes/s.
    pub bandwidth: f64,
    /// Compute peak per backend, op/s: CPU measured (INT8 dot of the chosen cores), NPU and
    /// GPU from the board profile.
    pub cpu_ops: f64,
    /// The CPU's measured FP32 peak, FLOP/s: speech recognition and synthesis run in floats.
    pub cpu_fp32: f64,
    /// The chosen cores' scalar chain rate, op/s (their clocks): what the first boot scales a
    /// matrix row's fixed cost by; 0 or infinite = unknown (the fitted cost is kept).
    pub cpu_scalar: f64,
    pub npu_ops: f64,
    pub gpu_ops: f64,
    /// `MemAvailable` at planning time (swap never counts); 0 = unknown (no /proc/meminfo
    /// under the platform root), and then memory does not rule a model out.
    pub mem_available: u64,
    /// The most one NPU memory domain holds (RK3588: 4 GB); 0 = no limit known.
    pub npu_domain_bytes: u64,
}

impl Machine {
    fn compute_for(&self, backend: &str) -> f64 {
        match backend {
            "npu" => self.npu_ops,
            "cuda" => self.gpu_ops,
            _ => self.cpu_ops,
        }
    }
}

/// What the tutor needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub tokens_per_second: f64,
    pub time_to_first_token: f64,
    /// End of a spoken question → first sound of the answer, seconds.
    pub first_audio: f64,
    /// A typical prompt (system prompt + question), in tokens: for time to first token and
    /// the KV cache read while decoding.
    pub prompt_tokens: u32,
    /// The configured context: the KV cache is sized for it.
    pub context_length: u32,
    /// Speech recognition, speech synthesis and the OS's own reserve, in bytes.
    pub stt_bytes: u64,
    pub tts_bytes: u64,
    pub reserve_bytes: u64,
}

/// Which roof binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Roof {
    Bandwidth,
    Compute,
}

impl Roof {
    pub fn as_str(self) -> &'static str {
        match self {
            Roof::Bandwidth => "bandwidth",
            Roof::Compute => "compute",
        }
    }
}

/// One (model, backend)'s prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub model: String,
    pub backend: String,
    pub present: bool,
    pub code: bool,
    pub bytes_per_token: f64,
    pub ops_per_token: f64,
    /// Seconds per token under each roof (efficiencies applied) and the overhead.
    pub bandwidth_seconds: f64,
    pub compute_seconds: f64,
    pub overhead_seconds: f64,
    pub binding: Roof,
    pub tokens_per_second: f64,
    pub time_to_first_token: f64,
    /// End of speech → first audio: STT + time to first token + the rest of the first
    /// chunk's tokens + its synthesis.
    pub first_audio: f64,
    pub memory_needed: u64,
    /// Why it does not fit, if it does not.
    pub does_not_fit: Option<String>,
    pub meets_speed: bool,
    pub meets_first_token: bool,
    pub meets_first_audio: bool,
    /// Why loading it failed since tutord started, if it did: the planner passes it over,
    /// so the next smaller model is loaded instead.
    pub load_failed: Option<String>,
}

impl Prediction {
    pub fn fits(&self) -> bool {
        self.does_not_fit.is_none()
    }

    /// Meets the speed, first-token and first-audio targets.
    pub fn meets_targets(&self) -> bool {
        self.meets_speed && self.meets_first_token && self.meets_first_audio
    }
}

/// Predicts one model on one backend, spoken to through `voice`.
pub fn predict(
    m: &ModelFacts,
    machine: &Machine,
    eff: &Efficiencies,
    voice: &VoiceCosts,
    t: &Targets,
) -> Prediction {
    let bytes = m.bytes_per_token(t.prompt_tokens);
    let ops = m.ops_per_token();
    let compute = machine.compute_for(&m.backend);
    let bandwidth_seconds = bytes / (machine.bandwidth * eff.memory).max(1.0);
    let compute_seconds = ops / (compute * eff.compute).max(1.0);
    let binding = if bandwidth_seconds >= compute_seconds {
        Roof::Bandwidth
    } else {
        Roof::Compute
    };
    let overhead_seconds = eff.overhead_per_row * m.work_rows(t.prompt_tokens);
    let per_token = bandwidth_seconds.max(compute_seconds) + overhead_seconds;
    let tokens_per_second = 1.0 / per_token;
    // The prompt is processed in batches: compute-bound, at the prefill efficiency; then
    // the first token is decoded.
    let prefill = f64::from(t.prompt_tokens) * ops / (compute * eff.prefill).max(1.0);
    let time_to_first_token = prefill + per_token;
    let first_audio = voice.stt_seconds
        + time_to_first_token
        + f64::from(FIRST_CHUNK_TOKENS - 1) * per_token
        + voice.tts_seconds;
    let kv = m.kv_cache_bytes(t.context_length);
    let memory_needed = m.file_bytes + kv + t.stt_bytes + t.tts_bytes + t.reserve_bytes;
    let mut does_not_fit = None;
    if machine.mem_available > 0 && memory_needed > machine.mem_available {
        does_not_fit = Some(format!(
            "needs {} MiB (weights {} + KV cache {} + STT {} + TTS {} + reserve {}), {} MiB available",
            memory_needed >> 20,
            m.file_bytes >> 20,
            kv >> 20,
            t.stt_bytes >> 20,
            t.tts_bytes >> 20,
            t.reserve_bytes >> 20,
            machine.mem_available >> 20
        ));
    } else if m.backend == "npu"
        && machine.npu_domain_bytes > 0
        && m.file_bytes + kv > machine.npu_domain_bytes
    {
        does_not_fit = Some(format!(
            "weights + KV cache {} MiB exceed the NPU's {} MiB memory domain",
            (m.file_bytes + kv) >> 20,
            machine.npu_domain_bytes >> 20
        ));
    }
    Prediction {
        model: m.name.clone(),
        backend: m.backend.clone(),
        present: m.present,
        code: m.code,
        bytes_per_token: bytes,
        ops_per_token: ops,
        bandwidth_seconds,
        compute_seconds,
        overhead_seconds,
        binding,
        tokens_per_second,
        time_to_first_token,
        first_audio,
        memory_needed,
        does_not_fit,
        meets_speed: tokens_per_second >= t.tokens_per_second,
        meets_first_token: time_to_first_token <= t.time_to_first_token,
        meets_first_audio: first_audio <= t.first_audio,
        load_failed: None,
    }
}

/// The planner's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index into the predictions; None when nothing can be loaded.
    pub chosen: Option<usize>,
    /// One sentence for the journal, D-Bus and `tutorctl plan`.
    pub reason: String,
    /// Set when the choice misses a target.
    pub warning: Option<String>,
}

/// Parameters within which two models count as the same size: a general model of the same
/// size is chosen over a code model (a tutor explains more than it codes).
pub(crate) const SAME_SIZE: f64 = 0.9;

/// The largest of `meeting` by bytes per token; among models of about its size (parameters
/// within [`SAME_SIZE`]) a general one before a code one, then the larger, then the faster.
pub(crate) fn largest_for_a_tutor<'a>(
    meeting: &[(usize, &'a Prediction)],
) -> Option<(usize, &'a Prediction)> {
    let (_, largest) = meeting
        .iter()
        .max_by(|(_, a), (_, b)| a.bytes_per_token.total_cmp(&b.bytes_per_token))?;
    let size = largest.ops_per_token;
    meeting
        .iter()
        .filter(|(_, p)| p.ops_per_token >= size * SAME_SIZE)
        .max_by(|(_, a), (_, b)| {
            (!a.code)
                .cmp(&!b.code)
                .then(a.bytes_per_token.total_cmp(&b.bytes_per_token))
                .then(a.tokens_per_second.total_cmp(&b.tokens_per_second))
        })
        .copied()
}

/// Picks the largest present model that meets the targets (speed, first token, first audio)
/// and fits (and has not failed to load), a general model before a code model of its size;
/// else the fastest such, with a warning. A pinned model (by name) wins, with a
/// warning if it misses.
pub fn choose(preds: &[Prediction], t: &Targets, pinned: Option<&str>) -> Choice {
    let usable = |p: &Prediction| p.present && p.fits() && p.load_failed.is_none();
    if let Some(name) = pinned {
        let Some((i, p)) = preds.iter().enumerate().find(|(_, p)| p.model == name) else {
            return Choice {
                chosen: None,
                reason: format!("the pinned model '{name}' is not in the plan"),
                warning: None,
            };
        };
        let warning = (!p.meets_targets()).then(|| {
            format!(
                "the pinned model {} is predicted at {:.1} tok/s, {:.2} s to first token and \
                 {:.2} s to first audio, short of the targets ({:.1} tok/s, {:.1} s, {:.1} s)",
                p.model,
                p.tokens_per_second,
                p.time_to_first_token,
                p.first_audio,
                t.tokens_per_second,
                t.time_to_first_token,
                t.first_audio
            )
        });
        return Choice {
            chosen: Some(i),
            reason: format!("{} is pinned in the configuration", p.model),
            warning,
        };
    }
    let meeting: Vec<(usize, &Prediction)> = preds
        .iter()
        .enumerate()
        .filter(|(_, p)| usable(p) && p.meets_targets())
        .collect();
    if let Some((i, p)) = largest_for_a_tutor(&meeting) {
        return Choice {
            chosen: Some(i),
            reason: format!(
                "{} on {}: the largest model that meets {:.1} tok/s (predicted {:.1}, {}-bound) \
                 and {:.1} s to first audio (predicted {:.2}) and fits in memory",
                p.model,
                p.backend,
                t.tokens_per_second,
                p.tokens_per_second,
                p.binding.as_str(),
                t.first_audio,
                p.first_audio
            ),
            warning: None,
        };
    }
    let fastest = preds
        .iter()
        .enumerate()
        .filter(|(_, p)| usable(p))
        .max_by(|(_, a), (_, b)| a.tokens_per_second.total_cmp(&b.tokens_per_second));
    match fastest {
        Some((i, p)) => Choice {
            chosen: Some(i),
            reason: format!("{} on {}: the fastest model that fits", p.model, p.backend),
            warning: Some(format!(
                "no model meets the targets ({:.1} tok/s, {:.1} s to first token, {:.1} s to \
                 first audio); the fastest that fits, {}, is predicted at {:.1} tok/s, {:.2} s \
                 and {:.2} s",
                t.tokens_per_second,
                t.time_to_first_token,
                t.first_audio,
                p.model,
                p.tokens_per_second,
                p.time_to_first_token,
                p.first_audio
            )),
        },
        None => Choice {
            chosen: None,
            reason: if preds.is_empty() {
                "no catalog model can run on this board (is the catalog installed?)".into()
            } else if preds.iter().any(|p| p.present && p.fits()) {
                "every model that fits failed to load (see LastError and the journal)".into()
            } else if preds.iter().any(|p| p.fits()) {
                "no model that fits is in the models folder: fetch one with `tutorctl models \
                 fetch`"
                    .into()
            } else {
                "no model fits in the available memory".into()
            },
            warning: None,
        },
    }
}

/// What fetching one model would give: the largest catalog model (by parameters) not in the
/// models folder that fits and meets both targets and is larger than the choice (predicted from the
/// catalog's fields: size, parameters, layers, KV heads); with nothing chosen and nothing
/// meeting the targets, the fastest that fits. None when the choice is already the best.
pub fn fetch_hint(preds: &[Prediction], choice: &Choice) -> Option<String> {
    // "Larger" by parameters, not bytes per token: a fetched model's bytes come from its
    // header (what a token streams), an unfetched one's from the catalog's file size (an upper
    // bound), so by bytes a same-size model looked larger.
    let chosen_ops = choice
        .chosen
        .and_then(|i| preds.get(i))
        .map(|p| p.ops_per_token);
    let fetchable = |p: &&Prediction| !p.present && p.fits() && p.load_failed.is_none();
    let meeting = preds
        .iter()
        .filter(fetchable)
        .filter(|p| p.meets_targets())
        .filter(|p| chosen_ops.is_none_or(|o| p.ops_per_token > o))
        .max_by(|a, b| a.ops_per_token.total_cmp(&b.ops_per_token));
    let best = match (meeting, chosen_ops) {
        (Some(p), _) => p,
        (None, None) => preds
            .iter()
            .filter(fetchable)
            .max_by(|a, b| a.tokens_per_second.total_cmp(&b.tokens_per_second))?,
        (None, Some(_)) => return None,
    };
    Some(format!(
        "fetch {} for {:.1} tok/s, {:.2} s to first token and {:.2} s to first audio on {} \
         (`tutorctl models fetch {}`)",
        best.model,
        best.tokens_per_second,
        best.time_to_first_token,
        best.first_audio,
        best.backend,
        best.model
    ))
}

#[cfg(test)]
mod tests;

//! llama.cpp backend (through `cpp`, the engine's own handles over llama-cpp-sys-2): GGUF
//! models on the CPU, or on an NVIDIA GPU with the `cuda` feature. Uses the model's own chat
//! template (or, for a base model without one, the plain transcript of `prompt`) and keeps
//! one session's KV cache, so a follow-up question only processes the tokens the previous
//! turn did not already have.

mod cpp;

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cpp::{Batch, Context, ContextParams, CppError, Model, Sampler, Token};

use crate::engine::{
    BackendKind, ChatMessage, Counter, Engine, EngineError, GenStats, LoadSpec, ModelInfo,
    Sampling, peak_rss_bytes,
};
use crate::gguf;
use crate::prompt::{self, Scan, Stop};

/// Tokens decoded per `llama_decode` call while processing a prompt.
const BATCH: usize = 512;

/// Tokens kept free past a prompt besides the answer's `max_tokens` (shared with the daemon,
/// which checks a question's length against the same budget).
const MARGIN: usize = tutord_protocol::PROMPT_MARGIN as usize;

/// A shift is taken only when at least this many cached tokens line up again after it:
/// fewer would save less than the search costs.
const MIN_SHIFT_MATCH: usize = 8;

impl From<CppError> for EngineError {
    fn from(e: CppError) -> Self {
        EngineError::Runtime(e.to_string())
    }
}

/// A prompt cut to the context's budget.
enum Window {
    /// The tokens, and how many of the oldest messages were left out to fit.
    Fits(Vec<Token>, usize),
    /// Even the instructions and the question alone are this many tokens, over the budget.
    TooLong(usize),
}

/// A loaded GGUF model with its context and kept session.
pub struct LlamaEngine {
    info: ModelInfo,
    model: &'static Model,
    ctx: Context<'static>,
    /// The model's chat template; None for a base model (the plain transcript is used).
    template: Option<CString>,
    /// Tokens whose keys and values are in the KV cache, in order (sequence 0).
    cached: Vec<Token>,
    /// Whether a sliding window is shifted down the KV cache (the default) or processed
    /// again from the first change: `TUTORD_ENGINE_WINDOW=reprefill` turns shifting off, for
    /// scripts/lesson-bench.sh to measure one against the other.
    shift: bool,
}

impl LlamaEngine {
    pub fn load(spec: &LoadSpec) -> Result<Self, EngineError> {
        let gpu_layers = match spec.backend {
            BackendKind::Cpu => 0,
            BackendKind::Cuda if cfg!(feature = "cuda") => i32::MAX,
            BackendKind::Cuda => {
                return Err(EngineError::Unavailable {
                    backend: "cuda",
                    reason: "this tutord-engine was built without the `cuda` feature".into(),
                });
            }
            BackendKind::Npu => {
                return Err(EngineError::Unavailable {
                    backend: "npu",
                    reason: "GGUF models run on llama.cpp (cpu/cuda), not the NPU".into(),
                });
            }
        };
        let header = gguf::check_file(&spec.model_path)?;
        check_memory(&spec.model_path, header.file_bytes)?;
        // llama.cpp logs every tensor at load; the worker's stderr goes to the journal, so keep
        // it quiet unless asked (TUTORD_ENGINE_LLAMA_LOG=1).
        cpp::init(std::env::var_os("TUTORD_ENGINE_LLAMA_LOG").is_none());
        let model =
            Model::load(&spec.model_path, gpu_layers).map_err(|e| EngineError::BadModel {
                path: spec.model_path.clone(),
                reason: format!(
                    "llama.cpp could not load it ({e}): truncated, corrupt or an unsupported \
                 architecture (TUTORD_ENGINE_LLAMA_LOG=1 shows llama.cpp's reason)"
                ),
            })?;
        // The worker loads one model for its whole life (switching models restarts the
        // worker), so the model lives as long as the process; leaking it lets the context
        // borrow it without a self-referential struct.
        let model: &'static Model = Box::leak(Box::new(model));
        // A base model (no template in its metadata) still answers, in the plain format.
        let template = model.chat_template();
        let ctx = Context::new(
            model,
            &ContextParams {
                n_ctx: spec.context_length.max(256),
                n_batch: BATCH as u32,
                threads: threads_for(&spec.placement.cpus),
            },
        )?;
        let info = ModelInfo {
            backend: spec.backend,
            path: spec.model_path.clone(),
            file_bytes: header.file_bytes,
            parameters: model.n_params(),
            context_length: ctx.n_ctx(),
            runtime: format!("llama.cpp (llama-cpp-sys-2 {})", llama_cpp_sys_2_version()),
            chat_format: match &template {
                Some(_) => "template".into(),
                None => prompt::PLAIN_NAME.into(),
            },
        };
        Ok(Self {
            info,
            model,
            ctx,
            template,
            cached: Vec::new(),
            shift: std::env::var("TUTORD_ENGINE_WINDOW").as_deref() != Ok("reprefill"),
        })
    }

    fn prompt_tokens(&self, chat: &[ChatMessage]) -> Result<Vec<Token>, EngineError> {
        let Some(template) = &self.template else {
            // Plain text: user text is never parsed as special tokens; BOS as the model wants.
            let text = prompt::plain(chat);
            return Ok(self.model.tokenize(&text, true, false)?);
        };
        let msgs: Vec<(&str, &str)> = chat
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        let prompt = self.model.apply_chat_template(template, &msgs, true)?;
        // The template already holds the BOS/special tokens as text; parse them as specials.
        Ok(self.model.tokenize(&prompt, false, true)?)
    }

    /// The prompt for `chat` within `budget` tokens (`crate::window`). Returns the tokens and
    /// how many messages were left out.
    fn window(&self, chat: &[ChatMessage], budget: usize) -> Result<Window, EngineError> {
        let fit = crate::window::fit(chat, |w| {
            let tokens = self.prompt_tokens(w)?;
            let fits = tokens.len() <= budget;
            Ok::<_, EngineError>((tokens, fits))
        })?;
        Ok(match fit {
            crate::window::Fit::Fits(tokens, left_out) => Window::Fits(tokens, left_out),
            crate::window::Fit::TooLong(tokens) => Window::TooLong(tokens.len()),
        })
    }

    /// When the window slid (older turns left the prompt), moves what is still in it down
    /// the KV cache instead of computing it again: the left-out turns' entries are removed
    /// and the positions after them shifted back (llama.cpp re-rotates the keys, RoPE, on the
    /// next decode). Measured on SmolLM2-135M, 2 cores: re-processing a 900-token window took
    /// ~1.4 s, the shift ~1 ms; on a 7B model on a board re-processing is tens of seconds, so
    /// re-prefilling the window after every slide is not an option. Returns the tokens
    /// shifted; 0 when nothing lines up (then prefill processes what differs, as before).
    fn slide(&mut self, tokens: &[Token]) -> usize {
        let keep = common_prefix(&self.cached, tokens);
        let (cached, rest) = (&self.cached[keep..], &tokens[keep..]);
        let Some(&first) = rest.first() else {
            return 0;
        };
        // The cut that leaves the longest run of cached tokens equal to the new prompt.
        let mut best = (0, 0);
        for (d, t) in cached.iter().enumerate().skip(1) {
            if *t == first {
                let run = common_prefix(&cached[d..], rest);
                if run > best.1 {
                    best = (d, run);
                }
            }
        }
        let (cut, run) = best;
        if run < MIN_SHIFT_MATCH {
            return 0;
        }
        let (p0, p1) = (keep as u32, (keep + cut) as u32);
        if !self.ctx.remove(p0, Some(p1)) {
            self.reset();
            return 0;
        }
        self.ctx.shift(p1, -(cut as i32));
        self.cached.drain(keep..keep + cut);
        run
    }

    /// Brings the KV cache to `tokens`, processing only what is not cached yet. Returns the
    /// number of tokens reused.
    fn prefill(&mut self, tokens: &[Token]) -> Result<usize, EngineError> {
        let mut keep = common_prefix(&self.cached, tokens);
        // At least one token must be decoded to have logits to sample from.
        if keep == tokens.len() {
            keep = keep.saturating_sub(1);
        }
        if keep < self.cached.len() {
            if !self.ctx.remove(keep as u32, None) {
                return Err(EngineError::Runtime(format!(
                    "KV cache trim: llama.cpp could not remove the cells from position {keep}"
                )));
            }
            self.cached.truncate(keep);
        }
        let mut batch = Batch::new(BATCH);
        let rest = &tokens[keep..];
        for (chunk_no, chunk) in rest.chunks(BATCH).enumerate() {
            batch.clear();
            let last_chunk = (chunk_no + 1) * BATCH >= rest.len();
            for (i, t) in chunk.iter().enumerate() {
                let pos = (keep + chunk_no * BATCH + i) as u32;
                let logits = last_chunk && i == chunk.len() - 1;
                batch.add(*t, pos, logits)?;
            }
            self.ctx
                .decode(&batch)
                .map_err(|e| EngineError::Runtime(format!("prompt decode: {e}")))?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(keep)
    }
}

impl Engine for LlamaEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn counter(&self) -> Option<Counter> {
        // The vocabulary is only read: llama.cpp tokenizes from any thread while another
        // decodes (its server does the same), so the reader thread counts mid-answer.
        let model = self.model;
        Some(Arc::new(move |text: &str| {
            // A text llama.cpp cannot take (over 2 GiB) counts as too long for any context.
            model
                .tokenize(text, false, false)
                .map_or(usize::MAX, |t| t.len())
        }))
    }

    fn generate(
        &mut self,
        chat: &[ChatMessage],
        sampling: &Sampling,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenStats, EngineError> {
        let start = Instant::now();
        let n_ctx = self.ctx.n_ctx();
        // The prompt may take what the answer and the margin leave of the context; older
        // turns slide out of the window.
        let budget = (n_ctx as usize).saturating_sub(sampling.max_tokens as usize + MARGIN);
        let (tokens, left_out) = match self.window(chat, budget)? {
            Window::Fits(tokens, left_out) => (tokens, left_out),
            Window::TooLong(tokens) => {
                return Err(EngineError::QuestionTooLong {
                    tokens,
                    limit: budget,
                    context: n_ctx,
                    answer: sampling.max_tokens,
                });
            }
        };
        if left_out > 0 && self.shift {
            self.slide(&tokens);
        }
        let reused = match self.prefill(&tokens) {
            Ok(r) => r,
            Err(e) => {
                // The cache is in an unknown state after a failed decode: start clean.
                self.reset();
                return Err(e);
            }
        };
        let prompt_done = Instant::now();
        let mut sampler = sampler_for(sampling);
        let mut text = Utf8Stream::default();
        // A base model's answer ends where it starts the next speaker's line.
        let mut stop = Stop::new(if self.template.is_some() {
            &[]
        } else {
            &prompt::PLAIN_STOPS
        });
        let mut stats = GenStats {
            prompt_tokens: (tokens.len() - reused) as u32,
            reused_tokens: reused as u32,
            window_left_out: left_out as u32,
            ..GenStats::default()
        };
        let mut first_piece: Option<Instant> = None;
        let mut batch = Batch::new(1);
        let mut logits_index = batch_last_index(tokens.len() - reused);
        let model = self.model;
        let mut bytes = Vec::new();
        // Whether the model ended the answer itself (an end-of-generation token).
        let mut ended = false;
        while stats.generated_tokens < sampling.max_tokens {
            if self.cached.len() + 1 >= n_ctx as usize {
                break; // context full: end the answer here rather than fail it
            }
            let token = sampler.pick(&mut self.ctx, logits_index)?;
            if model.is_eog(token) {
                ended = true;
                break;
            }
            stats.generated_tokens += 1;
            bytes.clear();
            model.token_to_piece(token, &mut bytes);
            let (piece, end) = match stop.push(&text.push(&bytes)) {
                Scan::Go(p) => (p, false),
                Scan::End(p) => (p, true),
            };
            if end {
                ended = true; // a base model started the next speaker's line
                if !piece.is_empty() {
                    first_piece.get_or_insert_with(Instant::now);
                    stats.aborted = !on_piece(&piece);
                }
                break;
            }
            if !piece.is_empty() {
                first_piece.get_or_insert_with(Instant::now);
                if !on_piece(&piece) {
                    stats.aborted = true;
                    break;
                }
            }
            batch.clear();
            batch.add(token, self.cached.len() as u32, true)?;
            if let Err(e) = self.ctx.decode(&batch) {
                self.reset();
                return Err(EngineError::Runtime(format!("decode: {e}")));
            }
            self.cached.push(token);
            logits_index = 0;
        }
        if !ended && !stats.aborted && stats.generated_tokens == sampling.max_tokens {
            // The last token was decoded, so the logits of the next one are there: an answer
            // that fits `max_tokens` exactly is not reported cut when the model would have
            // stopped now.
            ended = model.is_eog(sampler.pick(&mut self.ctx, logits_index)?);
        }
        // Cut by `max_tokens` or by the end of the context: the daemon ends the text at its
        // last complete sentence.
        stats.truncated = !ended && !stats.aborted;
        let rest = match stop.push(&text.finish()) {
            Scan::Go(p) => p + &stop.finish(),
            Scan::End(p) => p,
        };
        if !rest.is_empty() && !stats.aborted {
            first_piece.get_or_insert_with(Instant::now);
            on_piece(&rest);
        }
        let end = Instant::now();
        let first = first_piece.unwrap_or(end);
        stats.time_to_first_token = (first - start).as_secs_f64();
        let prompt_secs = (prompt_done - start).as_secs_f64();
        if prompt_secs > 0.0 {
            stats.prompt_tokens_per_second = f64::from(stats.prompt_tokens) / prompt_secs;
        }
        let decode_secs = (end - first).as_secs_f64();
        if stats.generated_tokens > 1 && decode_secs > 0.0 {
            stats.decode_tokens_per_second = f64::from(stats.generated_tokens - 1) / decode_secs;
        }
        stats.peak_rss_bytes = peak_rss_bytes();
        Ok(stats)
    }

    fn reset(&mut self) {
        self.ctx.clear();
        self.cached.clear();
    }
}

/// Index of the last token in a prompt batch: where its logits are.
fn batch_last_index(processed: usize) -> i32 {
    let in_last = match processed % BATCH {
        0 => BATCH,
        n => n,
    };
    (in_last - 1) as i32
}

/// How the next token is picked.
enum Picker {
    /// Temperature 0: the highest logit, read straight from the context. llama.cpp's greedy
    /// sampler first copies every logit into a candidate array it allocates for each token
    /// (590 KB for a 49k vocabulary, mapped and unmapped each time), a cost per token that
    /// llama-bench does not pay and the answer does not need.
    Greedy,
    Sampler(Sampler),
}

impl Picker {
    fn pick(&mut self, ctx: &mut Context<'_>, logits_index: i32) -> Result<Token, CppError> {
        match self {
            Picker::Greedy => Ok(first_max(ctx.logits(logits_index)?) as Token),
            Picker::Sampler(s) => s.sample(ctx, logits_index),
        }
    }
}

/// The index of the first highest logit: llama.cpp's greedy sampler's choice (a later equal
/// logit does not replace it; a NaN never wins).
fn first_max(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate().skip(1) {
        if *l > logits[best] {
            best = i;
        }
    }
    best
}

fn sampler_for(s: &Sampling) -> Picker {
    if s.temperature <= 0.0 {
        return Picker::Greedy;
    }
    Picker::Sampler(Sampler::chain(
        s.top_k.max(1) as i32,
        s.top_p.clamp(0.0, 1.0),
        s.temperature,
        s.seed,
    ))
}

/// Threads for llama.cpp: one per placed core (the process is already pinned to them), or
/// every core the process may use.
fn threads_for(cpus: &[usize]) -> i32 {
    if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get() as i32)
    } else {
        cpus.len() as i32
    }
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Refuses a model that would not fit in the memory left (it would swap or be OOM-killed).
fn check_memory(path: &Path, bytes: u64) -> Result<(), EngineError> {
    let Some(available) = mem_available() else {
        return Ok(());
    };
    // Weights are mmapped and read once per token: they must stay resident.
    if bytes > available {
        return Err(EngineError::BadModel {
            path: path.to_path_buf(),
            reason: format!(
                "it needs {} MiB but only {} MiB of memory is available",
                bytes >> 20,
                available >> 20
            ),
        });
    }
    Ok(())
}

fn mem_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn llama_cpp_sys_2_version() -> &'static str {
    // The crate's version pins the llama.cpp commit it bundles (Cargo.lock).
    "0.1.161"
}

/// Turns token bytes into text pieces that never split a UTF-8 character: a token may end
/// in the middle of one (emoji, CJK), the rest coming with the next token.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let out = s.to_string();
                self.pending.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: emit what is complete, keep the rest.
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
                self.pending.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                out
            }
        }
    }

    fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_never_splits_characters() {
        let mut s = Utf8Stream::default();
        let snake = "🐍".as_bytes();
        assert_eq!(s.push(b"a"), "a");
        assert_eq!(s.push(&snake[..2]), "");
        assert_eq!(s.push(&snake[2..]), "🐍");
        assert_eq!(s.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(s.push(&snake[..1]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn greedy_takes_the_first_highest_logit() {
        assert_eq!(first_max(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(first_max(&[3.0, 2.0]), 0);
        assert_eq!(first_max(&[-5.0, -4.0, -4.5]), 1);
        assert_eq!(first_max(&[1.0, f32::NAN, 1.5]), 2);
        assert_eq!(first_max(&[7.0]), 0);
    }

    #[test]
    fn last_index_of_prompt_batches() {
        assert_eq!(batch_last_index(1), 0);
        assert_eq!(batch_last_index(BATCH), BATCH as i32 - 1);
        assert_eq!(batch_last_index(BATCH + 3), 2);
    }
}

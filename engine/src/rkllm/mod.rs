//! RKLLM backend: Rockchip's `librkllmrt.so` (runtime 1.3.x) on the RK3588/RK3576 NPU.
//!
//! The runtime is opened at run time (libloading), never linked: it exists for aarch64 only,
//! and a board without it must still run the CPU backend. Before anything is called the
//! library file is checked (built for this machine, RKLLM runtime 1.3.x, see [`version`]) and
//! so is the NPU kernel driver (0.9.8 or newer); each refusal is an
//! [`EngineError::Unavailable`] that names the file and the version it found.
//!
//! One model is one runtime handle. An answer is one synchronous `rkllm_run`: the runtime
//! calls `stream::on_result` once per token (on a thread of its own or the caller's), which turns
//! the token texts into pieces for `on_piece`. A multi-turn session rides on the runtime's
//! `keep_history`: every run keeps its turn in the KV cache, a chat that extends the kept one
//! sends only its new messages, any other chat clears the cache and sends the window of it
//! that fits the context (see `session`: a too-long conversation slides the same way).
//!
//! The runtime applies the model's own chat template to the one "user" turn of a run, so when a
//! whole chat has to be sent (a new conversation, or one that does not extend the kept
//! session) its messages are folded into that turn as a `role: content` transcript.
//!
//! The tests drive this against a stand-in library built from
//! `engine/tests/rkllm_standin/rkllm_standin.c`, not the real runtime.

mod runtime;
mod session;
mod stream;
pub mod sys;
pub mod version;

use std::ffi::{CString, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::resume_unwind;
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::engine::{
    BackendKind, ChatMessage, Engine, EngineError, GenStats, LoadSpec, ModelInfo, Sampling,
    peak_rss_bytes,
};
use runtime::{Runtime, check_driver};
use session::{Plan, Session, plan, render};
use stream::{RunState, on_result};

/// The runtime library opened when `LoadSpec::runtime_library` is not set (found through the
/// dynamic loader's search path).
pub const DEFAULT_LIBRARY: &str = "librkllmrt.so";

/// Where the NPU kernel driver tells its version, tried in order: debugfs (root only, and
/// where Rockchip documents it), then the module's sysfs version where the kernel has one.
pub const DEFAULT_DRIVER_VERSION_PATHS: [&str; 2] = [
    "/sys/kernel/debug/rknpu/version",
    "/sys/module/rknpu/version",
];

const BACKEND: &str = "npu";

/// Tokens kept free past a prompt besides the answer's `max_tokens` (as the llama.cpp
/// backend and the daemon's question check).
const MARGIN: usize = tutord_protocol::PROMPT_MARGIN as usize;

/// The machine-side settings of the RKLLM backend (the model-side ones are the `LoadSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RkllmOptions {
    /// Files the NPU driver version is read from; the first readable one counts.
    /// Default: [`DEFAULT_DRIVER_VERSION_PATHS`].
    pub driver_version_paths: Vec<PathBuf>,
    /// The runtime version to take as read, for a runtime build whose version cannot be found
    /// in its file (the runtime prints it at init: "rkllm-runtime version: 1.3.0"). Default:
    /// none, the version is read from the library file.
    pub runtime_version: Option<String>,
}

impl Default for RkllmOptions {
    fn default() -> Self {
        Self {
            driver_version_paths: DEFAULT_DRIVER_VERSION_PATHS
                .iter()
                .map(PathBuf::from)
                .collect(),
            runtime_version: None,
        }
    }
}

fn unavailable(reason: String) -> EngineError {
    EngineError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

/// The C calls whose return codes mean something, for [`check`].
#[derive(Debug, Clone, Copy)]
enum Call {
    Init,
    Run,
    /// The run reported `RKLLM_RUN_ERROR` to the callback: a failure whatever `rkllm_run`
    /// returned.
    RunErrorEvent,
    ClearKvCache,
    Abort,
}

/// What a call was about, for the messages of [`check`].
struct Site<'a> {
    model: &'a Path,
    context: u32,
}

/// Maps the runtime's return codes (0 = success, anything else = failure; 1.3.x documents no
/// finer codes and mostly returns -1) to an [`EngineError`]: the one place that knows what a
/// failed call means.
fn check(call: Call, rc: c_int, site: &Site<'_>) -> Result<(), EngineError> {
    if rc == 0 && !matches!(call, Call::RunErrorEvent) {
        return Ok(());
    }
    Err(match call {
        Call::Init => EngineError::BadModel {
            path: site.model.to_path_buf(),
            reason: format!(
                "rkllm_init returned {rc}: the RKLLM runtime could not load it (not an .rkllm \
                 model, converted for another platform or toolkit version, or too large for \
                 the NPU's memory; the runtime's own log says which)"
            ),
        },
        Call::Run => EngineError::Runtime(format!(
            "rkllm_run returned {rc}: the RKLLM runtime refused or failed the request (it does \
             so for a prompt longer than the {}-token context)",
            site.context
        )),
        Call::RunErrorEvent => EngineError::Runtime(format!(
            "the RKLLM runtime reported RKLLM_RUN_ERROR during the answer (rkllm_run returned \
             {rc})"
        )),
        Call::ClearKvCache => EngineError::Runtime(format!(
            "rkllm_clear_kv_cache returned {rc}: the kept session could not be dropped"
        )),
        Call::Abort => EngineError::Runtime(format!("rkllm_abort returned {rc}")),
    })
}

/// The runtime's `enabled_cpus_mask` and `enabled_cpus_num` for a placement; `None` (keep the
/// runtime's defaults) for an empty one.
fn cpu_mask(cpus: &[usize]) -> Result<Option<(u32, i8)>, EngineError> {
    if cpus.is_empty() {
        return Ok(None);
    }
    let mut mask = 0u32;
    for &cpu in cpus {
        let bit = u32::try_from(cpu)
            .ok()
            .and_then(|c| 1u32.checked_shl(c))
            .ok_or_else(|| {
                unavailable(format!(
                    "the placement names CPU {cpu}; the RKLLM runtime's enabled_cpus_mask only \
                     names CPUs 0-31"
                ))
            })?;
        mask |= bit;
    }
    // At most 32 bits are set, so the count fits an i8.
    Ok(Some((mask, mask.count_ones() as i8)))
}

/// A loaded runtime handle, shared with [`RkllmAbort`]s; destroyed when the last one goes.
struct Handle {
    rt: Runtime,
    raw: sys::LLMHandle,
    /// The table given to `rkllm_init`: the runtime may keep its address, so it stays put.
    _callbacks: Box<sys::RKLLMCallback>,
    /// `RKLLMParam::model_path` pointed here during init; kept in case the runtime kept it.
    _model_path: CString,
    model: PathBuf,
    context: u32,
    /// Set by [`RkllmAbort::abort`], so the answer it cut short says `aborted`.
    abort_requested: AtomicBool,
}

// SAFETY: the runtime handle is an opaque pointer to the runtime's own state. Everything but
// `rkllm_abort` is called through `&mut RkllmEngine` (one thread at a time), and the runtime
// documents `rkllm_abort` as callable from any thread during a run.
unsafe impl Send for Handle {}
// SAFETY: see `Send`: the only call made through a shared reference is `rkllm_abort`.
unsafe impl Sync for Handle {}

impl Handle {
    fn site(&self) -> Site<'_> {
        Site {
            model: &self.model,
            context: self.context,
        }
    }

    fn abort(&self) -> c_int {
        // SAFETY: `raw` is a live handle (destroyed only in `Drop`, after every user of this
        // `Handle`); `rkllm_abort` may be called from any thread, during a run or not.
        unsafe { (self.rt.abort)(self.raw) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a successful `rkllm_init` and is destroyed once, here. No run
        // is in progress: runs happen inside `generate(&mut self)`, and every `RkllmEngine`
        // and `RkllmAbort` holding this handle is gone. The return code is not checked: there
        // is nothing left to do about a failure.
        unsafe { (self.rt.destroy)(self.raw) };
    }
}

/// Stops the answer in progress from another thread (for instance while the prompt is still
/// being processed and no piece has come yet); a no-op between answers.
#[derive(Clone)]
pub struct RkllmAbort(Arc<Handle>);

impl RkllmAbort {
    pub fn abort(&self) -> Result<(), EngineError> {
        self.0.abort_requested.store(true, Ordering::SeqCst);
        check(Call::Abort, self.0.abort(), &self.0.site())
    }
}

/// A `.rkllm` model loaded into the RKLLM runtime, with its kept session.
pub struct RkllmEngine {
    handle: Arc<Handle>,
    info: ModelInfo,
    /// The runtime's default sampling, for the knobs `Sampling` does not have.
    default_sampling: sys::RKLLMSamplingParam,
    session: Session,
}

impl RkllmEngine {
    /// Loads `spec.model_path` with the runtime `spec.runtime_library` (default
    /// [`DEFAULT_LIBRARY`]) after checking the library and the NPU driver.
    pub fn load(spec: &LoadSpec, options: &RkllmOptions) -> Result<Self, EngineError> {
        if spec.backend != BackendKind::Npu {
            return Err(unavailable(format!(
                "the RKLLM runtime runs `npu` models, not `{}` ones",
                spec.backend.as_str()
            )));
        }
        let bad_model = |reason: String| EngineError::BadModel {
            path: spec.model_path.clone(),
            reason,
        };
        let meta = std::fs::metadata(&spec.model_path).map_err(|e| bad_model(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad_model("is not a file".into()));
        }
        let context = i32::try_from(spec.context_length)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                EngineError::Runtime(format!(
                    "context length {} is out of the RKLLM runtime's range",
                    spec.context_length
                ))
            })?;
        let cpus = cpu_mask(&spec.placement.cpus)?;
        let model_path = CString::new(spec.model_path.as_os_str().as_bytes())
            .map_err(|_| bad_model("the path contains a NUL byte".into()))?;

        let library = spec
            .runtime_library
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LIBRARY));
        let rt = Runtime::open(&library, options)?;
        let driver = check_driver(&options.driver_version_paths)?;

        // SAFETY: rkllm_createDefaultParam takes nothing and returns a struct by value.
        let mut param = unsafe { (rt.create_default_param)() };
        param.model_path = model_path.as_ptr();
        param.max_context_len = context;
        // Per answer, `RKLLMInferParam::max_new_tokens` sets the real bound.
        param.max_new_tokens = context;
        param.skip_special_token = true;
        param.is_async = false;
        // One model per NPU here: the first memory domain.
        param.extend_param.base_domain_id = 0;
        if let Some((mask, num)) = cpus {
            param.extend_param.enabled_cpus_mask = mask;
            param.extend_param.enabled_cpus_num = num;
        }
        // The runtime rejects 0 inputs per forward pass.
        param.extend_param.n_batch = param.extend_param.n_batch.max(1);
        let default_sampling = sys::RKLLMSamplingParam {
            top_k: param.top_k,
            top_p: param.top_p,
            temperature: param.temperature,
            repeat_penalty: param.repeat_penalty,
            frequency_penalty: param.frequency_penalty,
            presence_penalty: param.presence_penalty,
            mirostat: param.mirostat,
            mirostat_tau: param.mirostat_tau,
            mirostat_eta: param.mirostat_eta,
        };
        let mut callbacks = Box::new(sys::RKLLMCallback {
            result_callback: Some(on_result),
            // Each run passes its own userdata; a NULL here makes a stray event a no-op.
            result_userdata: null_mut(),
            tokenizer_callback: None,
            tokenizer_userdata: null_mut(),
            embed_callback: None,
            embed_userdata: null_mut(),
        });
        let mut raw: sys::LLMHandle = null_mut();
        // SAFETY: the three pointers are valid for the call: `raw` and `param` are locals, the
        // model path is a NUL-terminated string owned by `model_path`, and the callback table
        // is boxed and kept, with `model_path`, for the handle's whole life (in `Handle`).
        let rc = unsafe { (rt.init)(&mut raw, &mut param, &mut *callbacks) };
        let site = Site {
            model: &spec.model_path,
            context: spec.context_length,
        };
        check(Call::Init, rc, &site)?;
        if raw.is_null() {
            return Err(EngineError::Runtime(
                "rkllm_init succeeded but returned no handle".into(),
            ));
        }
        let runtime = format!("RKLLM runtime {} (rknpu driver {driver})", rt.version);
        let handle = Arc::new(Handle {
            rt,
            raw,
            _callbacks: callbacks,
            _model_path: model_path,
            model: spec.model_path.clone(),
            context: spec.context_length,
            abort_requested: AtomicBool::new(false),
        });
        Ok(Self {
            handle,
            info: ModelInfo {
                backend: BackendKind::Npu,
                path: spec.model_path.clone(),
                file_bytes: meta.len(),
                // The .rkllm format does not say; the catalog does.
                parameters: 0,
                context_length: spec.context_length,
                runtime,
                // RKLLM applies the template the model was converted with.
                chat_format: "rkllm".into(),
            },
            default_sampling,
            session: Session::default(),
        })
    }

    /// A handle that stops the answer in progress from another thread.
    pub fn abort_handle(&self) -> RkllmAbort {
        RkllmAbort(Arc::clone(&self.handle))
    }

    fn clear_kv_cache(&mut self) -> Result<(), EngineError> {
        // SAFETY: live handle, no run in progress (`&mut self`); keep_system_prompt = 0 and a
        // NULL range clear the whole cache.
        let rc =
            unsafe { (self.handle.rt.clear_kv_cache)(self.handle.raw, 0, null_mut(), null_mut()) };
        check(Call::ClearKvCache, rc, &self.handle.site())?;
        self.session.dirty = false;
        Ok(())
    }

    fn sampling_param(&self, sampling: &Sampling) -> sys::RKLLMSamplingParam {
        let greedy = sampling.temperature <= 0.0;
        sys::RKLLMSamplingParam {
            // `Sampling::seed` has no counterpart: the runtime seeds itself.
            top_k: if greedy {
                1
            } else {
                i32::try_from(sampling.top_k).unwrap_or(i32::MAX)
            },
            top_p: sampling.top_p,
            temperature: if greedy { 1.0 } else { sampling.temperature },
            ..self.default_sampling
        }
    }
}

impl Engine for RkllmEngine {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn generate(
        &mut self,
        chat: &[ChatMessage],
        sampling: &Sampling,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<GenStats, EngineError> {
        let started = Instant::now();
        if chat.last().is_none_or(|m| m.role != "user") {
            return Err(EngineError::Runtime(
                "the chat must end with a user message".into(),
            ));
        }
        // The prompt may take what the answer and the margin leave of the context (the
        // llama.cpp backend's budget; see `session` for how it is counted and slid here).
        let context = self.info.context_length as usize;
        let budget = context.saturating_sub(sampling.max_tokens as usize + MARGIN);
        let extend = match plan(&self.session.kept, chat) {
            Plan::Extend { new, left_out }
                if self.session.kept_tokens as usize + self.session.estimate(new) <= budget =>
            {
                Some((new.to_vec(), left_out))
            }
            _ => None,
        };
        let (to_send, reused_tokens, left_out, window) = match extend {
            Some((new, left_out)) => (new, self.session.kept_tokens, left_out, None),
            None => {
                // A fresh run: the whole chat when it fits, else a slide to half the budget.
                let all = self.session.estimate(chat);
                let target = if all <= budget { budget } else { budget / 2 };
                let (window, left_out) = match session::window(chat, target, |w| {
                    self.session.estimate(w)
                }) {
                    Ok(w) => w,
                    // Even the instructions and the question alone: over the whole budget?
                    Err(_) => match session::window(chat, budget, |w| self.session.estimate(w)) {
                        Ok(w) => w,
                        Err(tokens) => {
                            return Err(EngineError::QuestionTooLong {
                                tokens,
                                limit: budget,
                                context: self.info.context_length,
                                answer: sampling.max_tokens,
                            });
                        }
                    },
                };
                self.session.forget();
                if self.session.dirty {
                    self.clear_kv_cache()?;
                }
                (window.clone(), 0, left_out, Some(window))
            }
        };
        let text = render(&to_send);
        let prompt = CString::new(text.as_str()).expect("render removes NUL bytes");
        let mut input = sys::RKLLMInput {
            role: c"user".as_ptr(),
            enable_thinking: false,
            input_type: sys::RKLLM_INPUT_PROMPT,
            data: sys::RKLLMInputData {
                prompt_input: prompt.as_ptr(),
            },
        };
        let max_new_tokens = sampling.max_tokens.max(1);
        let mut sampling_param = self.sampling_param(sampling);
        let mut infer = sys::RKLLMInferParam {
            mode: sys::RKLLM_INFER_GENERATE,
            lora_params: null_mut(),
            prompt_cache_params: null_mut(),
            sampling_params: &mut sampling_param,
            // Always keep the turn: the next question may extend this chat.
            keep_history: 1,
            max_new_tokens: i32::try_from(max_new_tokens).unwrap_or(i32::MAX),
        };
        let handle = Arc::clone(&self.handle);
        let mut run = RunState {
            on_piece,
            handle: &handle,
            pending: Vec::new(),
            answer: String::new(),
            tokens: 0,
            first_piece: None,
            last_piece: None,
            stopped: false,
            failed: false,
            perf: None,
            panic: None,
        };
        handle.abort_requested.store(false, Ordering::SeqCst);
        // From here the cache holds something, whatever the run's outcome.
        self.session.dirty = true;
        // SAFETY: live handle and no other run (`&mut self`). `input` points at `prompt` and a
        // static role string, `infer` at `sampling_param`, and `run` is the callback's
        // userdata; all of them outlive this synchronous call, whose events all arrive before
        // it returns.
        let rc = unsafe {
            (handle.rt.run)(
                handle.raw,
                &mut input,
                &mut infer,
                (&raw mut run).cast::<c_void>(),
            )
        };
        if let Some(payload) = run.panic.take() {
            self.session.forget();
            resume_unwind(payload);
        }
        let outcome = if run.failed {
            check(Call::RunErrorEvent, rc, &handle.site())
        } else {
            check(Call::Run, rc, &handle.site())
        };
        if let Err(e) = outcome {
            self.session.forget();
            return Err(e);
        }

        let aborted = run.stopped || handle.abort_requested.load(Ordering::SeqCst);
        let perf = run.perf.unwrap_or_default();
        let prompt_tokens = u32::try_from(perf.prefill_tokens).unwrap_or(0);
        let elapsed = started.elapsed().as_secs_f64();
        let time_to_first_token = run
            .first_piece
            .map_or(elapsed, |t| t.duration_since(started).as_secs_f64());
        let decode_tokens_per_second = match (run.first_piece, run.last_piece) {
            (Some(first), Some(last)) if run.tokens > 1 && last > first => {
                f64::from(run.tokens - 1) / last.duration_since(first).as_secs_f64()
            }
            _ => 0.0,
        };
        let prefill_secs = if perf.prefill_time_ms > 0.0 {
            f64::from(perf.prefill_time_ms) / 1000.0
        } else {
            time_to_first_token
        };
        let prompt_tokens_per_second = if prefill_secs > 0.0 {
            f64::from(prompt_tokens) / prefill_secs
        } else {
            0.0
        };
        if aborted {
            // What the runtime keeps of a cut answer is not specified: the next turn starts
            // over from a cleared cache.
            self.session.forget();
        } else {
            self.session.counted(text.len(), prompt_tokens);
            // The cache now holds the window (or the kept messages and the new ones).
            let mut kept = match window {
                Some(w) => w,
                None => {
                    let mut k = std::mem::take(&mut self.session.kept);
                    k.extend(to_send);
                    k
                }
            };
            kept.push(ChatMessage::new("assistant", &run.answer));
            self.session.kept = kept;
            self.session.kept_tokens = reused_tokens
                .saturating_add(prompt_tokens)
                .saturating_add(run.tokens);
        }
        Ok(GenStats {
            prompt_tokens,
            reused_tokens,
            generated_tokens: run.tokens,
            time_to_first_token,
            decode_tokens_per_second,
            prompt_tokens_per_second,
            peak_rss_bytes: peak_rss_bytes(),
            aborted,
            window_left_out: left_out as u32,
            // The runtime does not say why a run ended: an answer that used every token it
            // was allowed was cut (one that ends exactly there is taken for cut too; the
            // daemon's cut then leaves a whole last sentence as it is).
            truncated: !aborted && run.tokens >= max_new_tokens,
        })
    }

    fn reset(&mut self) {
        // The cache itself is cleared lazily, by the next answer.
        self.session.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_masks_follow_the_placement() {
        assert_eq!(cpu_mask(&[]).unwrap(), None);
        assert_eq!(cpu_mask(&[4, 5, 6, 7]).unwrap(), Some((0xF0, 4)));
        assert_eq!(cpu_mask(&[0, 2]).unwrap(), Some((0b101, 2)));
        assert!(cpu_mask(&[32]).is_err());
    }

    #[test]
    fn return_codes_map_to_errors() {
        let site = Site {
            model: Path::new("/m.rkllm"),
            context: 512,
        };
        assert!(check(Call::Run, 0, &site).is_ok());
        match check(Call::Init, -1, &site) {
            Err(EngineError::BadModel { path, reason }) => {
                assert_eq!(path, Path::new("/m.rkllm"));
                assert!(reason.contains("rkllm_init returned -1"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let e = check(Call::Run, -1, &site).unwrap_err().to_string();
        assert!(
            e.contains("rkllm_run returned -1") && e.contains("512"),
            "{e}"
        );
        assert!(check(Call::RunErrorEvent, 0, &site).is_err());
    }
}

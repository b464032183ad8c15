//! Raw `#[repr(C)]` bindings of Rockchip's `rkllm.h`, runtime 1.3.x ABI (`librkllmrt.so`).
//!
//! Written from the 1.3.x header's layout, not generated: the runtime reads these structs by
//! raw offset, so one shifted field is a crash or a silently wrong sampler, never an error.
//! What sets 1.3.x apart from the 1.1/1.2 headers (so that bindings of one ABI crash, or
//! silently misread fields, on a runtime of the other):
//! - `rkllm_init` takes a pointer to an [`RKLLMCallback`] table, not one function (1.3.0);
//! - `RKLLMParam` has `ignore_eos_token` and no `img_start`/`img_end`/`img_content` (they
//!   are in the multimodal input);
//! - `RKLLMInferParam` has per-run `sampling_params` and `max_new_tokens`;
//! - `rkllm_clear_kv_cache` takes a `start_pos`/`end_pos` range (NULL, NULL = everything).
//!
//! The result callback returns an `int` that the runtime acts on: 0 = go on, 1 = pause (the
//! run returns and a later `rkllm_run` resumes it), 2 = release the output buffers. It is not a
//! way to stop: stopping is `rkllm_abort`, which may be called from inside the callback; the
//! run then ends with one `RKLLM_RUN_FINISH` event.
//!
//! C enums are plain `c_int` here, with constants: a value the runtime sends that a Rust enum
//! does not list would be undefined behaviour.
//!
//! Nothing here is called directly: the library is opened at run time (libloading) and these
//! are the types of the symbols looked up in it; see [`super`] for the safe wrapper.

#![allow(non_camel_case_types, non_snake_case, dead_code)]

use std::ffi::{c_char, c_int, c_void};

/// The runtime's opaque handle of one loaded model.
pub type LLMHandle = *mut c_void;

/// `LLMCallState`: the state an event of the result callback reports.
pub type LLMCallState = c_int;
/// A token was produced (its text, possibly empty, is in `RKLLMResult::text`).
pub const RKLLM_RUN_NORMAL: LLMCallState = 0;
/// A token that is an incomplete UTF-8 character; its text arrives with a later event.
pub const RKLLM_RUN_WAITING: LLMCallState = 1;
/// The run is over (also after `rkllm_abort`); `RKLLMResult::perf` is filled.
pub const RKLLM_RUN_FINISH: LLMCallState = 2;
/// The run failed.
pub const RKLLM_RUN_ERROR: LLMCallState = 3;

/// `RKLLMInputType`: which member of [`RKLLMInputData`] is meant.
pub type RKLLMInputType = c_int;
pub const RKLLM_INPUT_PROMPT: RKLLMInputType = 0;
pub const RKLLM_INPUT_TOKEN: RKLLMInputType = 1;
pub const RKLLM_INPUT_EMBED: RKLLMInputType = 2;
pub const RKLLM_INPUT_MULTIMODAL: RKLLMInputType = 3;

/// `RKLLMInferMode`: what a run computes.
pub type RKLLMInferMode = c_int;
pub const RKLLM_INFER_GENERATE: RKLLMInferMode = 0;
pub const RKLLM_INFER_GET_LAST_HIDDEN_LAYER: RKLLMInferMode = 1;
pub const RKLLM_INFER_GET_LOGITS: RKLLMInferMode = 2;

/// What the result callback returns: go on with the run.
pub const CALLBACK_CONTINUE: c_int = 0;

/// Hardware-side settings of `RKLLMParam` (`RKLLMExtendParam`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMExtendParam {
    /// NPU memory domain the model's buffers are allocated in (0 unless several instances
    /// share the NPU).
    pub base_domain_id: i32,
    /// 1: look word embeddings up from the model file instead of holding them in memory.
    pub embed_flash: i8,
    /// How many CPU cores the runtime's own threads use.
    pub enabled_cpus_num: i8,
    /// Which CPU cores (bit N = cpuN); 0xF0 = cores 4-7, the A76 cluster of the RK3588.
    pub enabled_cpus_mask: u32,
    /// Inputs processed in one forward pass; the runtime rejects 0.
    pub n_batch: u8,
    pub use_cross_attn: i8,
    pub reserved: [u8; 104],
}

/// Model and default generation settings given to `rkllm_init` (`RKLLMParam`). Start from
/// `rkllm_createDefaultParam` and change fields, so the reserved bytes keep their defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMParam {
    pub model_path: *const c_char,
    pub max_context_len: i32,
    pub max_new_tokens: i32,
    pub top_k: i32,
    /// Tokens kept at the start of the KV cache when the context window shifts.
    pub n_keep: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub skip_special_token: bool,
    pub ignore_eos_token: bool,
    pub is_async: bool,
    pub extend_param: RKLLMExtendParam,
}

/// `RKLLMLoraAdapter`, for `rkllm_load_lora`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMLoraAdapter {
    pub lora_adapter_path: *const c_char,
    pub lora_adapter_name: *const c_char,
    pub scale: f32,
}

/// `RKLLMEmbedInput`: `n_tokens` × embedding size floats.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMEmbedInput {
    pub embed: *mut f32,
    pub n_tokens: usize,
}

/// `RKLLMTokenInput`: token ids.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMTokenInput {
    pub input_ids: *mut i32,
    pub n_tokens: usize,
}

/// The image part of [`RKLLMMultiModalInput`] (an anonymous struct in the header).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMImageInput {
    pub image_embed: *mut f32,
    pub n_image_tokens: usize,
    pub n_image: usize,
    pub image_start: *const c_char,
    pub image_end: *const c_char,
    pub image_content: *const c_char,
    pub image_width: usize,
    pub image_height: usize,
}

/// The video part of [`RKLLMMultiModalInput`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMVideoInput {
    pub video_embed: *mut f32,
    pub n_frame_tokens: usize,
    pub n_frame_per_video: usize,
    pub n_video: usize,
    pub video_start: *const c_char,
    pub video_end: *const c_char,
    pub video_content: *const c_char,
    pub frame_width: usize,
    pub frame_height: usize,
}

/// The audio part of [`RKLLMMultiModalInput`] (runtime 1.3.1; 1.3.0 ends after `video`).
/// Only the union's size depends on it, and a larger union is harmless: the runtime reads the
/// member `input_type` names.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMAudioInput {
    pub audio_embed: *mut f32,
    pub n_audio_tokens: usize,
    pub n_audio: usize,
    pub audio_start: *const c_char,
    pub audio_end: *const c_char,
    pub audio_content: *const c_char,
}

/// `RKLLMMultiModalInput`: a prompt whose placeholders the runtime expands into embeddings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMMultiModalInput {
    pub prompt: *mut c_char,
    pub image: RKLLMImageInput,
    pub video: RKLLMVideoInput,
    pub audio: RKLLMAudioInput,
}

/// The anonymous union of `RKLLMInput`; `RKLLMInput::input_type` says which member is meant.
#[repr(C)]
#[derive(Clone, Copy)]
pub union RKLLMInputData {
    pub prompt_input: *const c_char,
    pub embed_input: RKLLMEmbedInput,
    pub token_input: RKLLMTokenInput,
    pub multimodal_input: RKLLMMultiModalInput,
}

/// `RKLLMInput`: one turn given to `rkllm_run`. With the model's own chat template (the
/// default) the runtime wraps a `"user"` prompt in it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RKLLMInput {
    /// `"user"` (or `"tool"` for a function result, as JSON).
    pub role: *const c_char,
    pub enable_thinking: bool,
    pub input_type: RKLLMInputType,
    pub data: RKLLMInputData,
}

/// `RKLLMLoraParam`: which loaded LoRA adapter a run uses.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMLoraParam {
    pub lora_adapter_name: *const c_char,
}

/// `RKLLMPromptCacheParam`: save the prompt's KV cache to a file.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMPromptCacheParam {
    pub save_prompt_cache: c_int,
    pub prompt_cache_path: *const c_char,
}

/// `RKLLMSamplingParam`: per-run sampling, overriding `RKLLMParam`'s.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMSamplingParam {
    pub top_k: i32,
    pub top_p: f32,
    pub temperature: f32,
    pub repeat_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub mirostat: i32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
}

/// `RKLLMInferParam`: how one `rkllm_run` runs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMInferParam {
    pub mode: RKLLMInferMode,
    pub lora_params: *mut RKLLMLoraParam,
    pub prompt_cache_params: *mut RKLLMPromptCacheParam,
    /// NULL: `RKLLMParam`'s sampling.
    pub sampling_params: *mut RKLLMSamplingParam,
    /// 1: keep this turn (prompt and answer) in the KV cache for the next run; 0: forget it.
    pub keep_history: c_int,
    /// 0: `RKLLMParam::max_new_tokens`.
    pub max_new_tokens: i32,
}

/// `RKLLMResultLastHiddenLayer` (mode `RKLLM_INFER_GET_LAST_HIDDEN_LAYER`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMResultLastHiddenLayer {
    pub hidden_states: *const f32,
    pub embd_size: c_int,
    pub num_tokens: c_int,
}

/// `RKLLMResultLogits` (mode `RKLLM_INFER_GET_LOGITS`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMResultLogits {
    pub logits: *const f32,
    pub vocab_size: c_int,
    pub num_tokens: c_int,
}

/// `RKLLMPerfStat`: figures of a run, filled on the `RKLLM_RUN_FINISH` event.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RKLLMPerfStat {
    pub prefill_time_ms: f32,
    pub prefill_tokens: c_int,
    pub generate_time_ms: f32,
    /// Tokens after the first one.
    pub generate_tokens: c_int,
    pub memory_usage_mb: f32,
}

/// `RKLLMResult`: what one callback event carries. Valid only during the callback.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMResult {
    /// NUL-terminated UTF-8, or NULL.
    pub text: *const c_char,
    pub token_id: i32,
    pub last_hidden_layer: RKLLMResultLastHiddenLayer,
    pub logits: RKLLMResultLogits,
    pub perf: RKLLMPerfStat,
}

/// `int (*LLMResultCallback)(RKLLMResult*, void* userdata, LLMCallState)`. `userdata` is the
/// `rkllm_run` argument when not NULL, else `RKLLMCallback::result_userdata`.
pub type LLMResultCallback =
    Option<unsafe extern "C" fn(*mut RKLLMResult, *mut c_void, LLMCallState) -> c_int>;

/// `int (*LLMTokenizerCallback)(void* userdata, const char* text, int32_t text_len,
/// int32_t* tokens, int32_t n_tokens_max)`: an outside tokenizer (NULL: the model's own).
pub type LLMTokenizerCallback =
    Option<unsafe extern "C" fn(*mut c_void, *const c_char, i32, *mut i32, i32) -> c_int>;

/// `int (*LLMGetEmbedCallback)(void* userdata, int32_t* tokens, uint64_t num_tokens,
/// void* embed, uint64_t len)`: an outside embedding table (NULL: the model's own).
pub type LLMGetEmbedCallback =
    Option<unsafe extern "C" fn(*mut c_void, *mut i32, u64, *mut c_void, u64) -> c_int>;

/// `RKLLMCallback`: the callback table `rkllm_init` takes (1.3.0 on). Kept alive, at a fixed
/// address, for the handle's whole life.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RKLLMCallback {
    pub result_callback: LLMResultCallback,
    pub result_userdata: *mut c_void,
    pub tokenizer_callback: LLMTokenizerCallback,
    pub tokenizer_userdata: *mut c_void,
    pub embed_callback: LLMGetEmbedCallback,
    pub embed_userdata: *mut c_void,
}

/// `RKLLMParam rkllm_createDefaultParam(void)`.
pub type CreateDefaultParamFn = unsafe extern "C" fn() -> RKLLMParam;
/// `int rkllm_init(LLMHandle* handle, RKLLMParam* param, RKLLMCallback* callback)`.
pub type InitFn =
    unsafe extern "C" fn(*mut LLMHandle, *mut RKLLMParam, *mut RKLLMCallback) -> c_int;
/// `int rkllm_run(LLMHandle, RKLLMInput*, RKLLMInferParam*, void* userdata)`: synchronous; the
/// callback events arrive before it returns.
pub type RunFn =
    unsafe extern "C" fn(LLMHandle, *mut RKLLMInput, *mut RKLLMInferParam, *mut c_void) -> c_int;
/// `int rkllm_run_async(...)`: same arguments, returns at once.
pub type RunAsyncFn = RunFn;
/// `int rkllm_abort(LLMHandle)`: stops the run in progress; callable from any thread, and
/// from inside the callback.
pub type AbortFn = unsafe extern "C" fn(LLMHandle) -> c_int;
/// `int rkllm_is_running(LLMHandle)`.
pub type IsRunningFn = unsafe extern "C" fn(LLMHandle) -> c_int;
/// `int rkllm_clear_kv_cache(LLMHandle, int keep_system_prompt, int* start_pos, int* end_pos)`.
pub type ClearKvCacheFn = unsafe extern "C" fn(LLMHandle, c_int, *mut c_int, *mut c_int) -> c_int;
/// `int rkllm_destroy(LLMHandle)`.
pub type DestroyFn = unsafe extern "C" fn(LLMHandle) -> c_int;

/// Symbol names, NUL-terminated for `dlsym`.
pub const SYM_CREATE_DEFAULT_PARAM: &[u8] = b"rkllm_createDefaultParam\0";
pub const SYM_INIT: &[u8] = b"rkllm_init\0";
pub const SYM_RUN: &[u8] = b"rkllm_run\0";
pub const SYM_RUN_ASYNC: &[u8] = b"rkllm_run_async\0";
pub const SYM_ABORT: &[u8] = b"rkllm_abort\0";
pub const SYM_IS_RUNNING: &[u8] = b"rkllm_is_running\0";
pub const SYM_CLEAR_KV_CACHE: &[u8] = b"rkllm_clear_kv_cache\0";
pub const SYM_DESTROY: &[u8] = b"rkllm_destroy\0";

/// Every entry point of the 1.3.x API this backend relies on; a library lacking one is not a
/// 1.3.x runtime (or not an RKLLM runtime at all).
pub const REQUIRED_SYMBOLS: [&[u8]; 8] = [
    SYM_CREATE_DEFAULT_PARAM,
    SYM_INIT,
    SYM_RUN,
    SYM_RUN_ASYNC,
    SYM_ABORT,
    SYM_IS_RUNNING,
    SYM_CLEAR_KV_CACHE,
    SYM_DESTROY,
];

// The layouts on the LP64 targets the runtime ships for (aarch64) and the tests run on
// (x86_64): a changed field shows up here before it shows up as a crash.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<RKLLMExtendParam>() == 120);
    assert!(offset_of!(RKLLMExtendParam, enabled_cpus_mask) == 8);
    assert!(offset_of!(RKLLMExtendParam, n_batch) == 12);
    assert!(offset_of!(RKLLMParam, top_p) == 24);
    assert!(offset_of!(RKLLMParam, skip_special_token) == 56);
    assert!(offset_of!(RKLLMParam, extend_param) == 60);
    assert!(size_of::<RKLLMParam>() == 184);
    assert!(offset_of!(RKLLMInput, input_type) == 12);
    assert!(offset_of!(RKLLMInput, data) == 16);
    assert!(size_of::<RKLLMMultiModalInput>() == 192);
    assert!(size_of::<RKLLMInput>() == 208);
    assert!(size_of::<RKLLMInferParam>() == 40);
    assert!(offset_of!(RKLLMInferParam, keep_history) == 32);
    assert!(size_of::<RKLLMPerfStat>() == 20);
    assert!(offset_of!(RKLLMResult, perf) == 48);
    assert!(size_of::<RKLLMResult>() == 72);
    assert!(size_of::<RKLLMCallback>() == 48);
};

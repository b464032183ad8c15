//! Small owned handles over the part of llama.cpp's C API the engine uses (`llama.h` and
//! `ggml-cpu.h`, as llama-cpp-sys-2 binds them): a model, its context, a batch, a sampler
//! chain and a ggml thread pool. Each handle frees what it owns on drop.
//!
//! Why not llama-cpp-2's wrappers, which the engine used before: they keep the context
//! pointer private, and the engine needs it to attach a persistent thread pool
//! (`llama_attach_threadpool`). Without one, ggml starts and joins its worker threads for
//! every graph, i.e. every decoded token, and decode ran at 0.96 × llama-bench, which keeps a
//! pool (docs/benchmarks.md, "Figures, session 19"). What the engine calls is small enough to own.

use std::ffi::{CStr, CString, c_char, c_void};
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Once;

use llama_cpp_sys_2 as sys;

/// A token id of the model's vocabulary.
pub type Token = sys::llama_token;

/// What a llama.cpp call refused, in words.
#[derive(Debug, thiserror::Error)]
pub enum CppError {
    /// What went wrong loading a model file (the caller names the file).
    #[error("{0}")]
    Load(&'static str),
    #[error("llama.cpp could not create a context ({0})")]
    Context(String),
    #[error("{0} holds a NUL byte, which llama.cpp's C strings cannot carry")]
    Nul(&'static str),
    #[error("{what} is too long for llama.cpp ({bytes} bytes)")]
    TooLong { what: &'static str, bytes: usize },
    #[error("the chat template failed (llama_chat_apply_template returned {0})")]
    Template(i32),
    #[error("llama_decode returned {0}: {1}")]
    Decode(i32, &'static str),
    #[error("the batch is full ({0} tokens)")]
    BatchFull(usize),
    #[error("no logits at batch index {0}")]
    NoLogits(i32),
}

/// Initialises llama.cpp's backends once per process; `quiet` routes its log to nowhere
/// (it logs every tensor at load, and the worker's stderr goes to the journal).
pub fn init(quiet: bool) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: called once (guarded by `INIT`) before any other llama.cpp call, as llama.h
        // asks; `discard` matches ggml_log_callback and ignores its pointers.
        unsafe {
            sys::llama_backend_init();
            if quiet {
                sys::llama_log_set(Some(discard), std::ptr::null_mut());
            }
        }
    });
}

unsafe extern "C" fn discard(
    _level: sys::ggml_log_level,
    _text: *const c_char,
    _data: *mut c_void,
) {
}

/// A loaded model: weights (mmapped), vocabulary and metadata.
pub struct Model {
    ptr: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
}

// SAFETY: after loading, llama.cpp only reads a model (contexts share one across threads);
// the vocabulary calls used here (tokenize, token_to_piece, is_eog) take it as const.
unsafe impl Send for Model {}
// SAFETY: as above: no call made through `&Model` mutates it.
unsafe impl Sync for Model {}

impl Model {
    /// Loads a GGUF file; `gpu_layers` layers go to the GPU when llama.cpp was built with one.
    pub fn load(path: &Path, gpu_layers: i32) -> Result<Self, CppError> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| CppError::Nul("the model's path"))?;
        // SAFETY: plain constructor of a params struct by value.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = gpu_layers;
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call; llama.cpp
        // returns null on failure, which NonNull turns into an error.
        let ptr = NonNull::new(unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), params) })
            .ok_or(CppError::Load("llama_model_load_from_file failed"))?;
        // SAFETY: `ptr` is a live model; its vocabulary lives as long as it does.
        let vocab = NonNull::new(unsafe { sys::llama_model_get_vocab(ptr.as_ptr()) }.cast_mut());
        match vocab {
            Some(vocab) => Ok(Self { ptr, vocab }),
            None => {
                // SAFETY: `ptr` came from llama_model_load_from_file and is freed once, here.
                unsafe { sys::llama_model_free(ptr.as_ptr()) };
                Err(CppError::Load("the model has no vocabulary"))
            }
        }
    }

    /// The chat template in the model's metadata (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<CString> {
        // SAFETY: a live model; the returned string (or null) belongs to the model's metadata
        // and is copied before the borrow ends.
        let p = unsafe { sys::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null()) };
        // SAFETY: non-null means a NUL-terminated string owned by the model.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_owned())
    }

    /// `(role, content)` messages rendered with `template`, ending with the assistant's cue
    /// when `add_assistant`.
    pub fn apply_chat_template(
        &self,
        template: &CStr,
        messages: &[(&str, &str)],
        add_assistant: bool,
    ) -> Result<String, CppError> {
        let owned = messages
            .iter()
            .map(|(r, c)| {
                Ok((
                    CString::new(*r).map_err(|_| CppError::Nul("a chat role"))?,
                    CString::new(*c).map_err(|_| CppError::Nul("a chat message"))?,
                ))
            })
            .collect::<Result<Vec<_>, CppError>>()?;
        let chat: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(role, content)| sys::llama_chat_message {
                role: role.as_ptr(),
                content: content.as_ptr(),
            })
            .collect();
        let text_bytes: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
        // llama.h suggests twice the messages' length; a longer result says how long.
        let mut buf = vec![0u8; (2 * text_bytes).max(256)];
        for _ in 0..2 {
            let len = c_len(buf.len(), "a chat")?;
            // SAFETY: `chat` points at `owned`'s strings, alive for the call; `buf` has `len`
            // writable bytes; llama.cpp writes at most `len` and returns the full length.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    template.as_ptr(),
                    chat.as_ptr(),
                    chat.len(),
                    add_assistant,
                    buf.as_mut_ptr().cast::<c_char>(),
                    len,
                )
            };
            if n < 0 {
                return Err(CppError::Template(n));
            }
            if n as usize <= buf.len() {
                buf.truncate(n as usize);
                return Ok(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n as usize, 0);
        }
        Err(CppError::Template(-1))
    }

    pub fn n_params(&self) -> u64 {
        // SAFETY: a live model.
        unsafe { sys::llama_model_n_params(self.ptr.as_ptr()) }
    }

    /// The tokens of `text`; `add_special` adds BOS (and EOS) as the model wants,
    /// `parse_special` reads special-token text (`<|im_start|>`) as those tokens.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, CppError> {
        let len = c_len(text.len(), "a text to tokenize")?;
        let mut tokens: Vec<Token> = vec![0; text.len() / 2 + 8];
        for _ in 0..2 {
            let max = c_len(tokens.len(), "a text to tokenize")?;
            // SAFETY: `text` has `len` readable bytes (no NUL needed: the length is given);
            // `tokens` has `max` writable slots; a negative result is the count needed.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab.as_ptr(),
                    text.as_ptr().cast::<c_char>(),
                    len,
                    tokens.as_mut_ptr(),
                    max,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        Err(CppError::TooLong {
            what: "a text to tokenize",
            bytes: text.len(),
        })
    }

    /// Appends the bytes of `token` as text to `out` (special tokens render as nothing).
    /// A token may end inside a UTF-8 character; the caller joins pieces.
    pub fn token_to_piece(&self, token: Token, out: &mut Vec<u8>) {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` has 64 writable bytes; a negative result is the length needed.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab.as_ptr(),
                token,
                buf.as_mut_ptr().cast(),
                64,
                0,
                false,
            )
        };
        if n >= 0 {
            out.extend_from_slice(&buf[..n as usize]);
            return;
        }
        let mut big = vec![0u8; n.unsigned_abs() as usize];
        // SAFETY: `big` has exactly the length llama.cpp asked for.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab.as_ptr(),
                token,
                big.as_mut_ptr().cast(),
                big.len() as i32,
                0,
                false,
            )
        };
        out.extend_from_slice(&big[..n.max(0) as usize]);
    }

    /// Whether `token` ends a generation (EOS, EOT and the like).
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: a live vocabulary; any token id is accepted (out of range is not EOG).
        unsafe { sys::llama_vocab_is_eog(self.vocab.as_ptr(), token) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: the model came from llama_model_load_from_file and is freed once. Contexts
        // borrow the model (`Context<'m>`), so none outlives it.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) }
    }
}

/// A length as the C API's `int32_t`, or an error naming what was too long.
fn c_len(n: usize, what: &'static str) -> Result<i32, CppError> {
    i32::try_from(n).map_err(|_| CppError::TooLong { what, bytes: n })
}

/// ggml's worker threads, kept for the context's life instead of started per graph.
struct ThreadPool(NonNull<sys::ggml_threadpool>);

impl ThreadPool {
    /// No pinning of its own (the threads inherit the process's CPUs, where the supervisor
    /// placed it), normal priority, and no polling: after each graph the workers wait on a
    /// condition variable for the next. ggml's default (50, llama-bench's) lets them spin for
    /// up to ~0.2 s instead. That bought no decode speed here (0.987 × llama-bench at 0, 0.997 at 1,
    /// 1.008 at 50, all within the runs' spread), and where the engine shares two cores with
    /// the daemon, the voice and other engines, a spinning worker takes the core from the
    /// thread it waits for: a test's answer then took over 10 s for ten tokens.
    fn new(threads: i32) -> Option<Self> {
        // SAFETY: plain constructor of a params struct by value.
        let mut params = unsafe { sys::ggml_threadpool_params_default(threads) };
        params.poll = 0;
        // SAFETY: `params` is initialised and outlives the call; null means no pool.
        NonNull::new(unsafe { sys::ggml_threadpool_new(&mut params) }).map(Self)
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // SAFETY: created by ggml_threadpool_new, freed once; `Context` frees its llama
        // context (the pool's only user) before its pool field drops.
        unsafe { sys::ggml_threadpool_free(self.0.as_ptr()) }
    }
}

/// Parameters of a context.
pub struct ContextParams {
    /// Context length in tokens (the KV cache's cells).
    pub n_ctx: u32,
    /// Tokens per `llama_decode` call at most.
    pub n_batch: u32,
    /// Threads for decoding and for prompt batches.
    pub threads: i32,
}

/// A context: the KV cache of one session, the compute buffers and the thread pool.
pub struct Context<'m> {
    ptr: NonNull<sys::llama_context>,
    /// Attached to `ptr`, never called directly: held so that it lives as long as the
    /// context, and dropped after `ptr` is freed (see `Drop`).
    _pool: Option<ThreadPool>,
    n_vocab: usize,
    /// The model must outlive its context.
    model: PhantomData<&'m Model>,
}

// SAFETY: a llama context is not tied to the thread that made it; `&mut self` on every call
// that computes or changes the cache keeps it to one thread at a time (it is not Sync).
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, p: &ContextParams) -> Result<Self, CppError> {
        // SAFETY: plain constructor of a params struct by value.
        let mut params = unsafe { sys::llama_context_default_params() };
        params.n_ctx = p.n_ctx;
        params.n_batch = p.n_batch;
        params.n_threads = p.threads;
        params.n_threads_batch = p.threads;
        // SAFETY: a live model, borrowed for the context's life; null means failure.
        let ptr = NonNull::new(unsafe { sys::llama_init_from_model(model.ptr.as_ptr(), params) })
            .ok_or_else(|| {
            CppError::Context(format!("{} tokens, {} threads", p.n_ctx, p.threads))
        })?;
        // One thread needs no pool: ggml then computes on the calling thread.
        let pool = (p.threads > 1)
            .then(|| ThreadPool::new(p.threads))
            .flatten();
        if let Some(pool) = &pool {
            // SAFETY: both pointers are live; the pool outlives the context (`Drop`). The
            // same pool serves single tokens and prompt batches, as in llama-bench.
            unsafe { sys::llama_attach_threadpool(ptr.as_ptr(), pool.0.as_ptr(), pool.0.as_ptr()) };
        }
        // SAFETY: a live vocabulary.
        let n_vocab = unsafe { sys::llama_vocab_n_tokens(model.vocab.as_ptr()) }.max(0) as usize;
        Ok(Self {
            ptr,
            _pool: pool,
            n_vocab,
            model: PhantomData,
        })
    }

    pub fn n_ctx(&self) -> u32 {
        // SAFETY: a live context.
        unsafe { sys::llama_n_ctx(self.ptr.as_ptr()) }
    }

    /// Runs the model on `batch`, adding its tokens to the KV cache.
    pub fn decode(&mut self, batch: &Batch) -> Result<(), CppError> {
        // SAFETY: a live context; `batch.raw` is a batch from llama_batch_init whose first
        // `n_tokens` entries were filled by `Batch::add`. llama_decode reads it, by value.
        let code = unsafe { sys::llama_decode(self.ptr.as_ptr(), batch.raw) };
        match code {
            0 => Ok(()),
            1 => Err(CppError::Decode(code, "no room in the KV cache")),
            2 => Err(CppError::Decode(code, "aborted")),
            -1 => Err(CppError::Decode(code, "invalid batch")),
            _ => Err(CppError::Decode(code, "compute failed")),
        }
    }

    /// The logits of the batch entry `i` of the last decode (one per vocabulary token).
    pub fn logits(&mut self, i: i32) -> Result<&[f32], CppError> {
        // SAFETY: a live context; llama.cpp returns null for an index without logits.
        let p = unsafe { sys::llama_get_logits_ith(self.ptr.as_ptr(), i) };
        if p.is_null() {
            return Err(CppError::NoLogits(i));
        }
        // SAFETY: non-null points at n_vocab floats inside the context's output buffer,
        // valid until the next decode, which needs `&mut self` and so ends this borrow.
        Ok(unsafe { std::slice::from_raw_parts(p, self.n_vocab) })
    }

    /// Removes the cache's cells of sequence 0 at positions `p0..p1` (`None`: to the end).
    pub fn remove(&mut self, p0: u32, p1: Option<u32>) -> bool {
        let end = p1.map_or(-1, |p| p as i32);
        // SAFETY: a live context and its memory; sequence 0 is the only one used.
        unsafe {
            sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr.as_ptr()), 0, p0 as i32, end)
        }
    }

    /// Moves the cells of sequence 0 at positions `p0..` by `delta` (RoPE is re-applied on the
    /// next decode).
    pub fn shift(&mut self, p0: u32, delta: i32) {
        // SAFETY: a live context and its memory.
        unsafe {
            sys::llama_memory_seq_add(
                sys::llama_get_memory(self.ptr.as_ptr()),
                0,
                p0 as i32,
                -1,
                delta,
            )
        }
    }

    /// Empties the KV cache.
    pub fn clear(&mut self) {
        // SAFETY: a live context and its memory.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr.as_ptr()), true) }
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: made by llama_init_from_model and freed once; the pool field drops after
        // this, so the context never sees a freed pool.
        unsafe { sys::llama_free(self.ptr.as_ptr()) }
    }
}

/// Tokens for one `llama_decode`, each in sequence 0.
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

impl Batch {
    pub fn new(capacity: usize) -> Self {
        let n = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates arrays for `n` tokens of one sequence id each; freed in Drop.
        let raw = unsafe { sys::llama_batch_init(n, 0, 1) };
        Self {
            raw,
            capacity: n as usize,
        }
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Adds `token` at position `pos`; `logits`: compute this entry's logits.
    pub fn add(&mut self, token: Token, pos: u32, logits: bool) -> Result<(), CppError> {
        let i = self.raw.n_tokens as usize;
        if i >= self.capacity {
            return Err(CppError::BatchFull(self.capacity));
        }
        // SAFETY: `i < capacity`, and llama_batch_init allocated `capacity` entries in each
        // array and one sequence id for each entry.
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos as i32;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = 0;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: from llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

/// A sampler chain: top-k, then top-p, then temperature, then a seeded random draw.
pub struct Sampler(NonNull<sys::llama_sampler>);

// SAFETY: a sampler chain is plain state (its RNG, its candidates), not tied to a thread.
unsafe impl Send for Sampler {}

impl Sampler {
    pub fn chain(top_k: i32, top_p: f32, temperature: f32, seed: u32) -> Self {
        // SAFETY: the chain takes ownership of each sampler added to it and frees them with
        // itself; none of the constructors fail for these arguments.
        unsafe {
            let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_k(top_k));
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_p(top_p, 1));
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_temp(temperature));
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_dist(seed));
            Self(NonNull::new(chain).expect("llama_sampler_chain_init returned null"))
        }
    }

    /// Draws the next token from the logits of batch entry `i`.
    pub fn sample(&mut self, ctx: &mut Context<'_>, i: i32) -> Result<Token, CppError> {
        // The chain reads the same logits; checking here turns llama.cpp's abort on a
        // missing entry into an error.
        ctx.logits(i)?;
        // SAFETY: a live chain and context; entry `i` has logits (checked above).
        Ok(unsafe { sys::llama_sampler_sample(self.0.as_ptr(), ctx.ptr.as_ptr(), i) })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: from llama_sampler_chain_init, freed once (with the samplers it owns).
        unsafe { sys::llama_sampler_free(self.0.as_ptr()) }
    }
}

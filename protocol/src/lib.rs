//! What `tutord` and its LLM worker `tutord-engine` say to each other, and how.
//!
//! A separate crate so that `tutord` can speak the protocol without linking llama.cpp (whose
//! bundled ggml clashes with whisper.cpp's in one binary).
//!
//! Framing: each message is a 4-byte big-endian length, then that many bytes of JSON. JSON
//! because the messages are small and rare next to the tokens' cost, and a person can read a
//! capture of the socket; the length prefix because pieces may contain newlines.

pub mod gguf;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The largest frame either side accepts: a chat with its history fits many times over.
pub const MAX_FRAME: usize = 16 << 20;

/// Which backend runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp on the CPU.
    Cpu,
    /// llama.cpp with CUDA (Jetson); needs the `cuda` feature.
    Cuda,
    /// Rockchip RKLLM runtime on the NPU.
    Npu,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Cuda => "cuda",
            BackendKind::Npu => "npu",
        }
    }
}

/// Where the model runs: the CPU cores its threads may use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// CPU numbers (as in /sys/devices/system/cpu/cpuN). Empty: all online CPUs.
    pub cpus: Vec<usize>,
}

/// What to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub backend: BackendKind,
    pub model_path: PathBuf,
    /// Context length in tokens (prompt + answer + history).
    pub context_length: u32,
    pub placement: Placement,
    /// RKLLM only: the runtime library to load (`librkllmrt.so`).
    #[serde(default)]
    pub runtime_library: Option<PathBuf>,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Sampling options of one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub seed: u32,
    /// Stop after this many generated tokens.
    pub max_tokens: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            seed: 42,
            max_tokens: 256,
        }
    }
}

/// `ModelInfo::chat_format` of a model without a chat template (a base model), which gets
/// the engine's plain transcript format instead.
pub const PLAIN_CHAT_FORMAT: &str = "plain";

impl ModelInfo {
    /// The model has no chat template: it answers in the fallback format.
    pub fn is_base_model(&self) -> bool {
        self.chat_format == PLAIN_CHAT_FORMAT
    }
}

/// What the loaded model is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub backend: BackendKind,
    pub path: PathBuf,
    /// Bytes of the model file (≈ bytes read per decoded token).
    pub file_bytes: u64,
    pub parameters: u64,
    pub context_length: u32,
    /// What the backend calls itself, with its version (e.g. "llama.cpp b6800").
    pub runtime: String,
    /// How conversations are put to the model: "template" (its own chat template), "plain"
    /// (the fallback for a base model; the daemon warns) or "rkllm" (the RKLLM runtime's).
    #[serde(default)]
    pub chat_format: String,
}

/// Figures of one answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenStats {
    /// Prompt tokens processed for this answer (new tokens only when the session's KV cache
    /// was reused).
    pub prompt_tokens: u32,
    /// Prompt tokens taken from the kept KV cache instead of being processed again.
    pub reused_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// From the request to the first generated piece, in seconds.
    pub time_to_first_token: f64,
    /// Generated tokens per second, after the first token.
    pub decode_tokens_per_second: f64,
    /// Prompt tokens per second.
    pub prompt_tokens_per_second: f64,
    /// Peak resident memory of the worker process so far, in bytes.
    pub peak_rss_bytes: u64,
    /// Whether the answer was cut short by an abort.
    pub aborted: bool,
    /// Messages of the conversation's oldest turns left out of the prompt so that it fits
    /// the context (they stay in the daemon's store).
    #[serde(default)]
    pub window_left_out: u32,
    /// Whether the answer was cut short by `max_tokens` (or the end of the context) rather
    /// than ended by the model: its last sentence may be unfinished. Never set with `aborted`.
    #[serde(default)]
    pub truncated: bool,
}

/// Tokens of the context kept free past a prompt besides the answer's `max_tokens`: the chat
/// template's closing tokens after the answer, and slack for a piece that ends in the middle
/// of a multi-token character. The engine's window and the daemon's check of a question's
/// length both leave it.
pub const PROMPT_MARGIN: u32 = 16;

/// From the daemon to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Load a model; answered by `Loaded` or `LoadFailed`. Sent once per worker.
    Load(LoadSpec),
    /// Answer a chat; answered by `Piece`s then `Finished` or `Failed`.
    Generate {
        turn: u64,
        chat: Vec<ChatMessage>,
        sampling: Sampling,
    },
    /// Stop the answer of `turn` (ignored when another or none runs).
    Abort { turn: u64 },
    /// Forget the kept session.
    Reset,
    /// Heartbeat; answered by `Pong` with the same `seq`.
    Ping { seq: u64 },
    /// How many tokens `text` is for the loaded model's tokenizer (plain text, no special
    /// tokens); answered by `Counted` or `CountFailed` with the same `id`, also while an
    /// answer is being generated.
    Count { id: u64, text: String },
}

/// From the worker to the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Loaded {
        info: ModelInfo,
    },
    LoadFailed {
        error: String,
    },
    Piece {
        turn: u64,
        text: String,
    },
    Finished {
        turn: u64,
        stats: GenStats,
    },
    Failed {
        turn: u64,
        error: String,
    },
    /// `busy_turn`: the answer running now; `pieces`: pieces sent so far by this worker, so
    /// the daemon can tell a live worker from one whose generation thread is stuck.
    Pong {
        seq: u64,
        busy_turn: Option<u64>,
        pieces: u64,
    },
    Counted {
        id: u64,
        tokens: u32,
    },
    /// The text could not be counted (no model loaded, a backend without a tokenizer).
    CountFailed {
        id: u64,
        error: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the other side closed the connection")]
    Closed,
    #[error("frame of {0} bytes is larger than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).expect("protocol types always serialize");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Decodes a frame's body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(body)?)
}

/// Checks a frame's announced length.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Writes one message (blocking).
pub fn write_msg<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    w.write_all(&encode(msg))?;
    w.flush()
}

/// Reads one message (blocking).
pub fn read_msg<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(prefix)?];
    r.read_exact(&mut body)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_byte_stream() {
        let msgs = vec![
            Request::Ping { seq: 7 },
            Request::Generate {
                turn: 3,
                chat: vec![ChatMessage::new("user", "two\nlines")],
                sampling: Sampling::default(),
            },
            Request::Abort { turn: 3 },
            Request::Count {
                id: 9,
                text: "how many?".into(),
            },
        ];
        let mut buf = Vec::new();
        for m in &msgs {
            write_msg(&mut buf, m).unwrap();
        }
        let mut r = &buf[..];
        for m in &msgs {
            assert_eq!(&read_msg::<Request>(&mut r).unwrap(), m);
        }
        assert!(matches!(
            read_msg::<Request>(&mut r),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn refuses_oversized_and_malformed_frames() {
        let mut big = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(
            read_msg::<Event>(&mut &big[..]),
            Err(FrameError::TooLarge(_))
        ));
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"nope!");
        assert!(matches!(
            read_msg::<Event>(&mut &bad[..]),
            Err(FrameError::Json(_))
        ));
        let wire = encode(&Request::Reset);
        assert_eq!(&wire[4..], br#"{"type":"reset"}"#);
    }

    #[test]
    fn stats_without_the_newer_fields_read_as_none_left_out_and_not_truncated() {
        let body = br#"{"type":"finished","turn":2,"stats":{"prompt_tokens":5,"reused_tokens":0,
            "generated_tokens":7,"time_to_first_token":0.1,"decode_tokens_per_second":20.0,
            "prompt_tokens_per_second":100.0,"peak_rss_bytes":1,"aborted":false}}"#;
        match decode::<Event>(body).unwrap() {
            Event::Finished { turn: 2, stats } => {
                assert_eq!(stats.generated_tokens, 7);
                assert_eq!(stats.window_left_out, 0);
                assert!(!stats.truncated);
            }
            other => panic!("{other:?}"),
        }
    }
}

//! The GGUF header check `tutord-engine` runs before llama.cpp maps a model.
//!
//! `engine/src/gguf.rs` is compiled into this target as it is, with a stand-in for the one
//! type it borrows from its crate: linking `tutord-engine` itself would build llama.cpp,
//! whose ggml clashes with whisper.cpp's in one binary (docs: DESIGN, "the LLM runs in a
//! worker"), for a function that reads 24 bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

/// The stand-in for `tutord_engine::engine`.
mod engine {
    #[derive(Debug)]
    #[allow(dead_code)]
    pub enum EngineError {
        BadModel {
            path: std::path::PathBuf,
            reason: String,
        },
    }
}

#[allow(dead_code)]
#[path = "../../engine/src/gguf.rs"]
mod gguf;

fuzz_target!(|data: &[u8]| {
    // `check_file` hands over the first 24 bytes (fewer when the file is shorter) and the
    // file's length.
    let head = &data[..data.len().min(24)];
    if let Ok(h) = gguf::parse_header(head, data.len() as u64) {
        assert!((2..=3).contains(&h.version));
        assert!(h.tensors >= 1 && h.tensors <= 1 << 20);
    }
});

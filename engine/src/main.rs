//! `tutord-engine`: the LLM worker process that `tutord` supervises.
//!
//! The LLM runs outside the daemon because whisper-rs and llama-cpp-2 each link their own
//! static ggml (the link fails on duplicate `gguf_*` symbols) and because vendor NPU runtimes
//! crash; see docs/architecture.md, "Processes". The backends and the framed protocol are the
//! Engines issue's work: until then this binary only answers `--version`, and refuses to run
//! as a worker with a clear message instead of pretending to serve.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") => {
            println!("tutord-engine {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("tutord-engine: no inference backend is built into this version yet");
            ExitCode::from(69) // EX_UNAVAILABLE
        }
    }
}

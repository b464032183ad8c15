//! `tutord-engine`: the LLM worker. Backends behind one [`engine::Engine`] trait; the daemon
//! drives it with the framed protocol of the `tutord-protocol` crate.

pub mod engine;
pub mod gguf;
pub mod llama;
pub mod prompt;
pub mod rkllm;
pub mod window;
pub mod worker;

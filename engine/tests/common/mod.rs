//! What the engine's tests that run the real small model share.

use std::path::PathBuf;

/// The small model from `$TUTORD_MODELS_DIR`, which the daemon's tests fetch; None (the
/// test skips, or fails under `CI=true`) when it is not there.
pub fn small_model(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TUTORD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.cache/models")));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Some(path);
    }
    let why = format!(
        "{} is missing (cargo test --test faults fetches it)",
        path.display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: cannot run here: {why} (CI=true: a test whose environment is missing fails)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    None
}

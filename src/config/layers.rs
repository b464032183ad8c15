//! The configuration layers as one text, for the fuzz target `config_layers` and the
//! regression tests that replay its findings (`tests/fuzz_regressions.rs`): both must read
//! an input the same way, so the layout lives here once.
//!
//! Layout: chunks separated by NUL (which TOML text cannot hold): the main file, then the
//! environment (`NAME=value` lines), then up to six drop-ins. An empty chunk is a file that
//! does not exist.

use std::path::Path;

use super::Sources;

/// Writes `text`'s main file and drop-ins under `dir` (replacing what an earlier input left
/// there) and returns the sources that read them with its environment.
pub fn write(dir: &Path, text: &str) -> std::io::Result<Sources> {
    let mut chunks = text.split('\0');
    let main_text = chunks.next().unwrap_or("");
    let env_text = chunks.next().unwrap_or("");
    let sources = Sources {
        main: dir.join("tutord.toml"),
        main_required: false,
        env: env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let dropin_dir = sources.dropin_dir();
    let _ = std::fs::remove_file(&sources.main);
    let _ = std::fs::remove_dir_all(&dropin_dir);
    if !main_text.is_empty() {
        std::fs::write(&sources.main, main_text)?;
    }
    let dropins: Vec<&str> = chunks.take(6).collect();
    if !dropins.is_empty() {
        std::fs::create_dir(&dropin_dir)?;
    }
    for (i, d) in dropins.iter().enumerate() {
        if !d.is_empty() {
            std::fs::write(dropin_dir.join(format!("{}0-fuzz.toml", i + 1)), d)?;
        }
    }
    Ok(sources)
}

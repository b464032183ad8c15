//! Reader for CTranslate2's `model.bin` (binary versions 4 to 6, what faster-whisper
//! models ship in).
//!
//! Layout, all little-endian: `u32` version; spec name (a string); `u32` spec revision;
//! `u32` variable count; per variable: name, `u8` rank, `u32` per dimension, `u8` dtype
//! id, `u32` byte count, the bytes; `u32` alias count; per alias: alias name, target name.
//! A string is a `u16` length counting a trailing NUL, then the bytes and the NUL.
//!
//! Only the index is read when the file is opened (every size checked against the bytes
//! that are really left, so no count in the header can make it allocate or seek beyond the
//! file); a variable's bytes are read when asked for, one at a time.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ConvertError;

/// The binary versions this reader knows; older ones lay variables out differently.
pub const VERSIONS: std::ops::RangeInclusive<u32> = 4..=6;
/// Ranks above this exist in no CTranslate2 model; a larger one means a damaged file.
const MAX_RANK: u8 = 4;

/// A variable's element type, numbered as CTranslate2's `DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    pub fn size(self) -> u64 {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::F16 => "float16",
            DType::Bf16 => "bfloat16",
        }
    }
}

/// One variable of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: DType,
    /// Where its bytes start in the file.
    pub offset: u64,
    pub bytes: u64,
}

/// An opened `model.bin`: its index, and the reader its bytes come from.
pub struct Ct2Model<R> {
    pub path: PathBuf,
    pub spec: String,
    pub revision: u32,
    pub variables: Vec<Variable>,
    /// Name (or alias) → index in `variables`.
    names: HashMap<String, usize>,
    reader: R,
}

impl Ct2Model<io::BufReader<std::fs::File>> {
    pub fn open(path: &Path) -> Result<Self, ConvertError> {
        let file = std::fs::File::open(path).map_err(|source| ConvertError::Io {
            path: path.to_path_buf(),
            action: "cannot open",
            source,
        })?;
        Self::read(path, io::BufReader::new(file))
    }
}

impl<R: Read + Seek> Ct2Model<R> {
    /// Reads the index from `reader`; `path` names the file in errors.
    pub fn read(path: &Path, reader: R) -> Result<Self, ConvertError> {
        let mut r = Cursor::new(path, reader)?;
        let version = r.u32("the binary version")?;
        if !VERSIONS.contains(&version) {
            return Err(ConvertError::NotCt2 {
                path: path.to_path_buf(),
                version,
            });
        }
        let spec = r.string("the spec name")?;
        let revision = r.u32("the spec revision")?;
        let count = r.u32("the variable count")?;
        // The smallest variable record is 9 bytes (empty name, rank 0, dtype, size): a count
        // the rest of the file cannot hold is refused before anything is reserved for it.
        r.fits(u64::from(count) * 9, "the variable count", || {
            format!("{count} variables cannot fit in the rest of the file")
        })?;
        // Reserved for a real model's count at most: a bigger count that fits the file
        // (zero-sized variables) grows the list only as records are really read.
        let mut variables = Vec::with_capacity(count.min(4096) as usize);
        let mut names = HashMap::new();
        for i in 0..count {
            let at = r.pos;
            let name = r.string(&format!("the name of variable #{}", i + 1))?;
            let what = format!("variable `{name}`");
            let rank = r.u8(&what)?;
            if rank > MAX_RANK {
                return Err(r.malformed(at, &what, format!("rank {rank} (at most {MAX_RANK})")));
            }
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(u64::from(r.u32(&what)?));
            }
            let id = r.u8(&what)?;
            let dtype = DType::from_id(id)
                .ok_or_else(|| r.malformed(at, &what, format!("unknown dtype id {id}")))?;
            let bytes = u64::from(r.u32(&what)?);
            // u64 holds any product of four u32 dimensions and a size up to 4 only with
            // care: checked, so an absurd shape is an error rather than an overflow.
            let elements = shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(dtype.size()));
            if elements != Some(bytes) {
                return Err(r.malformed(
                    at,
                    &what,
                    format!(
                        "shape {shape:?} of {} does not take {bytes} bytes",
                        dtype.as_str()
                    ),
                ));
            }
            let offset = r.pos;
            r.skip(bytes, &what)?;
            if names.insert(name.clone(), variables.len()).is_some() {
                return Err(r.malformed(at, &what, "appears twice".into()));
            }
            variables.push(Variable {
                name,
                shape,
                dtype,
                offset,
                bytes,
            });
        }
        let aliases = r.u32("the alias count")?;
        r.fits(u64::from(aliases) * 4, "the alias count", || {
            format!("{aliases} aliases cannot fit in the rest of the file")
        })?;
        for i in 0..aliases {
            let at = r.pos;
            let what = format!("alias #{}", i + 1);
            let alias = r.string(&what)?;
            let target = r.string(&what)?;
            let Some(&index) = names.get(&target) else {
                return Err(r.malformed(
                    at,
                    &what,
                    format!("`{alias}` names `{target}`, which is not a variable"),
                ));
            };
            if names.insert(alias.clone(), index).is_some() {
                return Err(r.malformed(at, &what, format!("`{alias}` is already a name")));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            spec,
            revision,
            variables,
            names,
            reader: r.inner,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.names.get(name).map(|&i| &self.variables[i])
    }

    /// The variable, or an error saying it is missing.
    pub fn need(&self, name: &str) -> Result<&Variable, ConvertError> {
        self.get(name).ok_or_else(|| ConvertError::Missing {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// A variable's bytes. Their size was checked against the file when it was opened.
    pub fn data(&mut self, var: &Variable) -> Result<Vec<u8>, ConvertError> {
        let mut buf = vec![0u8; var.bytes as usize];
        let read = self
            .reader
            .seek(SeekFrom::Start(var.offset))
            .and_then(|_| self.reader.read_exact(&mut buf));
        read.map_err(|source| ConvertError::Io {
            path: self.path.clone(),
            action: "cannot read",
            source,
        })?;
        Ok(buf)
    }

    /// An integer scalar such as `encoder/num_heads`.
    pub fn scalar(&mut self, name: &str) -> Result<i64, ConvertError> {
        let var = self.need(name)?.clone();
        let path = self.path.clone();
        let bad = |reason: String| ConvertError::BadVariable {
            path: path.clone(),
            name: name.to_string(),
            reason,
        };
        if !var.shape.is_empty() {
            return Err(bad(format!("shape {:?}, a scalar was expected", var.shape)));
        }
        let b = self.data(&var)?;
        Ok(match var.dtype {
            DType::I8 => i64::from(b[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => return Err(bad(format!("{}, an integer was expected", other.as_str()))),
        })
    }
}

/// Reads the header, counting the position and knowing the length, so every read and skip
/// is checked against the bytes that are left.
struct Cursor<'p, R> {
    path: &'p Path,
    inner: R,
    pos: u64,
    len: u64,
}

impl<'p, R: Read + Seek> Cursor<'p, R> {
    fn new(path: &'p Path, mut inner: R) -> Result<Self, ConvertError> {
        let io_err = |source| ConvertError::Io {
            path: path.to_path_buf(),
            action: "cannot read",
            source,
        };
        let len = inner.seek(SeekFrom::End(0)).map_err(io_err)?;
        inner.seek(SeekFrom::Start(0)).map_err(io_err)?;
        Ok(Self {
            path,
            inner,
            pos: 0,
            len,
        })
    }

    fn malformed(&self, offset: u64, what: &str, reason: String) -> ConvertError {
        ConvertError::Malformed {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset,
            reason,
        }
    }

    fn truncated(&self, what: &str) -> ConvertError {
        ConvertError::Truncated {
            path: self.path.to_path_buf(),
            what: what.to_string(),
            offset: self.pos,
            len: self.len,
        }
    }

    fn fits(&self, n: u64, what: &str, reason: impl Fn() -> String) -> Result<(), ConvertError> {
        if n > self.len - self.pos {
            return Err(self.malformed(self.pos, what, reason()));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ConvertError> {
        if (N as u64) > self.len - self.pos {
            return Err(self.truncated(what));
        }
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.truncated(what),
            _ => ConvertError::Io {
                path: self.path.to_path_buf(),
                action: "cannot read",
                source: e,
            },
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(self.bytes::<1>(what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    /// A string; at most 65,535 bytes by construction (its length is a u16).
    fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let at = self.pos;
        let n = u64::from(u16::from_le_bytes(self.bytes::<2>(what)?));
        if n == 0 {
            return Err(self.malformed(at, what, "a string of length 0 (no NUL)".into()));
        }
        if n > self.len - self.pos {
            return Err(self.truncated(what));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|_| self.truncated(what))?;
        self.pos += n;
        if buf.pop() != Some(0) {
            return Err(self.malformed(at, what, "a string not ended by NUL".into()));
        }
        String::from_utf8(buf).map_err(|_| self.malformed(at, what, "not UTF-8".into()))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        if n > self.len - self.pos {
            return Err(self.truncated(what));
        }
        self.pos += n;
        self.inner
            .seek(SeekFrom::Start(self.pos))
            .map_err(|source| ConvertError::Io {
                path: self.path.to_path_buf(),
                action: "cannot read",
                source,
            })?;
        Ok(())
    }
}

//! The whole GGUF header: metadata (key → typed value) and the tensor list, as the GGUF
//! specification lays them out (little-endian; strings are a u64 length and UTF-8 bytes).
//!
//! The daemon reads it to plan a model it has no catalog entry for (layers, KV heads, head
//! size and parameters come from here, bytes per token from the tensor sizes) and the tests
//! read and rewrite it (a base model is a chat model without `tokenizer.chat_template`).
//! Every count and length is bounded before anything is allocated for it: the file may be
//! anything a user gave by path.

use std::io::Read;
use std::path::Path;

use super::{Header, parse_header};

/// A string longer than this is a damaged header (chat templates are a few KiB).
const MAX_STRING: u64 = 16 << 20;
/// An array longer than this is a damaged header (vocabularies are ≤ a few 100k).
const MAX_ARRAY: u64 = 1 << 24;
/// Tensor ranks llama.cpp knows.
const MAX_DIMS: u32 = 4;
/// Data start alignment when `general.alignment` is absent (the specification's default).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value, with its GGUF type kept so that a rewritten file is the same.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// The elements' type code and the elements.
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF type code.
    pub fn type_code(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// An integer value of any width, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor's entry: where its data is, relative to the start of the data section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<u64>,
    /// The ggml type code (0 F32, 1 F16, 2 Q4_0, 12 Q4_K, …).
    pub kind: u32,
    pub offset: u64,
}

impl Tensor {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A GGUF file's header, metadata and tensor list.
#[derive(Debug, Clone, PartialEq)]
pub struct Gguf {
    pub header: Header,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
    /// Where the tensor data starts in the file.
    pub data_offset: u64,
}

/// The shape facts a plan needs, from the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub architecture: String,
    pub layers: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub embedding: u32,
    pub parameters: u64,
}

/// Reads the header of the GGUF file at `path` (its size is `header.file_bytes`).
pub fn read_file(path: &Path) -> Result<Gguf, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let bytes = file.metadata().map_err(|e| e.to_string())?.len();
    read(&mut std::io::BufReader::new(file), bytes)
}

/// Reads the header from `r` (at the file's start); `file_bytes` is the file's size, which
/// bounds every offset.
pub fn read(r: &mut impl Read, file_bytes: u64) -> Result<Gguf, String> {
    let mut r = Counting { inner: r, read: 0 };
    let mut head = [0u8; 24];
    let got = read_up_to(&mut r, &mut head)?;
    let header = parse_header(&head[..got], file_bytes)?;
    let mut metadata = Vec::new();
    for i in 0..header.metadata_entries {
        let key = string(&mut r).map_err(|e| format!("metadata entry {i}: {e}"))?;
        let kind = u32_le(&mut r).map_err(|e| format!("metadata {key}: {e}"))?;
        let value = value(&mut r, kind, 0).map_err(|e| format!("metadata {key}: {e}"))?;
        metadata.push((key, value));
    }
    let mut tensors = Vec::new();
    for i in 0..header.tensors {
        let t = tensor(&mut r).map_err(|e| format!("tensor {i}: {e}"))?;
        tensors.push(t);
    }
    let alignment = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .and_then(|(_, v)| v.as_u64())
        .filter(|a| a.is_power_of_two())
        .unwrap_or(DEFAULT_ALIGNMENT);
    let data_offset = r.read.next_multiple_of(alignment);
    if data_offset > file_bytes {
        return Err(format!(
            "truncated: the header ends at byte {data_offset} of a {file_bytes}-byte file"
        ));
    }
    if let Some(t) = tensors.iter().find(|t| data_offset + t.offset > file_bytes) {
        return Err(format!(
            "truncated: tensor {} starts past the end of the file",
            t.name
        ));
    }
    Ok(Gguf {
        header,
        metadata,
        tensors,
        data_offset,
    })
}

impl Gguf {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.metadata.len();
        self.metadata.retain(|(k, _)| k != key);
        self.header.metadata_entries = self.metadata.len() as u64;
        self.metadata.len() != before
    }

    pub fn alignment(&self) -> u64 {
        self.get("general.alignment")
            .and_then(Value::as_u64)
            .filter(|a| a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Bytes of each tensor's data, in the tensor list's order: the distance to the next
    /// tensor's data (or the file's end), so no table of quantisation block sizes is needed.
    pub fn tensor_bytes(&self) -> Vec<u64> {
        let data_bytes = self.header.file_bytes.saturating_sub(self.data_offset);
        let mut starts: Vec<u64> = self.tensors.iter().map(|t| t.offset).collect();
        starts.sort_unstable();
        self.tensors
            .iter()
            .map(|t| {
                let next = starts
                    .iter()
                    .find(|&&s| s > t.offset)
                    .copied()
                    .unwrap_or(data_bytes);
                next.saturating_sub(t.offset)
            })
            .collect()
    }

    /// Bytes one decoded token reads from the weights: every tensor's data but the token
    /// embedding, of which a token reads one row, unless the model has no `output.weight`
    /// (its output projection is the embedding, read whole). What `file size` overstates by
    /// the embedding: ~6 % of a 7-8B Q4_K_M, ~20 % of a 0.5B with a 150k vocabulary.
    pub fn streamed_bytes(&self) -> u64 {
        let tied = self.tied_output();
        self.tensors
            .iter()
            .zip(self.tensor_bytes())
            .filter(|(t, _)| tied || t.name != "token_embd.weight")
            .map(|(_, b)| b)
            .sum()
    }

    /// The model has no `output.weight`: its token embedding is also its output projection.
    pub fn tied_output(&self) -> bool {
        !self.tensors.iter().any(|t| t.name == "output.weight")
    }

    /// The matrices decoding multiplies once per token: of the tensors
    /// [`Self::streamed_bytes`] counts, those of two or more dimensions.
    pub fn decode_matrices(&self) -> impl Iterator<Item = &Tensor> {
        let tied = self.tied_output();
        self.tensors
            .iter()
            .filter(move |t| tied || t.name != "token_embd.weight")
            .filter(|t| t.dims.len() >= 2)
    }

    /// Rows of [`Self::decode_matrices`]: each row is one dot product, with a fixed cost
    /// beside its bytes.
    pub fn matrix_rows(&self) -> u64 {
        self.decode_matrices()
            .map(|t| t.elements() / t.dims[0].max(1))
            .sum()
    }

    /// The model's shape from `<architecture>.*` keys; None when a key a plan needs is missing.
    pub fn shape(&self) -> Option<Shape> {
        let arch = self.get("general.architecture")?.as_str()?.to_string();
        let num = |k: &str| {
            self.get(&format!("{arch}.{k}"))
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let layers = num("block_count")?;
        let embedding = num("embedding_length")?;
        let heads = num("attention.head_count").filter(|h| *h > 0)?;
        let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
        let head_dim = num("attention.key_length").unwrap_or(embedding / heads);
        Some(Shape {
            architecture: arch,
            layers,
            heads,
            kv_heads,
            head_dim,
            embedding,
            parameters: self.tensors.iter().map(Tensor::elements).sum(),
        })
    }
}

/// Counts the bytes read, so the data section's start is known.
struct Counting<'a, R: Read> {
    inner: &'a mut R,
    read: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    Ok(got)
}

fn exact<const N: usize>(r: &mut impl Read) -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    if read_up_to(r, &mut b)? < N {
        return Err("truncated: the header ends early".into());
    }
    Ok(b)
}

fn u32_le(r: &mut impl Read) -> Result<u32, String> {
    Ok(u32::from_le_bytes(exact(r)?))
}

fn u64_le(r: &mut impl Read) -> Result<u64, String> {
    Ok(u64::from_le_bytes(exact(r)?))
}

fn string(r: &mut impl Read) -> Result<String, String> {
    let len = u64_le(r)?;
    if len > MAX_STRING {
        return Err(format!("a string of {len} bytes: damaged header"));
    }
    let mut b = Vec::new();
    r.take(len)
        .read_to_end(&mut b)
        .map_err(|e| format!("cannot read: {e}"))?;
    if b.len() as u64 != len {
        return Err("truncated: the header ends early".into());
    }
    String::from_utf8(b).map_err(|_| "a string that is not UTF-8".into())
}

fn value(r: &mut impl Read, kind: u32, depth: u8) -> Result<Value, String> {
    Ok(match kind {
        0 => Value::U8(u8::from_le_bytes(exact(r)?)),
        1 => Value::I8(i8::from_le_bytes(exact(r)?)),
        2 => Value::U16(u16::from_le_bytes(exact(r)?)),
        3 => Value::I16(i16::from_le_bytes(exact(r)?)),
        4 => Value::U32(u32_le(r)?),
        5 => Value::I32(i32::from_le_bytes(exact(r)?)),
        6 => Value::F32(f32::from_le_bytes(exact(r)?)),
        7 => Value::Bool(u8::from_le_bytes(exact(r)?) != 0),
        8 => Value::Str(string(r)?),
        9 => {
            if depth > 0 {
                return Err("nested arrays are not supported".into());
            }
            let inner = u32_le(r)?;
            let count = u64_le(r)?;
            if count > MAX_ARRAY {
                return Err(format!("an array of {count} elements: damaged header"));
            }
            let mut items = Vec::new();
            for _ in 0..count {
                items.push(value(r, inner, depth + 1)?);
            }
            Value::Array(inner, items)
        }
        10 => Value::U64(u64_le(r)?),
        11 => Value::I64(i64::from_le_bytes(exact(r)?)),
        12 => Value::F64(f64::from_le_bytes(exact(r)?)),
        other => return Err(format!("unknown value type {other}")),
    })
}

fn tensor(r: &mut impl Read) -> Result<Tensor, String> {
    let name = string(r)?;
    let n_dims = u32_le(r)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(format!("{name}: {n_dims} dimensions"));
    }
    let mut dims = Vec::new();
    for _ in 0..n_dims {
        dims.push(u64_le(r)?);
    }
    if dims
        .iter()
        .try_fold(1u64, |acc, d| acc.checked_mul(*d))
        .is_none()
    {
        return Err(format!("{name}: dimensions {dims:?} overflow"));
    }
    let kind = u32_le(r)?;
    let offset = u64_le(r)?;
    Ok(Tensor {
        name,
        dims,
        kind,
        offset,
    })
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;

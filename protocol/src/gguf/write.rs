//! Writes a GGUF header (the inverse of [`super::meta::read`]) and copies a model with its
//! metadata edited: how the tests make a base model (no chat template) from a chat model, and
//! small models of a chosen shape for the planner's tests.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::meta::{Gguf, Tensor, Value};

/// The header, metadata and tensor list, padded to the data section's alignment.
pub fn header_bytes(g: &Gguf) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&g.header.version.to_le_bytes());
    out.extend_from_slice(&(g.tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(g.metadata.len() as u64).to_le_bytes());
    for (k, v) in &g.metadata {
        string(&mut out, k);
        out.extend_from_slice(&v.type_code().to_le_bytes());
        value(&mut out, v);
    }
    for t in &g.tensors {
        tensor(&mut out, t);
    }
    let aligned = (out.len() as u64).next_multiple_of(g.alignment());
    out.resize(aligned as usize, 0);
    out
}

/// Copies the GGUF at `src` to `dst` with its metadata changed by `edit` (the tensor data is
/// copied as it is). Returns the new file's header.
pub fn copy_with(src: &Path, dst: &Path, edit: impl FnOnce(&mut Gguf)) -> io::Result<Gguf> {
    let mut from = std::fs::File::open(src)?;
    let len = from.metadata()?.len();
    let mut g = super::meta::read(&mut io::BufReader::new(&mut from), len)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let old_data = g.data_offset;
    edit(&mut g);
    let head = header_bytes(&g);
    let mut to = io::BufWriter::new(std::fs::File::create(dst)?);
    to.write_all(&head)?;
    from.seek(SeekFrom::Start(old_data))?;
    io::copy(&mut from.take(len - old_data), &mut to)?;
    to.flush()?;
    g.data_offset = head.len() as u64;
    g.header.file_bytes = head.len() as u64 + (len - old_data);
    g.header.metadata_entries = g.metadata.len() as u64;
    Ok(g)
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::Str(s) => string(out, s),
        Value::Array(kind, items) => {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                value(out, i);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn tensor(out: &mut Vec<u8>, t: &Tensor) {
    string(out, &t.name);
    out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
    for d in &t.dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&t.kind.to_le_bytes());
    out.extend_from_slice(&t.offset.to_le_bytes());
}

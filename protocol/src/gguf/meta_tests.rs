use super::*;
use crate::gguf::write::header_bytes;

/// A two-layer llama of 8 heads (2 for K/V) of 16, with two tensors of known sizes.
fn small() -> Gguf {
    let meta = vec![
        (
            "general.architecture".to_string(),
            Value::Str("llama".into()),
        ),
        ("llama.block_count".to_string(), Value::U32(2)),
        ("llama.embedding_length".to_string(), Value::U32(128)),
        ("llama.attention.head_count".to_string(), Value::U32(8)),
        ("llama.attention.head_count_kv".to_string(), Value::U32(2)),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(8, vec![Value::Str("a".into()), Value::Str("é".into())]),
        ),
        (
            "tokenizer.chat_template".to_string(),
            Value::Str("{{ messages }}".into()),
        ),
    ];
    let tensors = vec![
        Tensor {
            name: "token_embd.weight".into(),
            dims: vec![128, 2],
            kind: 0,
            offset: 0,
        },
        Tensor {
            name: "output.weight".into(),
            dims: vec![128, 4],
            kind: 1,
            offset: 1024,
        },
    ];
    Gguf {
        header: Header {
            version: 3,
            tensors: 2,
            metadata_entries: meta.len() as u64,
            file_bytes: 0,
        },
        metadata: meta,
        tensors,
        data_offset: 0,
    }
}

/// The file: header, then 1024 + 1024 bytes of data.
fn file(g: &Gguf) -> Vec<u8> {
    let mut f = header_bytes(g);
    f.resize(f.len() + 2048, 7);
    f
}

#[test]
fn reads_what_was_written() {
    let f = file(&small());
    let g = read(&mut f.as_slice(), f.len() as u64).unwrap();
    assert_eq!(g.data_offset % 32, 0);
    assert_eq!(g.data_offset + 2048, f.len() as u64);
    assert_eq!(g.metadata, small().metadata);
    assert_eq!(g.tensors, small().tensors);
    assert_eq!(g.tensor_bytes(), vec![1024, 1024]);
    assert_eq!(
        g.shape().unwrap(),
        Shape {
            architecture: "llama".into(),
            layers: 2,
            heads: 8,
            kv_heads: 2,
            head_dim: 16,
            embedding: 128,
            parameters: 128 * 2 + 128 * 4,
        }
    );
}

#[test]
fn a_key_removed_is_gone_and_the_rest_is_intact() {
    let mut g = small();
    assert!(g.remove("tokenizer.chat_template"));
    assert!(!g.remove("tokenizer.chat_template"));
    let f = file(&g);
    let back = read(&mut f.as_slice(), f.len() as u64).unwrap();
    assert_eq!(back.get("tokenizer.chat_template"), None);
    assert_eq!(back.metadata.len(), 6);
    assert_eq!(back.get("llama.block_count"), Some(&Value::U32(2)));
}

#[test]
fn damage_is_named_not_allocated() {
    let f = file(&small());
    // Cut inside the metadata.
    let err = read(&mut &f[..60], f.len() as u64).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
    // A string length of 2^40.
    let mut bad = f.clone();
    bad[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = read(&mut bad.as_slice(), bad.len() as u64).unwrap_err();
    assert_eq!(
        err,
        "metadata entry 0: a string of 1099511627776 bytes: damaged header"
    );
    // The tensor data past the end of the file.
    let g = small();
    let head = header_bytes(&g);
    let err = read(&mut head.as_slice(), head.len() as u64 + 100).unwrap_err();
    assert_eq!(
        err,
        "truncated: tensor output.weight starts past the end of the file"
    );
}

#[test]
fn shape_needs_the_architecture_keys() {
    let mut g = small();
    g.remove("llama.block_count");
    assert_eq!(g.shape(), None);
}

#[test]
fn a_token_streams_every_tensor_but_the_embedding_unless_it_is_the_output_too() {
    // Untied (output.weight present): only output.weight's 1024 bytes.
    let f = file(&small());
    let g = read(&mut f.as_slice(), f.len() as u64).unwrap();
    assert_eq!(g.streamed_bytes(), 1024);
    // And one matrix × vector of 4 rows (output.weight is 128 × 4).
    assert_eq!(g.matrix_rows(), 4);
    // Tied: without output.weight the embedding is the output projection, read whole; here a
    // layer tensor of 1024 bytes follows it.
    let mut tied = small();
    tied.tensors[1].name = "blk.0.attn_q.weight".into();
    let f = file(&tied);
    let g = read(&mut f.as_slice(), f.len() as u64).unwrap();
    assert_eq!(g.streamed_bytes(), 2048);
    // The embedding's 2 rows (the vocabulary) and the layer's 4.
    assert_eq!(g.matrix_rows(), 6);
}

//! The converter on small synthetic CTranslate2 files: a whole tiny Whisper, then damaged
//! ones, each of which must give a named error and never a panic.

use std::io::Cursor;
use std::path::Path;

use super::ct2::Ct2Model;
use super::vocab::Vocabulary;
use super::*;

/// A CTranslate2 model.bin being built: variables (name, shape, dtype id, bytes), aliases.
struct Ct2 {
    version: u32,
    spec: String,
    vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
    aliases: Vec<(String, String)>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

impl Ct2 {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.version.to_le_bytes());
        string(&mut out, &self.spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for (name, shape, dtype, data) in &self.vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, b) in &self.aliases {
            string(&mut out, a);
            string(&mut out, b);
        }
        out
    }

    fn set(&mut self, name: &str, shape: Vec<u32>, dtype: u8, data: Vec<u8>) {
        self.vars.retain(|v| v.0 != name);
        self.vars.push((name.into(), shape, dtype, data));
    }
}

const N: u32 = 4; // width of both stacks
const MELS: u32 = 2;
const VOCAB: u32 = 5;

/// f16 values numbered from `start`, so that every element of every tensor is distinct
/// enough to tell a split from a copy.
fn f16s(count: u32, start: u32) -> Vec<u8> {
    (0..count)
        .flat_map(|i| f16::f32_to_f16((start + i) as f32 / 64.0).to_le_bytes())
        .collect()
}

/// A tiny but complete Whisper: widths 4, 2 heads, one block each side, 2 mels.
fn tiny() -> Ct2 {
    let mut m = Ct2 {
        version: 6,
        spec: "WhisperSpec".into(),
        vars: Vec::new(),
        aliases: Vec::new(),
    };
    let mut k = 0u32;
    let mut f = |m: &mut Ct2, name: &str, shape: Vec<u32>| {
        let n: u32 = shape.iter().product();
        m.set(name, shape, 4, f16s(n, k));
        k += n;
    };
    f(&mut m, "encoder/conv1/weight", vec![N, MELS, 3]);
    f(&mut m, "encoder/conv1/bias", vec![N]);
    f(&mut m, "encoder/conv2/weight", vec![N, N, 3]);
    f(&mut m, "encoder/conv2/bias", vec![N]);
    f(&mut m, "encoder/position_encodings/encodings", vec![6, N]);
    f(&mut m, "encoder/layer_norm/gamma", vec![N]);
    f(&mut m, "encoder/layer_norm/beta", vec![N]);
    f(&mut m, "decoder/embeddings/weight", vec![VOCAB, N]);
    f(&mut m, "decoder/position_encodings/encodings", vec![3, N]);
    f(&mut m, "decoder/layer_norm/gamma", vec![N]);
    f(&mut m, "decoder/layer_norm/beta", vec![N]);
    for side in ["encoder", "decoder"] {
        let l = format!("{side}/layer_0");
        for ln in ["self_attention", "ffn"] {
            f(&mut m, &format!("{l}/{ln}/layer_norm/gamma"), vec![N]);
            f(&mut m, &format!("{l}/{ln}/layer_norm/beta"), vec![N]);
        }
        f(
            &mut m,
            &format!("{l}/self_attention/linear_0/weight"),
            vec![3 * N, N],
        );
        f(
            &mut m,
            &format!("{l}/self_attention/linear_0/bias"),
            vec![3 * N],
        );
        f(
            &mut m,
            &format!("{l}/self_attention/linear_1/weight"),
            vec![N, N],
        );
        f(
            &mut m,
            &format!("{l}/self_attention/linear_1/bias"),
            vec![N],
        );
        f(&mut m, &format!("{l}/ffn/linear_0/weight"), vec![4 * N, N]);
        f(&mut m, &format!("{l}/ffn/linear_0/bias"), vec![4 * N]);
        f(&mut m, &format!("{l}/ffn/linear_1/weight"), vec![N, 4 * N]);
        f(&mut m, &format!("{l}/ffn/linear_1/bias"), vec![N]);
        m.set(
            &format!("{side}/num_heads"),
            vec![],
            2,
            2i16.to_le_bytes().to_vec(),
        );
    }
    let a = "decoder/layer_0/attention";
    f(&mut m, &format!("{a}/layer_norm/gamma"), vec![N]);
    f(&mut m, &format!("{a}/layer_norm/beta"), vec![N]);
    f(&mut m, &format!("{a}/linear_0/weight"), vec![N, N]);
    f(&mut m, &format!("{a}/linear_0/bias"), vec![N]);
    f(&mut m, &format!("{a}/linear_1/weight"), vec![2 * N, N]);
    f(&mut m, &format!("{a}/linear_1/bias"), vec![2 * N]);
    f(&mut m, &format!("{a}/linear_2/weight"), vec![N, N]);
    f(&mut m, &format!("{a}/linear_2/bias"), vec![N]);
    // Whisper's keys have no bias: CTranslate2 stores zeros there.
    for (name, from) in [
        ("encoder/layer_0/self_attention/linear_0/bias", N),
        ("decoder/layer_0/self_attention/linear_0/bias", N),
        ("decoder/layer_0/attention/linear_1/bias", 0),
    ] {
        let v = m.vars.iter_mut().find(|v| v.0 == name).unwrap();
        v.3[from as usize * 2..(from + N) as usize * 2].fill(0);
    }
    m.set("decoder/scale_embeddings", vec![], 1, vec![0]);
    m.aliases.push((
        "decoder/projection/weight".into(),
        "decoder/embeddings/weight".into(),
    ));
    m
}

fn vocab() -> Vocabulary {
    vocab::parse(
        Path::new("vocabulary.txt"),
        "a\nĠb\nc\n<|endoftext|>\n<|en|>\n",
    )
    .unwrap()
}

fn convert_bytes(bytes: Vec<u8>, vocab: &Vocabulary) -> Result<(Written, Vec<u8>), ConvertError> {
    let mut m = Ct2Model::read(Path::new("model.bin"), Cursor::new(bytes))?;
    let mut out = Vec::new();
    let w = ggml::write(&mut m, vocab, &mut out, Path::new("out.bin"))?;
    Ok((w, out))
}

/// Reads a ggml file back: hparams, mel shape, tokens, and each tensor's (name, type,
/// dims innermost first, data).
struct Ggml {
    hparams: Vec<u32>,
    mel: (u32, u32),
    tokens: Vec<Vec<u8>>,
    tensors: Vec<(String, u32, Vec<u32>, Vec<u8>)>,
}

fn read_ggml(b: &[u8]) -> Ggml {
    let mut p = 0usize;
    let mut u = || {
        let v = u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
        p += 4;
        v
    };
    assert_eq!(u(), 0x6767_6d6c);
    let hparams: Vec<u32> = (0..11).map(|_| u()).collect();
    let mel = (u(), u());
    let mut p2 = 4 * 14 + 4 * (mel.0 * mel.1) as usize;
    let u = |p: &mut usize| {
        let v = u32::from_le_bytes(b[*p..*p + 4].try_into().unwrap());
        *p += 4;
        v
    };
    let n = u(&mut p2);
    let mut tokens = Vec::new();
    for _ in 0..n {
        let len = u(&mut p2) as usize;
        tokens.push(b[p2..p2 + len].to_vec());
        p2 += len;
    }
    let mut tensors = Vec::new();
    while p2 < b.len() {
        let dims = u(&mut p2);
        let name_len = u(&mut p2) as usize;
        let ty = u(&mut p2);
        let ne: Vec<u32> = (0..dims).map(|_| u(&mut p2)).collect();
        let name = String::from_utf8(b[p2..p2 + name_len].to_vec()).unwrap();
        p2 += name_len;
        let bytes = ne.iter().product::<u32>() as usize * if ty == 0 { 4 } else { 2 };
        tensors.push((name, ty, ne, b[p2..p2 + bytes].to_vec()));
        p2 += bytes;
    }
    Ggml {
        hparams,
        mel,
        tokens,
        tensors,
    }
}

fn var_data(m: &Ct2, name: &str) -> Vec<u8> {
    m.vars.iter().find(|v| v.0 == name).unwrap().3.clone()
}

#[test]
fn a_tiny_whisper_converts_to_whisper_cpps_layout() {
    let m = tiny();
    let (w, out) = convert_bytes(m.bytes(), &vocab()).unwrap();
    assert_eq!(w.bytes, out.len() as u64);
    let g = read_ggml(&out);
    // n_vocab, audio ctx/state/head/layer, text ctx/state/head/layer, mels, f16
    assert_eq!(g.hparams, [5, 6, 4, 2, 1, 3, 4, 2, 1, 2, 1]);
    assert_eq!(g.mel, (2, 201));
    assert_eq!(g.tokens, [b"a".to_vec(), b" b".to_vec(), b"c".to_vec()]);
    assert_eq!(g.tensors.len(), w.tensors);
    // Encoder: positions, 2 convs (weight, bias), 15 per block, final norm; decoder:
    // positions, token embedding, 24 per block (with cross-attention), final norm.
    assert_eq!(w.tensors, 5 + 15 + 2 + 2 + 24 + 2);
    let t = |name: &str| {
        g.tensors
            .iter()
            .find(|t| t.0 == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    // The key bias is dropped; the rest of a fused projection is split by rows.
    assert!(g.tensors.iter().all(|t| !t.0.contains("key.bias")));
    let qkv = var_data(&m, "encoder/layer_0/self_attention/linear_0/weight");
    let rows = (N * N * 2) as usize;
    assert_eq!(t("encoder.blocks.0.attn.query.weight").3, qkv[..rows]);
    assert_eq!(t("encoder.blocks.0.attn.key.weight").3, qkv[rows..2 * rows]);
    assert_eq!(t("encoder.blocks.0.attn.value.weight").3, qkv[2 * rows..]);
    let kv = var_data(&m, "decoder/layer_0/attention/linear_1/weight");
    assert_eq!(t("decoder.blocks.0.cross_attn.value.weight").3, kv[rows..]);
    // f16 matrices are copied; 1-D tensors, conv biases, positions widened to f32.
    let weight = t("encoder.conv1.weight");
    assert_eq!((weight.1, weight.2.clone()), (1, vec![3, MELS, N]));
    let bias = t("encoder.conv1.bias");
    assert_eq!((bias.1, bias.2.clone()), (0, vec![1, N]));
    let src = var_data(&m, "encoder/conv1/bias");
    let widened: Vec<u8> = src
        .chunks(2)
        .flat_map(|h| f16::f16_to_f32(u16::from_le_bytes([h[0], h[1]])).to_le_bytes())
        .collect();
    assert_eq!(bias.3, widened);
    assert_eq!(t("decoder.positional_embedding").1, 0);
    assert_eq!(t("decoder.ln.bias").1, 0);
    assert_eq!(t("decoder.token_embedding.weight").2, [N, VOCAB]);
    let vbias = t("decoder.blocks.0.attn.value.bias");
    assert_eq!((vbias.1, vbias.2.clone()), (0, vec![N]));
    // The same input gives the same bytes.
    assert_eq!(convert_bytes(m.bytes(), &vocab()).unwrap().1, out);
}

#[test]
fn float32_weights_are_rounded_to_f16() {
    let mut m = tiny();
    let w: Vec<u8> = (0..N * N)
        .flat_map(|i| (i as f32 / 3.0).to_le_bytes())
        .collect();
    m.set(
        "decoder/layer_0/attention/linear_0/weight",
        vec![N, N],
        0,
        w,
    );
    let (_, out) = convert_bytes(m.bytes(), &vocab()).unwrap();
    let g = read_ggml(&out);
    let q = g
        .tensors
        .iter()
        .find(|t| t.0 == "decoder.blocks.0.cross_attn.query.weight")
        .unwrap();
    assert_eq!(q.1, 1);
    assert_eq!(q.3[2..4], f16::f32_to_f16(1.0 / 3.0).to_le_bytes());
}

fn err(m: &Ct2) -> String {
    convert_bytes(m.bytes(), &vocab()).unwrap_err().to_string()
}

#[test]
fn a_file_that_is_not_ct2_names_its_first_bytes() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&[0; 64]);
    let e = convert_bytes(bytes, &vocab()).unwrap_err();
    assert!(
        matches!(
            e,
            ConvertError::NotCt2 {
                version: 0x4655_4747,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("model.bin: not a CTranslate2 model.bin"),
        "{e}"
    );
    let e = convert_bytes(Vec::new(), &vocab()).unwrap_err();
    assert!(matches!(e, ConvertError::Truncated { .. }), "{e}");
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let full = tiny().bytes();
    for len in 0..full.len() {
        let e = convert_bytes(full[..len].to_vec(), &vocab());
        assert!(e.is_err(), "{len} bytes converted");
    }
    let e = convert_bytes(full[..full.len() - 1].to_vec(), &vocab()).unwrap_err();
    assert!(
        e.to_string().contains("model.bin: truncated: alias #1"),
        "{e}"
    );
}

#[test]
fn absurd_counts_and_shapes_are_refused_before_allocating() {
    let mut bytes = tiny().bytes();
    // The variable count follows version (4), spec name (2 + 12), revision (4).
    bytes[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = convert_bytes(bytes, &vocab()).unwrap_err().to_string();
    assert!(e.contains("4294967295 variables cannot fit"), "{e}");

    let mut m = tiny();
    m.set("encoder/conv1/bias", vec![u32::MAX; 4], 4, vec![0; 8]);
    let e = err(&m);
    assert!(e.contains("variable `encoder/conv1/bias`"), "{e}");
    assert!(e.contains("does not take 8 bytes"), "{e}");

    let mut m = tiny();
    m.set("encoder/conv1/bias", vec![1; 9], 4, vec![0; 2]);
    assert!(err(&m).contains("rank 9 (at most 4)"), "{}", err(&m));

    let mut m = tiny();
    m.set("encoder/conv1/bias", vec![N], 9, vec![0; 8]);
    assert!(err(&m).contains("unknown dtype id 9"), "{}", err(&m));

    // Sizes the file can hold but a Whisper cannot have.
    let mut m = tiny();
    m.set(
        "decoder/position_encodings/encodings",
        vec![100_000, N],
        4,
        vec![0; 800_000],
    );
    let e = err(&m);
    assert!(e.contains("decoder/position_encodings/encodings"), "{e}");
    assert!(e.contains("a size of 100000"), "{e}");

    let mut m = tiny();
    m.set("encoder/num_heads", vec![], 2, 3i16.to_le_bytes().to_vec());
    assert!(err(&m).contains("do not divide"), "{}", err(&m));
}

#[test]
fn wrong_models_name_what_is_wrong() {
    let mut m = tiny();
    m.spec = "TransformerSpec".into();
    assert!(err(&m).contains("a CTranslate2 `TransformerSpec` model, not a Whisper"));

    let mut m = tiny();
    m.vars
        .retain(|v| v.0 != "decoder/layer_0/attention/linear_2/bias");
    assert_eq!(
        err(&m),
        "model.bin: no variable `decoder/layer_0/attention/linear_2/bias`: not a complete \
         faster-whisper model"
    );

    let mut m = tiny();
    m.set(
        "encoder/layer_0/ffn/linear_1/weight",
        vec![N, N],
        4,
        f16s(N * N, 0),
    );
    assert!(
        err(&m).contains("shape [4, 4], expected [4, 16]"),
        "{}",
        err(&m)
    );

    let mut m = tiny();
    m.set(
        "decoder/layer_0/ffn/linear_1/weight",
        vec![N, 4 * N],
        1,
        vec![0; 64],
    );
    assert!(
        err(&m).contains("int8 weights: a quantized model"),
        "{}",
        err(&m)
    );

    let mut m = tiny();
    let v = m
        .vars
        .iter_mut()
        .find(|v| v.0 == "encoder/layer_0/self_attention/linear_0/bias");
    // A negative zero is a zero; a one is not.
    v.unwrap().3[2 * N as usize + 1] = 0x80;
    assert!(convert_bytes(m.bytes(), &vocab()).is_ok());
    let v = m
        .vars
        .iter_mut()
        .find(|v| v.0 == "encoder/layer_0/self_attention/linear_0/bias");
    v.unwrap().3[2 * N as usize + 1] = 0x3c;
    let err_key = err(&m);
    assert!(err_key.contains("non-zero bias"), "{err_key}");
    assert!(
        err_key.contains("encoder/layer_0/self_attention/linear_0/bias"),
        "{err_key}"
    );

    let mut m = tiny();
    m.version = 3;
    assert!(err(&m).contains("binary version 3 (this reader knows 4 to 6)"));

    let mut m = tiny();
    m.aliases.push(("x".into(), "nothing".into()));
    assert!(err(&m).contains("`x` names `nothing`, which is not a variable"));

    let m = tiny();
    let small = vocab::parse(Path::new("v"), "a\n<|endoftext|>\n").unwrap();
    let e = convert_bytes(m.bytes(), &small).unwrap_err().to_string();
    assert!(
        e.contains("the vocabulary has 2 tokens, the model's embeddings 5"),
        "{e}"
    );
}

#[test]
fn flipped_bytes_never_panic() {
    let full = tiny().bytes();
    // A fixed xorshift, so a failure can be replayed.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut b = full.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        let _ = convert_bytes(b, &vocab());
    }
}

#[test]
fn files_on_disk_convert_and_a_failure_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (model, voc, out) = (
        dir.path().join("model.bin"),
        dir.path().join("vocabulary.txt"),
        dir.path().join("ggml.bin"),
    );
    std::fs::write(&model, tiny().bytes()).unwrap();
    std::fs::write(&voc, "a\nĠb\nc\n<|endoftext|>\n<|en|>\n").unwrap();
    let w = convert_files(&model, &voc, &out).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), w.bytes);
    std::fs::write(&voc, "a\n<|endoftext|>\n").unwrap();
    let e = convert_files(&model, &voc, &out).unwrap_err();
    assert!(matches!(e, ConvertError::Mismatch { .. }), "{e}");
    assert!(!out.exists());
    std::fs::write(&voc, b"a\n\xff\n").unwrap();
    let e = convert_files(&model, &voc, &out).unwrap_err().to_string();
    assert!(e.ends_with("vocabulary.txt: line 2: not UTF-8"), "{e}");
}

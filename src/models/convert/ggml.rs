//! whisper.cpp's model file, written from a CTranslate2 Whisper model.
//!
//! The layout is that of whisper.cpp's `models/convert-pt-to-ggml.py`, all little-endian
//! i32 unless said: magic `ggml`; hparams (n_vocab, n_audio_ctx, n_audio_state,
//! n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer,
//! n_mels, ftype = 1 for f16); the mel filterbank (n_mels, n_fft bins, f32 weights); the
//! vocabulary (count, then length + bytes per token); then every tensor: n_dims, name
//! length, type (0 f32, 1 f16), dimensions innermost first, name, data. The tensors carry
//! openai-whisper's PyTorch names. 1-D tensors, the conv biases (written as `[n, 1]`) and
//! the positional embeddings are f32, the rest f16, which is what whisper.cpp expects of an
//! f16 model.
//!
//! CTranslate2 fuses attention projections: self-attention's `linear_0` is query, key and
//! value stacked by rows, cross-attention's `linear_1` key and value. They are split back
//! here. Whisper's key projection has no bias; CTranslate2 stores zeros for it, which are
//! dropped (whisper.cpp has no tensor for them).

use std::io::{Read, Seek, Write};

use super::ConvertError;
use super::ct2::{Ct2Model, DType};
use super::f16::{bf16_to_f32, f16_to_f32, f32_to_f16};
use super::mel;
use super::vocab::Vocabulary;

const MAGIC: u32 = 0x6767_6d6c;
/// Bounds for the sizes read from a model; far above any Whisper model, they only stop a
/// damaged file from describing absurd work.
const MAX_LAYERS: u64 = 64;
const MAX_STATE: u64 = 1 << 14;
const MAX_CTX: u64 = 1 << 14;

/// The model's sizes, in whisper.cpp's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: u64,
    pub n_audio_ctx: u64,
    pub n_audio_state: u64,
    pub n_audio_head: u64,
    pub n_audio_layer: u64,
    pub n_text_ctx: u64,
    pub n_text_state: u64,
    pub n_text_head: u64,
    pub n_text_layer: u64,
    pub n_mels: u64,
}

/// How a ggml tensor is made from a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    All,
    /// Part `index` of `of` equal parts, stacked by rows, of a fused projection.
    Rows {
        index: u64,
        of: u64,
    },
}

struct Tensor {
    name: String,
    source: String,
    take: Take,
    /// The shape written, outermost first (as PyTorch shows it).
    shape: Vec<u64>,
    f32: bool,
}

/// Reads the sizes from the variables, checking each against the others.
pub fn hparams<R: Read + Seek>(m: &mut Ct2Model<R>) -> Result<Hparams, ConvertError> {
    if m.spec != "WhisperSpec" {
        return Err(ConvertError::NotWhisper {
            path: m.path.clone(),
            spec: m.spec.clone(),
        });
    }
    let dims = |m: &Ct2Model<R>, name: &str, rank: usize| -> Result<Vec<u64>, ConvertError> {
        let v = m.need(name)?;
        if v.shape.len() != rank {
            return Err(bad(
                m,
                name,
                format!("shape {:?}, rank {rank} expected", v.shape),
            ));
        }
        Ok(v.shape.clone())
    };
    let conv1 = dims(m, "encoder/conv1/weight", 3)?;
    let enc_pos = dims(m, "encoder/position_encodings/encodings", 2)?;
    let dec_pos = dims(m, "decoder/position_encodings/encodings", 2)?;
    let emb = dims(m, "decoder/embeddings/weight", 2)?;
    let layers = |m: &Ct2Model<R>, side: &str| {
        (0..=MAX_LAYERS)
            .take_while(|i| {
                m.get(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
                    .is_some()
            })
            .count() as u64
    };
    let heads = |m: &mut Ct2Model<R>, name: &str| -> Result<u64, ConvertError> {
        let n = m.scalar(name)?;
        u64::try_from(n)
            .ok()
            .filter(|&n| (1..=256).contains(&n))
            .ok_or_else(|| bad(m, name, format!("{n} heads")))
    };
    let h = Hparams {
        n_vocab: emb[0],
        n_audio_ctx: enc_pos[0],
        n_audio_state: enc_pos[1],
        n_audio_head: heads(m, "encoder/num_heads")?,
        n_audio_layer: layers(m, "encoder"),
        n_text_ctx: dec_pos[0],
        n_text_state: dec_pos[1],
        n_text_head: heads(m, "decoder/num_heads")?,
        n_text_layer: layers(m, "decoder"),
        n_mels: conv1[1],
    };
    let checks = [
        (
            "encoder/layer_0/ffn/linear_0/weight",
            h.n_audio_layer,
            1,
            MAX_LAYERS,
        ),
        (
            "decoder/layer_0/ffn/linear_0/weight",
            h.n_text_layer,
            1,
            MAX_LAYERS,
        ),
        (
            "encoder/position_encodings/encodings",
            h.n_audio_ctx,
            1,
            MAX_CTX,
        ),
        (
            "encoder/position_encodings/encodings",
            h.n_audio_state,
            1,
            MAX_STATE,
        ),
        (
            "decoder/position_encodings/encodings",
            h.n_text_ctx,
            1,
            MAX_CTX,
        ),
        (
            "decoder/position_encodings/encodings",
            h.n_text_state,
            1,
            MAX_STATE,
        ),
        ("decoder/embeddings/weight", h.n_vocab, 1, 1 << 20),
        ("encoder/conv1/weight", h.n_mels, 1, 512),
    ];
    for (name, value, lo, hi) in checks {
        if !(lo..=hi).contains(&value) {
            let what = if name.contains("layer_0") {
                format!("{value} layers (missing or more than {hi})")
            } else {
                format!("a size of {value} (expected {lo} to {hi})")
            };
            return Err(bad(m, name, what));
        }
    }
    if !h.n_audio_state.is_multiple_of(h.n_audio_head)
        || !h.n_text_state.is_multiple_of(h.n_text_head)
    {
        return Err(bad(
            m,
            "encoder/num_heads",
            format!(
                "{} and {} heads do not divide widths {} and {}",
                h.n_audio_head, h.n_text_head, h.n_audio_state, h.n_text_state
            ),
        ));
    }
    if emb[1] != h.n_text_state {
        return Err(bad(
            m,
            "decoder/embeddings/weight",
            format!("width {}, the decoder's is {}", emb[1], h.n_text_state),
        ));
    }
    Ok(h)
}

fn bad<R>(m: &Ct2Model<R>, name: &str, reason: String) -> ConvertError {
    ConvertError::BadVariable {
        path: m.path.clone(),
        name: name.to_string(),
        reason,
    }
}

/// Every tensor whisper.cpp loads, in openai-whisper's state-dict order.
fn plan(h: &Hparams) -> Vec<Tensor> {
    let mut t = Vec::new();
    let mut add = |name: String, source: String, take: Take, shape: Vec<u64>| {
        // What whisper.cpp creates as f32: 1-D tensors, conv biases, positional embeddings.
        let f32 = shape.len() < 2
            || name.ends_with("positional_embedding")
            || (name.contains(".conv") && name.ends_with(".bias"));
        t.push(Tensor {
            name,
            source,
            take,
            shape,
            f32,
        });
    };
    let (a, m) = (h.n_audio_state, h.n_mels);
    add(
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings".into(),
        Take::All,
        vec![h.n_audio_ctx, a],
    );
    add(
        "encoder.conv1.weight".into(),
        "encoder/conv1/weight".into(),
        Take::All,
        vec![a, m, 3],
    );
    add(
        "encoder.conv1.bias".into(),
        "encoder/conv1/bias".into(),
        Take::All,
        vec![a, 1],
    );
    add(
        "encoder.conv2.weight".into(),
        "encoder/conv2/weight".into(),
        Take::All,
        vec![a, a, 3],
    );
    add(
        "encoder.conv2.bias".into(),
        "encoder/conv2/bias".into(),
        Take::All,
        vec![a, 1],
    );
    for i in 0..h.n_audio_layer {
        let (to, from) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        block(&mut add, &to, &from, a, false);
    }
    add(
        "encoder.ln_post.weight".into(),
        "encoder/layer_norm/gamma".into(),
        Take::All,
        vec![a],
    );
    add(
        "encoder.ln_post.bias".into(),
        "encoder/layer_norm/beta".into(),
        Take::All,
        vec![a],
    );
    let d = h.n_text_state;
    add(
        "decoder.positional_embedding".into(),
        "decoder/position_encodings/encodings".into(),
        Take::All,
        vec![h.n_text_ctx, d],
    );
    add(
        "decoder.token_embedding.weight".into(),
        "decoder/embeddings/weight".into(),
        Take::All,
        vec![h.n_vocab, d],
    );
    for i in 0..h.n_text_layer {
        let (to, from) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        block(&mut add, &to, &from, d, true);
    }
    add(
        "decoder.ln.weight".into(),
        "decoder/layer_norm/gamma".into(),
        Take::All,
        vec![d],
    );
    add(
        "decoder.ln.bias".into(),
        "decoder/layer_norm/beta".into(),
        Take::All,
        vec![d],
    );
    t
}

/// One residual block: self-attention, cross-attention (decoder only), MLP.
fn block(
    add: &mut impl FnMut(String, String, Take, Vec<u64>),
    to: &str,
    from: &str,
    n: u64,
    cross: bool,
) {
    let qkv = |index| Take::Rows { index, of: 3 };
    let kv = |index| Take::Rows { index, of: 2 };
    let sa = format!("{from}/self_attention");
    add(
        format!("{to}.attn.query.weight"),
        format!("{sa}/linear_0/weight"),
        qkv(0),
        vec![n, n],
    );
    add(
        format!("{to}.attn.query.bias"),
        format!("{sa}/linear_0/bias"),
        qkv(0),
        vec![n],
    );
    add(
        format!("{to}.attn.key.weight"),
        format!("{sa}/linear_0/weight"),
        qkv(1),
        vec![n, n],
    );
    add(
        format!("{to}.attn.value.weight"),
        format!("{sa}/linear_0/weight"),
        qkv(2),
        vec![n, n],
    );
    add(
        format!("{to}.attn.value.bias"),
        format!("{sa}/linear_0/bias"),
        qkv(2),
        vec![n],
    );
    add(
        format!("{to}.attn.out.weight"),
        format!("{sa}/linear_1/weight"),
        Take::All,
        vec![n, n],
    );
    add(
        format!("{to}.attn.out.bias"),
        format!("{sa}/linear_1/bias"),
        Take::All,
        vec![n],
    );
    add(
        format!("{to}.attn_ln.weight"),
        format!("{sa}/layer_norm/gamma"),
        Take::All,
        vec![n],
    );
    add(
        format!("{to}.attn_ln.bias"),
        format!("{sa}/layer_norm/beta"),
        Take::All,
        vec![n],
    );
    if cross {
        let ca = format!("{from}/attention");
        add(
            format!("{to}.cross_attn.query.weight"),
            format!("{ca}/linear_0/weight"),
            Take::All,
            vec![n, n],
        );
        add(
            format!("{to}.cross_attn.query.bias"),
            format!("{ca}/linear_0/bias"),
            Take::All,
            vec![n],
        );
        add(
            format!("{to}.cross_attn.key.weight"),
            format!("{ca}/linear_1/weight"),
            kv(0),
            vec![n, n],
        );
        add(
            format!("{to}.cross_attn.value.weight"),
            format!("{ca}/linear_1/weight"),
            kv(1),
            vec![n, n],
        );
        add(
            format!("{to}.cross_attn.value.bias"),
            format!("{ca}/linear_1/bias"),
            kv(1),
            vec![n],
        );
        add(
            format!("{to}.cross_attn.out.weight"),
            format!("{ca}/linear_2/weight"),
            Take::All,
            vec![n, n],
        );
        add(
            format!("{to}.cross_attn.out.bias"),
            format!("{ca}/linear_2/bias"),
            Take::All,
            vec![n],
        );
        add(
            format!("{to}.cross_attn_ln.weight"),
            format!("{ca}/layer_norm/gamma"),
            Take::All,
            vec![n],
        );
        add(
            format!("{to}.cross_attn_ln.bias"),
            format!("{ca}/layer_norm/beta"),
            Take::All,
            vec![n],
        );
    }
    let ffn = format!("{from}/ffn");
    add(
        format!("{to}.mlp.0.weight"),
        format!("{ffn}/linear_0/weight"),
        Take::All,
        vec![4 * n, n],
    );
    add(
        format!("{to}.mlp.0.bias"),
        format!("{ffn}/linear_0/bias"),
        Take::All,
        vec![4 * n],
    );
    add(
        format!("{to}.mlp.2.weight"),
        format!("{ffn}/linear_1/weight"),
        Take::All,
        vec![n, 4 * n],
    );
    add(
        format!("{to}.mlp.2.bias"),
        format!("{ffn}/linear_1/bias"),
        Take::All,
        vec![n],
    );
    add(
        format!("{to}.mlp_ln.weight"),
        format!("{ffn}/layer_norm/gamma"),
        Take::All,
        vec![n],
    );
    add(
        format!("{to}.mlp_ln.bias"),
        format!("{ffn}/layer_norm/beta"),
        Take::All,
        vec![n],
    );
}

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub hparams: Hparams,
    pub tensors: usize,
    pub bytes: u64,
}

/// Writes the whole ggml file to `out`.
pub fn write<R: Read + Seek>(
    m: &mut Ct2Model<R>,
    vocab: &Vocabulary,
    out: &mut impl Write,
    out_path: &std::path::Path,
) -> Result<Written, ConvertError> {
    let h = hparams(m)?;
    if vocab.total as u64 != h.n_vocab {
        return Err(ConvertError::Mismatch {
            path: m.path.clone(),
            reason: format!(
                "the vocabulary has {} tokens, the model's embeddings {}: they are not \
                 from the same model",
                vocab.total, h.n_vocab
            ),
        });
    }
    let mut w = Counting {
        out,
        bytes: 0,
        path: out_path,
    };
    w.u32(MAGIC)?;
    for v in [
        h.n_vocab,
        h.n_audio_ctx,
        h.n_audio_state,
        h.n_audio_head,
        h.n_audio_layer,
        h.n_text_ctx,
        h.n_text_state,
        h.n_text_head,
        h.n_text_layer,
        h.n_mels,
        1,
    ] {
        w.u32(v as u32)?;
    }
    // whisper's STFT: 16 kHz, 400-sample windows.
    let n_fft = 400;
    let filters = mel::filters(16_000, n_fft, h.n_mels as usize);
    w.u32(h.n_mels as u32)?;
    w.u32((n_fft / 2 + 1) as u32)?;
    for v in &filters {
        w.all(&v.to_le_bytes())?;
    }
    w.u32(vocab.tokens.len() as u32)?;
    for t in &vocab.tokens {
        w.u32(t.len() as u32)?;
        w.all(t)?;
    }
    key_biases_are_zero(m, &h)?;
    let plan = plan(&h);
    for t in &plan {
        let data = tensor_bytes(m, t)?;
        w.u32(t.shape.len() as u32)?;
        w.u32(t.name.len() as u32)?;
        w.u32(if t.f32 { 0 } else { 1 })?;
        for d in t.shape.iter().rev() {
            w.u32(*d as u32)?;
        }
        w.all(t.name.as_bytes())?;
        w.all(&data)?;
    }
    Ok(Written {
        hparams: h,
        tensors: plan.len(),
        bytes: w.bytes,
    })
}

/// The tensor's data as written: little-endian f32 or f16, taken from its variable after
/// checking the variable's shape and type.
fn tensor_bytes<R: Read + Seek>(m: &mut Ct2Model<R>, t: &Tensor) -> Result<Vec<u8>, ConvertError> {
    let var = m.need(&t.source)?.clone();
    let expected: Vec<u64> = match t.take {
        // A conv bias is stored as [n] and written as [n, 1].
        Take::All if t.shape.last() == Some(&1) => t.shape[..1].to_vec(),
        Take::All => t.shape.clone(),
        Take::Rows { of, .. } => {
            let mut s = t.shape.clone();
            s[0] *= of;
            s
        }
    };
    if var.shape != expected {
        return Err(bad(
            m,
            &var.name,
            format!(
                "shape {:?}, expected {expected:?} from the model's other sizes",
                var.shape
            ),
        ));
    }
    if !matches!(var.dtype, DType::F16 | DType::F32 | DType::Bf16) {
        return Err(bad(
            m,
            &var.name,
            format!(
                "{} weights: a quantized model; convert a float16, bfloat16 or float32 one",
                var.dtype.as_str()
            ),
        ));
    }
    let data = m.data(&var)?;
    let data = match t.take {
        Take::All => &data[..],
        Take::Rows { index, .. } => {
            // The fused projections are stacked by rows: a contiguous slice each.
            let part = data.len() / (expected[0] / t.shape[0]) as usize;
            &data[index as usize * part..(index as usize + 1) * part]
        }
    };
    let size = var.dtype.size() as usize;
    let mut out = Vec::with_capacity(data.len() / size * if t.f32 { 4 } else { 2 });
    for e in data.chunks_exact(size) {
        let value = || match var.dtype {
            DType::F16 => f16_to_f32(u16::from_le_bytes([e[0], e[1]])),
            DType::Bf16 => bf16_to_f32(u16::from_le_bytes([e[0], e[1]])),
            _ => f32::from_le_bytes([e[0], e[1], e[2], e[3]]),
        };
        if t.f32 {
            out.extend_from_slice(&value().to_le_bytes());
        } else if var.dtype == DType::F16 {
            // Already what is written: copied, not rounded through f32.
            out.extend_from_slice(e);
        } else {
            out.extend_from_slice(&f32_to_f16(value()).to_le_bytes());
        }
    }
    Ok(out)
}

/// Whisper's key projections have no bias, and whisper.cpp no tensor for one: CTranslate2
/// stores zeros in its place, which are dropped. Anything else would change the model, so
/// it is refused rather than dropped.
fn key_biases_are_zero<R: Read + Seek>(
    m: &mut Ct2Model<R>,
    h: &Hparams,
) -> Result<(), ConvertError> {
    let mut fused = Vec::new();
    for i in 0..h.n_audio_layer {
        fused.push((
            format!("encoder/layer_{i}/self_attention/linear_0/bias"),
            3,
            1,
        ));
    }
    for i in 0..h.n_text_layer {
        fused.push((
            format!("decoder/layer_{i}/self_attention/linear_0/bias"),
            3,
            1,
        ));
        fused.push((format!("decoder/layer_{i}/attention/linear_1/bias"), 2, 0));
    }
    for (name, parts, key) in fused {
        let var = m.need(&name)?.clone();
        let data = m.data(&var)?;
        let part = data.len() / parts;
        // +0.0 and -0.0 alike: every byte zero but the sign bits.
        let size = var.dtype.size() as usize;
        let nonzero = data[key * part..(key + 1) * part].chunks(size).any(|e| {
            let mut e = e.to_vec();
            if let Some(last) = e.last_mut() {
                *last &= 0x7f;
            }
            e.iter().any(|&b| b != 0)
        });
        if nonzero {
            return Err(bad(
                m,
                &name,
                "the key projection has a non-zero bias, which whisper.cpp cannot hold".into(),
            ));
        }
    }
    Ok(())
}

/// A writer that counts what it wrote and names the file in errors.
struct Counting<'a, W> {
    out: &'a mut W,
    bytes: u64,
    path: &'a std::path::Path,
}

impl<W: Write> Counting<'_, W> {
    fn all(&mut self, b: &[u8]) -> Result<(), ConvertError> {
        self.out.write_all(b).map_err(|source| ConvertError::Io {
            path: self.path.to_path_buf(),
            action: "cannot write",
            source,
        })?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), ConvertError> {
        self.all(&v.to_le_bytes())
    }
}

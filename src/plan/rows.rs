//! What a decoded token's matrix rows cost beside their bytes, by quantisation type.
//!
//! A row's dot product has a fixed cost (the block loop's start, the horizontal sum, the
//! row's scale) and a cost per 32-weight block that depends on how the type stores its
//! weights: Q5_0 rebuilds a fifth bit for every weight, Q8_0 only converts a scale, and
//! llama.cpp's CPU backend repacks Q4_0 and Q4_K matrices into interleaved rows it multiplies
//! several at a time. One per-row constant cannot hold models of different types: fitted to
//! SmolLM2 (Q4_1) it predicted Qwen2.5-Coder-0.5B (mostly Q5_0, its 896-wide rows not a
//! multiple of the K-quants' 256) 34 % fast.
//!
//! The work is counted in rows' worth: each row 1 (its fixed cost, `Efficiencies::
//! overhead_per_row`), plus each of its blocks the block's cost as a fraction of that. The
//! costs were fitted with `scripts/row-cost.sh` (random-weight models of one type each, in
//! three shapes, decoded by llama-bench; docs/benchmarks.md, "Session 18") on the
//! x86-64 development VM, 2 threads, AVX2. A board's cores weigh the types differently (NEON
//! repacks other types): its first answers calibrate the fixed cost, not the weights. The
//! blocks are the CPU's: a GPU or NPU multiplies a row's blocks in parallel, so for those
//! backends a row counts 1 and their calibration prices it.

use tutord_protocol::gguf::meta::Gguf;

use crate::models::Widths;

/// A row's fixed cost on the fitting machine, ns (`calibrate::Efficiencies::default`).
pub const FIXED_NS: f64 = 13.2;

/// ggml type codes (ggml.h `enum ggml_type`).
const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q8_0: u32 = 8;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;
const Q6_K: u32 = 14;
const BF16: u32 = 30;

/// A 32-weight block's cost on the fitting machine, ns, as llama.cpp multiplies a matrix of
/// type `kind`: `repacked` when the CPU backend has interleaved it (a weight of its own; a
/// token embedding that is also the output projection stays as stored, since the lookup
/// reads it too). Types not measured cost what the dearest measured one does.
pub fn block_ns(kind: u32, repacked: bool) -> f64 {
    match (kind, repacked) {
        (Q4_0, true) => 0.55,
        (Q4_0, false) => 1.05,
        (Q4_1, _) => 0.65,
        (Q5_0, _) => 1.46,
        (Q5_1, _) => 1.16,
        (Q8_0, _) => 0.19,
        (Q4_K, true) => 0.34,
        (Q4_K, false) => 0.40,
        (Q5_K, _) => 0.71,
        (Q6_K, _) => 0.45,
        // Floats: converted, not unpacked; F32 is read at twice F16's bytes.
        (F32 | F16 | BF16, _) => 0.19,
        _ => 1.46,
    }
}

/// Rows' worth of work per decoded token in the matrices `g`'s header lists: those decoding
/// multiplies once per token (`Gguf::decode_matrices`); on the CPU (`cpu`) with their blocks.
pub fn of_header(g: &Gguf, cpu: bool) -> f64 {
    if !cpu {
        return g.matrix_rows() as f64;
    }
    let tied = g.tied_output();
    g.decode_matrices()
        .map(|t| {
            let cols = t.dims[0].max(1);
            let rows = t.elements() / cols;
            let repacked = !(tied && t.name == "token_embd.weight");
            let blocks = cols as f64 / 32.0;
            rows as f64 * (1.0 + blocks * block_ns(t.kind, repacked) / FIXED_NS)
        })
        .sum()
}

/// What a catalog entry not fetched says of its work.
#[derive(Debug, Clone, Copy)]
pub struct Nominal<'a> {
    pub matrix_rows: u64,
    pub parameters: u64,
    pub layers: u32,
    /// The nominal type (`Q4_K_M`, `Q4_1`, `w8a8`).
    pub quantization: &'a str,
    pub widths: Option<Widths>,
}

/// Rows' worth for a catalog entry not fetched: its row count, and its parameters in blocks
/// of its nominal type. Q4_K_M keeps about a quarter of the weights (attention V, half the
/// feed-forward down projection, the output) in Q6_K. Matrices whose input width is not a
/// multiple of 256 cannot hold K-quant blocks: llama.cpp's quantiser stores them as Q5_0
/// (for Q4_K), Q5_1 (Q5_K) or Q8_0 (Q6_K) instead (`tensor_type_fallback`), and Q5_0 costs
/// 4 × Q4_K a block here. Qwen2.5-0.5B's 896 makes that 79 % of its weights.
pub fn nominal(n: &Nominal<'_>, cpu: bool) -> f64 {
    if !cpu {
        return n.matrix_rows as f64;
    }
    let fallback = fallback_share(n.parameters, n.layers, n.widths);
    let k_quant = |k: f64, instead: f64| (1.0 - fallback) * k + fallback * instead;
    let per_block = match n.quantization.to_ascii_uppercase().as_str() {
        "Q4_0" => block_ns(Q4_0, true),
        "Q4_1" => block_ns(Q4_1, true),
        "Q5_0" => block_ns(Q5_0, true),
        "Q5_1" => block_ns(Q5_1, true),
        "Q8_0" => block_ns(Q8_0, true),
        "Q4_K_S" => k_quant(block_ns(Q4_K, true), block_ns(Q5_0, true)),
        "Q4_K_M" => k_quant(
            0.72 * block_ns(Q4_K, true) + 0.28 * block_ns(Q6_K, true),
            0.72 * block_ns(Q5_0, true) + 0.28 * block_ns(Q8_0, true),
        ),
        "Q5_K_S" | "Q5_K_M" => k_quant(block_ns(Q5_K, true), block_ns(Q5_1, true)),
        "Q6_K" => k_quant(block_ns(Q6_K, true), block_ns(Q8_0, true)),
        "F16" | "BF16" | "F32" => block_ns(F16, true),
        // RKLLM's w8a8 and w4a16 run on the NPU, whose row cost is its own calibration's.
        _ => 0.0,
    };
    n.matrix_rows as f64 + n.parameters as f64 / 32.0 * per_block / FIXED_NS
}

/// The share of a model's weights in matrices whose input width is not a multiple of 256:
/// the down projections read the feed-forward width, every other matrix (and the embedding)
/// the embedding width. 0 when the catalog does not give the widths.
pub fn fallback_share(parameters: u64, layers: u32, widths: Option<Widths>) -> f64 {
    let (Some(w), true) = (widths, parameters > 0) else {
        return 0.0;
    };
    let down = f64::from(layers) * f64::from(w.embedding) * f64::from(w.feed_forward);
    let down = down.min(parameters as f64);
    let rest = parameters as f64 - down;
    let misfit = |width: u32| !width.is_multiple_of(256);
    let share = if misfit(w.embedding) { rest } else { 0.0 }
        + if misfit(w.feed_forward) { down } else { 0.0 };
    share / parameters as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tutord_protocol::gguf::Header;
    use tutord_protocol::gguf::meta::{Gguf, Tensor};

    fn gguf(tensors: &[(&str, u32, u64, u64)]) -> Gguf {
        Gguf {
            header: Header {
                version: 3,
                tensors: tensors.len() as u64,
                metadata_entries: 0,
                file_bytes: 0,
            },
            metadata: Vec::new(),
            tensors: tensors
                .iter()
                .map(|&(name, kind, cols, rows)| Tensor {
                    name: name.into(),
                    // rows 0: a vector (a norm's weights), one dimension.
                    dims: if rows == 0 {
                        vec![cols]
                    } else {
                        vec![cols, rows]
                    },
                    kind,
                    offset: 0,
                })
                .collect(),
            data_offset: 0,
        }
    }

    #[test]
    fn a_header_counts_each_matrix_by_its_type() {
        // Untied: the embedding is looked up, not multiplied. Q5_0 attention, 10 rows of 896
        // (28 blocks at 1.46 ns, a row's fixed cost 13.2); a repacked Q4_K output of 100 rows
        // of 256 (8 blocks at 0.34).
        let g = gguf(&[
            ("token_embd.weight", Q4_K, 256, 100),
            ("blk.0.attn_norm.weight", F32, 896, 0),
            ("blk.0.attn_q.weight", Q5_0, 896, 10),
            ("output.weight", Q4_K, 256, 100),
        ]);
        let want = 10.0 * (1.0 + 28.0 * 1.46 / 13.2) + 100.0 * (1.0 + 8.0 * 0.34 / 13.2);
        assert!((of_header(&g, true) - want).abs() < 1e-9);
        assert!((want - 161.575_757_6).abs() < 1e-6);
        // Not the CPU: rows only.
        assert_eq!(of_header(&g, false), 110.0);
        // Tied: the embedding is the output and is read as stored, not repacked (0.40).
        let g = gguf(&[("token_embd.weight", Q4_K, 256, 100)]);
        let want = 100.0 * (1.0 + 8.0 * 0.40 / 13.2);
        assert!((of_header(&g, true) - want).abs() < 1e-9);
        // A vector (a norm's weights) is not a matrix: nothing.
        let g = gguf(&[("output_norm.weight", F32, 896, 0)]);
        assert_eq!(of_header(&g, true), 0.0);
    }

    /// An entry without widths, one layer.
    fn entry(matrix_rows: u64, parameters: u64, quantization: &str) -> Nominal<'_> {
        Nominal {
            matrix_rows,
            parameters,
            layers: 1,
            quantization,
            widths: None,
        }
    }

    #[test]
    fn a_catalog_entry_counts_its_parameters_in_blocks_of_its_nominal_type() {
        // 1000 rows; 3200 parameters = 100 blocks of Q4_K_M: 0.72 × 0.34 + 0.28 × 0.45 =
        // 0.3708 ns each.
        let want = 1000.0 + 100.0 * 0.3708 / 13.2;
        assert!((nominal(&entry(1000, 3200, "Q4_K_M"), true) - want).abs() < 1e-9);
        assert!((want - 1_002.809_090_9).abs() < 1e-6);
        let want = 1000.0 + 100.0 * 0.65 / 13.2;
        assert!((nominal(&entry(1000, 3200, "q4_1"), true) - want).abs() < 1e-9);
        // The NPU's formats, and any backend but the CPU: rows only.
        assert_eq!(nominal(&entry(1000, 3200, "w8a8"), true), 1000.0);
        assert_eq!(nominal(&entry(1000, 3200, "Q4_K_M"), false), 1000.0);
    }

    #[test]
    fn k_quant_matrices_of_a_width_not_a_multiple_of_256_count_as_their_fallback_type() {
        // Qwen2.5-0.5B: 24 layers, embedding 896 (3.5 × 256), feed-forward 4864 (19 × 256).
        // The down projections, 24 × 896 × 4864 = 104_595_456 weights, keep Q4_K/Q6_K; the
        // other 389_437_312 of 494_032_768 (78.83 %) are Q5_0/Q8_0.
        let widths = Widths {
            embedding: 896,
            feed_forward: 4864,
        };
        let share = fallback_share(494_032_768, 24, Some(widths));
        assert!((share - 389_437_312.0 / 494_032_768.0).abs() < 1e-12);
        assert!((share - 0.788_282_4).abs() < 1e-6);
        let qwen = Nominal {
            widths: Some(widths),
            layers: 24,
            ..entry(456_064, 494_032_768, "Q4_K_M")
        };
        // Per block: 21.17 % × 0.3708 + 78.83 % × (0.72 × 1.46 + 0.28 × 0.19 = 1.1044).
        let per_block = (1.0 - share) * 0.3708 + share * 1.1044;
        let want = 456_064.0 + 494_032_768.0 / 32.0 * per_block / 13.2;
        assert!((nominal(&qwen, true) - want).abs() < 1e-6);
        // 1.57 M rows' worth: the fetched Coder-0.5B's header gives 1.49 M; its nominal
        // type alone gave 0.89 M.
        assert!((nominal(&qwen, true) - 1_566_098.48).abs() < 0.01);
        assert!((nominal(&entry(456_064, 494_032_768, "Q4_K_M"), true) - 889_746.17).abs() < 0.01);
        // Widths that are multiples of 256 change nothing (Qwen2.5-1.5B: 1536 and 8960).
        let fits = Widths {
            embedding: 1536,
            feed_forward: 8960,
        };
        assert_eq!(fallback_share(1_543_714_304, 28, Some(fits)), 0.0);
        // A misfit feed-forward width alone: only the down projections fall back.
        let down_only = Widths {
            embedding: 512,
            feed_forward: 1000,
        };
        assert!((fallback_share(2_000_000, 2, Some(down_only)) - 0.512).abs() < 1e-12);
        // No widths, or a 32-block type: nothing falls back.
        assert_eq!(fallback_share(494_032_768, 24, None), 0.0);
        let q4_1 = Nominal {
            quantization: "Q4_1",
            ..qwen
        };
        assert!(
            (nominal(&q4_1, true) - (456_064.0 + 494_032_768.0 / 32.0 * 0.65 / 13.2)).abs() < 1e-6
        );
    }
}

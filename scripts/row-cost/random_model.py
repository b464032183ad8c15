"""Writes a random-weight llama-architecture GGUF whose matrices are all of one quant type, for
measuring what a matrix row of each type costs a decoded token (scripts/row-cost.sh). Speed only:
the weights are random bytes with every block's scales set small, so the numbers stay finite.

    random_model.py OUT.gguf SHAPE TYPE      SHAPE: 135m 0.5b 1.5b   TYPE: Q4_0 Q4_1 Q5_0 ... Q6_K
Needs PyPI gguf and numpy.
"""
import sys

import gguf
import numpy as np

SHAPES = {
    # SmolLM2-135M, Qwen2.5-0.5B and 1.5B: the row lengths (hidden, feed-forward) the
    # catalog's small models have.
    "135m": dict(embd=576, layers=30, heads=9, kv=3, ff=1536, vocab=49152),
    "0.5b": dict(embd=896, layers=24, heads=14, kv=2, ff=4864, vocab=151936),
    "1.5b": dict(embd=1536, layers=28, heads=12, kv=2, ff=8960, vocab=151936),
}
# Byte offsets of each block's FP16 scales (ggml's block layouts), set to a small value.
SCALES = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}


def main():
    out, shape, type_name = sys.argv[1], SHAPES[sys.argv[2]], sys.argv[3]
    qtype = gguf.GGMLQuantizationType[type_name]
    block_weights, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(0)
    small = np.frombuffer(np.float16(1e-4).tobytes(), dtype=np.uint8)

    def matrix(rows, cols):
        if cols % block_weights:
            sys.exit(f"{type_name} needs rows a multiple of {block_weights} weights, not {cols}")
        blocks = cols // block_weights
        b = rng.integers(0, 256, size=(rows, blocks, block_bytes), dtype=np.uint8)
        for at in SCALES[type_name]:
            b[:, :, at:at + 2] = small
        if type_name == "Q6_K":  # int8 sub-block scales: keep them small too
            b[:, :, 192:208] = 1
        return b.reshape(rows, blocks * block_bytes)

    e, h, kv, ff = shape["embd"], shape["heads"], shape["kv"], shape["ff"]
    hd = e // h
    w = gguf.GGUFWriter(out, "llama")
    w.add_context_length(4096)
    w.add_embedding_length(e)
    w.add_block_count(shape["layers"])
    w.add_feed_forward_length(ff)
    w.add_head_count(h)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(hd)
    vocab = shape["vocab"]
    w.add_tokenizer_model("llama")
    toks = [b"<unk>", b"<s>", b"</s>"] + [(f"<0x{i:02X}>").encode() for i in range(256)]
    toks += [f"t{i}".encode() for i in range(len(toks), vocab)]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (vocab - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    ones = lambda n: np.ones(n, dtype=np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", matrix(vocab, e), raw_dtype=qtype)
    w.add_tensor("output_norm.weight", ones(e))
    w.add_tensor("output.weight", matrix(vocab, e), raw_dtype=qtype)
    for i in range(shape["layers"]):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones(e))
        w.add_tensor(p + "attn_q.weight", matrix(e, e), raw_dtype=qtype)
        w.add_tensor(p + "attn_k.weight", matrix(kv * hd, e), raw_dtype=qtype)
        w.add_tensor(p + "attn_v.weight", matrix(kv * hd, e), raw_dtype=qtype)
        w.add_tensor(p + "attn_output.weight", matrix(e, e), raw_dtype=qtype)
        w.add_tensor(p + "ffn_norm.weight", ones(e))
        w.add_tensor(p + "ffn_gate.weight", matrix(ff, e), raw_dtype=qtype)
        w.add_tensor(p + "ffn_up.weight", matrix(ff, e), raw_dtype=qtype)
        w.add_tensor(p + "ffn_down.weight", matrix(e, ff), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


main()

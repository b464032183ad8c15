"""Fits what a matrix row costs a decoded token beside its bytes (src/plan/rows.rs): a fixed
cost per row and a cost per 32-weight block of each quant type, to llama-bench's decode speed
of GGUF files, and prints each file's speed beside the fit's and the shipped constants'
prediction.

    fit.py READ_BYTES_PER_S RESULTS   RESULTS: lines "FILE TOKENS_PER_S [plain]" (several per
                                      file: the median is taken; "plain": run with --repack 0)
Needs PyPI gguf and numpy. Time per token = streamed bytes / (read × 0.88) + rows × fixed
+ Σ blocks × cost(type) + the attention over llama-bench's tg32 (15.5 cells on average).
"""
import re
import statistics
import sys
from collections import defaultdict

import gguf
import numpy as np

SRC = __file__.rsplit("/scripts/", 1)[0] + "/src/plan/"


def constant(file, pattern):
    """A number from the planner's source, so the fit and the planner cannot disagree."""
    return float(re.search(pattern, open(SRC + file).read()).group(1))


MEMORY = constant("calibrate.rs", r"memory: ([0-9.]+),")  # Efficiencies::default().memory
FIXED_NS = constant("rows.rs", r"FIXED_NS: f64 = ([0-9.]+)")
# The attention per layer per cell: ATTENTION_ROWS_PER_CELL rows' fixed costs.
ATTENTION_NS = constant("mod.rs", r"ATTENTION_ROWS_PER_CELL: f64 = ([0-9.]+)") * FIXED_NS
DEPTH = 15.5           # llama-bench -n 32 from an empty cache
REPACKS = {"Q4_0", "Q4_K"}  # what llama.cpp's CPU backend interleaves on x86-64 (--repack)


def shipped():
    """rows.rs's FIXED_NS and block_ns table, read from the source."""
    src = open(SRC + "rows.rs").read()
    table = {}
    for kind, rep, ns in re.findall(r"\((\w+), (true|false|_)\) => ([0-9.]+)", src):
        for r in ([True, False] if rep == "_" else [rep == "true"]):
            table[(kind, r)] = float(ns)
    return FIXED_NS, table


def facts(path, plain):
    r = gguf.GGUFReader(path)
    tied = not any(t.name == "output.weight" for t in r.tensors)
    streamed, rows, blocks, layers = 0, 0, defaultdict(float), 0
    for t in r.tensors:
        if t.name == "token_embd.weight" and not tied:
            continue
        streamed += int(t.n_bytes)
        m = re.match(r"blk\.(\d+)\.", t.name)
        if m:
            layers = max(layers, int(m.group(1)) + 1)
        if len(t.shape) < 2:
            continue
        cols = int(t.shape[0])
        n = int(t.n_elements) // cols
        kind = t.tensor_type.name
        repacked = kind not in REPACKS or not (plain or (tied and t.name == "token_embd.weight"))
        rows += n
        blocks[(kind, repacked)] += n * cols / 32
    return streamed, rows, blocks, layers


def main():
    read = float(sys.argv[1])
    measured = defaultdict(list)
    for line in open(sys.argv[2]):
        f, tps, *plain = line.split()
        measured[(f, plain == ["plain"])].append(float(tps))
    files = sorted(measured)
    info = {f: facts(*f) for f in files}
    kinds = sorted({k for f in files for k in info[f][2]})
    x, y, w = [], [], []
    for f in files:
        streamed, rows, blocks, layers = info[f]
        t = 1 / statistics.median(measured[f])
        x.append([rows] + [blocks.get(k, 0) for k in kinds])
        y.append(t - streamed / (read * MEMORY) - ATTENTION_NS * 1e-9 * layers * DEPTH)
        w.append(1 / t)
    x, y, w = np.array(x), np.array(y), np.array(w)
    fit, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    print(f"read {read / 1e9:.1f} GB/s × {MEMORY}; fitted fixed cost {fit[0] * 1e9:.2f} ns a row")
    for k, c in zip(kinds, fit[1:]):
        print(f"  {k[0]:5} {'repacked' if k[1] else 'as stored':9} {c * 1e9:6.3f} ns a block")
    fixed, table = shipped()
    print(f"\n{'file':42} {'measured':>9} {'fit':>7} {'err':>6} {'shipped':>8} {'err':>6}")
    for f, row in zip(files, x):
        streamed, rows, blocks, layers = info[f]
        base = streamed / (read * MEMORY) + ATTENTION_NS * 1e-9 * layers * DEPTH
        meas = statistics.median(measured[f])
        by_fit = 1 / (base + row @ fit)
        by_rows = 1 / (base + 1e-9 * (fixed * rows + sum(
            n * table.get(k, max(table.values())) for k, n in blocks.items())))
        name = f[0].rsplit("/", 1)[-1] + (" --repack 0" if f[1] else "")
        print(f"{name[:42]:42} {meas:9.2f} {by_fit:7.2f} {by_fit / meas - 1:+6.1%}"
              f" {by_rows:8.2f} {by_rows / meas - 1:+6.1%}")


main()

#!/usr/bin/env bash
# What a matrix row costs a decoded token beside its bytes, by quantisation type: the fit behind
# src/plan/rows.rs (issue 19). Writes random-weight llama models whose matrices are all of one
# type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 in SmolLM2-135M's, Qwen2.5-0.5B's and 1.5B's shapes; Q4_K,
# Q5_K, Q6_K in the 1.5B's, whose rows are multiples of 256), decodes each with llama.cpp's
# llama-bench (built the way tutord's engine is: scripts/llama-bench.sh, crate flavor) in
# interleaved rounds (Q4_0 and Q4_K also with --repack 0), measures the read bandwidth with tutord's own benchmark, and fits a fixed
# cost per row and a cost per block of each type, with every GGUF already in the models folder
# (the registry models) in the fit too. It prints every file's measured speed beside the fit's
# prediction and the shipped constants' (rows.rs). The read bandwidth it divides by is the mean
# of the planner's typical figure before and after the rounds: on a shared host the two can
# differ by 20 %, and so then do the fitted costs.
#
#   bash scripts/row-cost.sh      (~11 GB of scratch files under $TMPDIR, removed at the end)
#
# Environment: ROUNDS (default 3), THREADS (default 2), READ_GBPS (instead of the measured mean).
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-2}"
apt_install "${BUILD_PACKAGES[@]}" python3-venv
need_rust
prepare_dirs
# The crate flavor of llama-bench is configured like this release build of llama-cpp-sys-2.
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p tutord-engine
LLAMA_BENCH="$(LLAMA_BENCH_FLAVOR=crate bash "$REPO/scripts/llama-bench.sh" | tail -1)"
[ -x "$LLAMA_BENCH" ] || die "scripts/llama-bench.sh gave no binary"

VENV="$CACHE/row-cost-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
    log "installing gguf and numpy from PyPI into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q gguf==0.19.0 numpy
fi

# The planner's typical read bandwidth and scalar chain (what the first boot scales a row's
# fixed cost by: calibrate.rs FITTED_ON_SCALAR), measured before and after the rounds.
typical() {
    cargo bench --locked --manifest-path "$REPO/Cargo.toml" -p tutord --bench bandwidth 2>/dev/null |
        grep '^typical (the planner' || die "the bandwidth benchmark printed no typical figures"
}
BEFORE=$(typical)
log "$BEFORE"

RUN="$(mktemp -d "${TMPDIR:-/tmp}/tutord-row-cost.XXXXXX")"
trap 'rm -rf "$RUN"' EXIT
FILES=()
for combo in 135m:Q4_0 135m:Q4_1 135m:Q5_0 135m:Q8_0 0.5b:Q4_0 0.5b:Q4_1 0.5b:Q5_0 0.5b:Q5_1 \
    0.5b:Q8_0 1.5b:Q4_0 1.5b:Q4_1 1.5b:Q5_0 1.5b:Q8_0 1.5b:Q4_K 1.5b:Q5_K 1.5b:Q6_K; do
    f="$RUN/random-${combo%%:*}-${combo##*:}.gguf"
    "$VENV/bin/python" "$REPO/scripts/row-cost/random_model.py" "$f" "${combo%%:*}" "${combo##*:}"
    FILES+=("$f")
done
REAL=()
for f in "$TUTORD_MODELS_DIR"/*.gguf; do [ -f "$f" ] && REAL+=("$f"); done

# tg32 FILE [LLAMA_BENCH ARGS]: llama-bench's decode tokens/s.
tg32() {
    "$LLAMA_BENCH" -m "$1" -p 0 -n 32 -r 3 -t "$THREADS" "${@:2}" -o csv 2>/dev/null |
        tail -1 | awk -F, '{ gsub(/"/, "", $(NF-1)); print $(NF-1) }'
}
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    for f in "${FILES[@]}" "${REAL[@]}"; do
        tps=$(tg32 "$f")
        [ -n "$tps" ] || die "llama-bench failed on $f"
        echo "$f $tps" | tee -a "$RUN/results" >&2
        # The types llama.cpp repacks on x86-64, as stored too: what a tied embedding costs.
        case "$f" in
        */random-*-Q4_0.gguf | */random-*-Q4_K.gguf)
            tps=$(tg32 "$f" --repack 0)
            echo "$f $tps plain" | tee -a "$RUN/results" >&2
            ;;
        esac
    done
done
AFTER=$(typical)
log "before the rounds: $BEFORE"
log "after the rounds:  $AFTER"
read_of() { sed 's/.*read \([0-9.]*\) GB.*/\1/' <<<"$1"; }
READ_GBPS="${READ_GBPS:-$(python3 -c "print(($(read_of "$BEFORE") + $(read_of "$AFTER")) / 2)")}"
log "fit: the random models and the models folder's, read ${READ_GBPS} GB/s"
"$VENV/bin/python" "$REPO/scripts/row-cost/fit.py" "${READ_GBPS}e9" "$RUN/results"

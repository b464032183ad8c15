#!/usr/bin/env bash
# A whole lesson on the 0.5B model: 60 questions in one session with long answers in a
# 1024-token context, so the window slides from the first few turns on. For each turn it
# records the time to first token and the decode speed, twice in one run, interleaved by
# turn, on the same machine state: with the window shifted down the KV cache (what tutord
# does) and with the window processed again from the first change
# (TUTORD_ENGINE_WINDOW=reprefill). Prints both per turn and draws them as an SVG.
#
#   bash scripts/lesson-bench.sh [OUT.svg]     (default docs/lesson-bench.svg)
#
# Environment: TURNS (default 60), MAX_TOKENS (default 160), CONTEXT (default 1024),
# MODEL (default qwen2.5-coder-0.5b-q4_k_m, fetched once: ~400 MB).
# Goal (issue 16): flat after the window starts sliding.
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

TURNS="${TURNS:-60}"
MAX_TOKENS="${MAX_TOKENS:-160}"
CONTEXT="${CONTEXT:-1024}"
MODEL="${MODEL:-qwen2.5-coder-0.5b-q4_k_m}"
SVG="${1:-$REPO/docs/lesson-bench.svg}"

apt_install "${BUILD_PACKAGES[@]}"
need_rust
prepare_dirs
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p tutord -p tutord-engine
BIN="$CARGO_TARGET_DIR/release"
"$BIN/tutorctl" models --catalog "$REPO/config/models.toml" --dir "$TUTORD_MODELS_DIR" fetch "$MODEL"

RUN="$(mktemp -d /tmp/tutord-lesson-bench.XXXXXX)"
cleanup() {
    for p in ${DAEMONS:-}; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    [ -n "${BUS:-}" ] && kill "$BUS" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT

QUESTIONS=(
    "Explain in detail how plants make their food."
    "Tell me about the water cycle, step by step."
    "Why do we have seasons? Explain carefully."
    "How does the heart pump blood around the body?"
    "Explain what fractions are, with examples."
    "Describe how volcanoes form and erupt."
    "What is gravity and how does it keep planets in orbit?"
    "Explain how a rainbow forms."
)

# One tutord per mode, each on its own private bus and state, both loaded before the first
# question: the turns alternate between them, so a noisy neighbour hits both alike.
start_mode() {  # MODE: "shift" or "reprefill"; sets ADDR_<MODE>
    local mode="$1" dir="$RUN/$1"
    mkdir -p "$dir"
    start_private_bus "$dir"
    printf '[llm]\nmodel = "%s"\nmax_tokens = %s\ncontext_length = %s\ntemperature = 0.0\n' \
        "$MODEL" "$MAX_TOKENS" "$CONTEXT" >"$dir/tutord.toml"
    printf '[models]\ndir = "%s"\ncatalog = "%s"\n' "$TUTORD_MODELS_DIR" "$REPO/config/models.toml" \
        >>"$dir/tutord.toml"
    local window=""
    [ "$mode" = reprefill ] && window=reprefill
    TUTORD_ENGINE_WINDOW="$window" "$BIN/tutord" --bus "$ADDR" --config "$dir/tutord.toml" \
        --state-dir "$dir/state" 2>>"$dir/tutord.log" &
    local pid=$!
    DAEMONS="${DAEMONS:-} $pid $BUS"
    wait_ready "$pid"
    printf -v "ADDR_$mode" '%s' "$ADDR"
}
start_mode shift
start_mode reprefill

prop() {  # ADDR NAME: a double property
    busctl --address="$1" get-property org.tutord.Tutor1 /org/tutord/Tutor1 org.tutord.Tutor1 "$2" |
        awk '{print $2}'
}

log "a $TURNS-turn lesson on $MODEL, context $CONTEXT, answers up to $MAX_TOKENS tokens"
printf '%-5s %12s %12s %14s %14s\n' turn "ttft shift" "ttft re-pf" "tok/s shift" "tok/s re-pf" |
    tee "$RUN/table"
for t in $(seq 1 "$TURNS"); do
    q="${QUESTIONS[$(((t - 1) % ${#QUESTIONS[@]}))]}"
    row=("$t")
    for mode in shift reprefill; do
        addr_var="ADDR_$mode"
        "$BIN/tutorctl" --bus "${!addr_var}" ask "$q" >/dev/null || die "turn $t ($mode) failed"
        row+=("$(prop "${!addr_var}" LastTimeToFirstToken)" "$(prop "${!addr_var}" LastTokensPerSecond)")
    done
    printf '%-5s %12.3f %12.3f %14.1f %14.1f\n' "${row[0]}" "${row[1]}" "${row[3]}" "${row[2]}" "${row[4]}" |
        tee -a "$RUN/table"
done

# Medians over turns 6-60 (the window slides from about turn 4 at these sizes).
awk 'NR > 6 { s[NR] = $2; r[NR] = $3; ds[NR] = $4; dr[NR] = $5; n++ }
     function med(a,   k, v, i, j, t) { k = 0; for (i in a) v[++k] = a[i];
         for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
         return v[int((k + 1) / 2)] }
     END { printf "median over turns 6-%d: first token %.3f s shifted, %.3f s re-prefilled (%.1fx); decode %.1f vs %.1f tok/s\n",
               NR - 1, med(s), med(r), med(r) / med(s), med(ds), med(dr) }' "$RUN/table"

# Issue 16's target: the first token at the lesson's end within 1.5x of its start (medians of
# turns 3-7 and the last five, shifted window). tests/lesson.rs only guards against a window
# processed again (3x): a timed bound that tight flakes on a shared CI machine.
awk -v turns="$TURNS" 'NR > 1 { s[$1] = $2 }
     function med5(a, from,   v, i, j, t) { for (i = 0; i < 5; i++) v[i] = a[from + i];
         for (i = 0; i < 5; i++) for (j = i + 1; j < 5; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
         return v[2] }
     END { if (turns < 12) exit; e = med5(s, 3); l = med5(s, turns - 4)
           printf "first token, shifted window: turns 3-7 %.3f s, turns %d-%d %.3f s: %.2fx (goal <= 1.5x)\n",
               e, turns - 4, turns, l, l / e }' "$RUN/table"

# The SVG: time to first token per turn, both modes.
awk -v turns="$TURNS" 'NR > 1 { s[$1] = $2; r[$1] = $3; if ($2 > max) max = $2; if ($3 > max) max = $3 }
     END {
       W = 720; H = 360; L = 60; B = 40; T = 30; R = 20; max = max * 1.1; if (max <= 0) max = 1
       printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
       printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
       printf "<text x=\"%d\" y=\"18\">Time to first token per turn of a %d-turn lesson (lower is better)</text>\n", L, turns
       printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, H - B, W - R, H - B
       printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", L, T, L, H - B
       for (i = 0; i <= 4; i++) { v = max * i / 4; y = H - B - (H - B - T) * i / 4
         printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.2f s</text>\n", L - 4, y + 4, v }
       for (i = 10; i <= turns; i += 10) { x = L + (W - L - R) * (i - 1) / (turns - 1)
         printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, H - B + 16, i }
       printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">turn</text>\n", (W + L) / 2, H - 6
       split("s r", keys, " "); col["s"] = "#1f77b4"; col["r"] = "#d62728"
       name["s"] = "window shifted in the KV cache (tutord)"; name["r"] = "window processed again"
       for (k = 1; k <= 2; k++) { key = keys[k]; pts = ""
         for (i = 1; i <= turns; i++) { v = (key == "s") ? s[i] : r[i]
           x = L + (W - L - R) * (i - 1) / (turns - 1); y = H - B - (H - B - T) * v / max
           pts = pts sprintf("%.1f,%.1f ", x, y) }
         printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", col[key], pts
         printf "<text x=\"%d\" y=\"%d\" fill=\"%s\">%s</text>\n", L + 10, T + 16 * k, col[key], name[key] }
       print "</svg>" }' "$RUN/table" >"$SVG"
log "wrote $SVG"

#!/usr/bin/env bash
# How well the planner predicts, on this machine, for the three catalog tiers: tutord runs on
# a private bus with each model pinned in turn, answers questions (calibrating from each),
# and then, after a restart with the calibration of all three, predicts again; the script
# prints predicted beside measured decode tokens/s and the error.
#
#   bash scripts/plan-bench.sh            (fetches the three models: ~1.7 GB, once)
#
# Environment: QUESTIONS (answers per model and pass, default 4), MAX_TOKENS (default 64).
# Goal (issue 4): after calibration |predicted - measured| / measured <= 15 % for each model.
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

QUESTIONS="${QUESTIONS:-4}"
MAX_TOKENS="${MAX_TOKENS:-64}"
MODELS=(smollm2-135m-q4_1 qwen2.5-coder-0.5b-q4_k_m qwen2.5-coder-1.5b-q4_k_m)

apt_install "${BUILD_PACKAGES[@]}"
need_rust
prepare_dirs
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p tutord -p tutord-engine
BIN="$CARGO_TARGET_DIR/release"
"$BIN/tutorctl" models --catalog "$REPO/config/models.toml" --dir "$TUTORD_MODELS_DIR" fetch "${MODELS[@]}"

RUN="$(mktemp -d /tmp/tutord-plan-bench.XXXXXX)"
cleanup() {
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    [ -n "${BUS:-}" ] && kill "$BUS" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT
start_private_bus "$RUN"

prop() {  # NAME: a double property of the running tutord
    busctl --address="$ADDR" get-property org.tutord.Tutor1 /org/tutord/Tutor1 org.tutord.Tutor1 "$1" | awk '{print $2}'
}

# run_model MODEL: starts tutord with MODEL pinned (state kept in $RUN/state), prints
# "predicted measured..." after $QUESTIONS answers, and stops it.
run_model() {
    {
        printf '[llm]\nmodel = "%s"\nmax_tokens = %s\ntemperature = 0.0\n' "$1" "$MAX_TOKENS"
        printf '[models]\ndir = "%s"\ncatalog = "%s"\n' "$TUTORD_MODELS_DIR" "$REPO/config/models.toml"
    } >"$RUN/tutord.toml"
    "$BIN/tutord" --bus "$ADDR" --config "$RUN/tutord.toml" --state-dir "$RUN/state" 2>>"$RUN/tutord.log" &
    DAEMON=$!
    wait_ready "$DAEMON"
    local predicted measured=()
    predicted=$(prop PredictedTokensPerSecond)
    local i=0
    for q in "Why is the sky blue?" "What is a prime number?" "How do plants make food?" \
             "What causes the seasons?" "Why do we have tides?" "What is an atom?"; do
        [ "$i" -ge "$QUESTIONS" ] && break
        "$BIN/tutorctl" --bus "$ADDR" ask --new-session "$q" >/dev/null
        measured+=("$(prop LastTokensPerSecond)")
        i=$((i + 1))
    done
    kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=
    echo "$predicted ${measured[*]}"
}

log "pass 1: each model answers $QUESTIONS questions; every answer calibrates"
declare -A FIRST
for m in "${MODELS[@]}"; do
    FIRST[$m]=$(run_model "$m")
    log "$m: predicted before any calibration of it, then measured: ${FIRST[$m]}"
done
log "pass 2: a restart of each, with the calibration of all three"
printf '\n%-28s %12s %12s %12s %9s %9s\n' model "uncalibrated" "calibrated" "measured" "err(unc)" "err(cal)"
worst=0
for m in "${MODELS[@]}"; do
    line=$(run_model "$m")
    read -r pred rest <<<"$line"
    read -r first _ <<<"${FIRST[$m]}"
    meas=$(echo "$rest" | awk '{s=0; for(i=1;i<=NF;i++) s+=$i; print s/NF}')
    e0=$(awk -v p="$first" -v m="$meas" 'BEGIN{d=(p-m)/m; if(d<0)d=-d; printf "%.1f", 100*d}')
    e1=$(awk -v p="$pred" -v m="$meas" 'BEGIN{d=(p-m)/m; if(d<0)d=-d; printf "%.1f", 100*d}')
    printf '%-28s %12.1f %12.1f %12.1f %8s%% %8s%%\n' "$m" "$first" "$pred" "$meas" "$e0" "$e1"
    worst=$(awk -v a="$worst" -v b="$e1" 'BEGIN{print (b>a)?b:a}')
done
echo
echo "tokens/s; 'uncalibrated' = the first boot's prediction for the model (earlier models' answers"
echo "already calibrated the shared efficiencies), 'calibrated' = after all answers, at the next boot."
echo "worst calibrated error: ${worst} % (goal <= 15 %)"

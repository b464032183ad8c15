#!/usr/bin/env bash
# The main job on the embedded default: installs what is needed, builds tutord and tutorctl,
# starts tutord on a private session bus with config/dev.toml, and drives it with tutorctl
# the way the tutor UI would. Safe to run again: installs and builds only what changed.
source "$(dirname "$0")/common.sh"

apt_install "${BUILD_PACKAGES[@]}"
need_rust
prepare_dirs

log "building (cargo build --release --locked)"
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p tutord -p tutord-engine
BIN="$CARGO_TARGET_DIR/release"

log "fetching the default model, whisper tiny.en and the Piper voice (skipped when already there and verified)"
"$BIN/tutorctl" models --catalog "$REPO/config/models.toml" --dir "$TUTORD_MODELS_DIR" fetch
"$BIN/tutorctl" models --catalog "$REPO/config/models.toml" --dir "$TUTORD_MODELS_DIR" fetch \
    whisper-tiny.en piper-joe-medium piper-joe-medium.json onnxruntime

RUN="$(mktemp -d /tmp/tutord-run.XXXXXX)"
cleanup() {
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    [ -n "${BUS:-}" ] && kill "$BUS" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT

log "starting a private D-Bus bus"
start_private_bus "$RUN"

# config/dev.toml plus the model folder and short answers; [llm] model = "auto": tutord
# measures the bus and picks the largest fetched model that meets the target speed.
{
    cat "$REPO/config/dev.toml"
    printf '\n[llm]\nmodel = "auto"\nmax_tokens = 96\n'
    printf '\n[models]\ndir = "%s"\ncatalog = "%s"\n' "$TUTORD_MODELS_DIR" "$REPO/config/models.toml"
} >"$RUN/tutord.toml"

log "starting tutord (config/dev.toml + the model, state in $RUN/state)"
start_ns=$(date +%s%N)
"$BIN/tutord" --bus "$ADDR" --config "$RUN/tutord.toml" --state-dir "$RUN/state" &
DAEMON=$!
wait_ready "$DAEMON"
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))

log "tutorctl status"
"$BIN/tutorctl" --bus "$ADDR" status
log "tutorctl diagnostics"
"$BIN/tutorctl" --bus "$ADDR" diagnostics
log "tutorctl plan (the boot benchmark and why this model)"
"$BIN/tutorctl" --bus "$ADDR" plan
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$DAEMON/status")

log "tutorctl ask (a question, the answer streamed, then its figures)"
"$BIN/tutorctl" --bus "$ADDR" ask "In one sentence: why is the sky blue?"
log "tutorctl ask, a follow-up in the same conversation (reuses the KV cache)"
"$BIN/tutorctl" --bus "$ADDR" ask "And at sunset?"

log "a spoken turn: a question spoken by the voice itself (tutorctl say), heard, answered, spoken"
"$BIN/tutorctl" say --catalog "$REPO/config/models.toml" --dir "$TUTORD_MODELS_DIR" \
    --rate 16000 --out "$RUN/question.wav" "What is a prime number?"
"$BIN/tutorctl" --bus "$ADDR" listen --new-session --wav "$RUN/question.wav" --out "$RUN/answer.wav"
cp "$RUN/answer.wav" /tmp/tutord-answer.wav
echo "the spoken answer is in /tmp/tutord-answer.wav"

log "stopping tutord (SIGTERM)"
kill -TERM "$DAEMON"
wait "$DAEMON"
status=$?
DAEMON=
echo
echo "start to ready with the model loaded (as seen by tutorctl): ${ready_ms} ms; tutord idle RSS: ${rss_kb} KiB; exit status: $status"
[ "$status" -eq 0 ]

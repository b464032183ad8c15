#!/usr/bin/env bash
# The voice loop's figures on this machine, in one run: whisper's and the voice's real-time
# factors, and end of speech → transcript → first token → first audio for a short spoken
# question, with whisper tiny.en, the small LLM and the Piper voice.
#
#   bash scripts/voice-bench.sh        (ROUNDS=3 spoken turns by default)
#
# Goal (issue 6): end of speech → first answer audio ≤ 1.5 s (Home Assistant's pipeline on a
# Raspberry Pi takes 5-7 s).
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

ROUNDS="${ROUNDS:-3}"
apt_install "${BUILD_PACKAGES[@]}"
need_rust
prepare_dirs
cargo build --release --locked --manifest-path "$REPO/Cargo.toml" -p tutord -p tutord-engine
BIN="$CARGO_TARGET_DIR/release"
CATALOG="$REPO/config/models.toml"
"$BIN/tutorctl" models --catalog "$CATALOG" --dir "$TUTORD_MODELS_DIR" fetch \
    smollm2-135m-q4_1 whisper-tiny.en piper-joe-medium piper-joe-medium.json onnxruntime

RUN="$(mktemp -d /tmp/tutord-voice-bench.XXXXXX)"
cleanup() {
    [ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    [ -n "${BUS:-}" ] && kill "$BUS" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT
start_private_bus "$RUN"
{
    printf '[llm]\nmodel = "smollm2-135m-q4_1"\nmax_tokens = 48\ntemperature = 0.0\n'
    printf '[models]\ndir = "%s"\ncatalog = "%s"\n' "$TUTORD_MODELS_DIR" "$CATALOG"
} >"$RUN/tutord.toml"
"$BIN/tutord" --bus "$ADDR" --config "$RUN/tutord.toml" --state-dir "$RUN/state" 2>"$RUN/tutord.log" &
DAEMON=$!
wait_ready "$DAEMON"
"$BIN/tutorctl" say --catalog "$CATALOG" --dir "$TUTORD_MODELS_DIR" --rate 16000 \
    --out "$RUN/q.wav" "What is a prime number?" >/dev/null
# The speech model loads beside the LLM: the first call may find it loading.
for _ in $(seq 100); do
    "$BIN/tutorctl" --bus "$ADDR" listen --new-session --wav "$RUN/q.wav" >"$RUN/warm.txt" 2>&1 && break
    sleep 0.2
done
printf '\n%-7s %10s %12s %12s %12s %9s %9s\n' round "speech s" "->text s" "->token s" "->audio s" "stt RTF" "tts RTF"
for r in $(seq "$ROUNDS"); do
    # A fresh rendering each round: Piper's renderings differ a little, and whisper's speed
    # on a short window depends on the exact audio (a loop costs a second pass).
    "$BIN/tutorctl" say --catalog "$CATALOG" --dir "$TUTORD_MODELS_DIR" --rate 16000 \
        --out "$RUN/q.wav" "What is a prime number?" >/dev/null
    out=$("$BIN/tutorctl" --bus "$ADDR" listen --new-session --wav "$RUN/q.wav" --out "$RUN/a.wav")
    field() { printf '%s\n' "$out" | awk -v k="$1:" '$1 == k {print $2}'; }
    tts_rtf=$(awk -v t="$(field tts_seconds)" -v s="$(field spoken_seconds)" 'BEGIN{ if (s > 0) printf "%.3f", t / s; else print "-" }')
    printf '%-7s %10.2f %12.3f %12.3f %12.3f %9.3f %9s\n' "$r" "$(field speech_seconds)" \
        "$(field end_of_speech_to_transcript)" "$(field end_of_speech_to_first_token)" \
        "$(field end_of_speech_to_first_audio)" "$(field stt_real_time_factor)" "$tts_rtf"
done
echo
echo "seconds from the end of speech (the recording's arrival); goal: first audio <= 1.5 s"

#!/usr/bin/env bash
# Fuzzes every parser of outside input (fuzz/README.md lists the targets) for SECONDS each,
# one target at a time on one core, and prints each target's executions.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     # default 240 s, every target
#
# Installs cargo-fuzz when missing (crates.io). cargo-fuzz needs nightly compiler flags: on a
# stable toolchain they are allowed with RUSTC_BOOTSTRAP=1, set here. Each target starts
# from its checked-in seeds (fuzz/seeds/<target>/) and keeps what it finds in
# fuzz/corpus/<target>/ (not checked in), so a second run goes on where the first stopped.
# A crash stops that target: its input is in fuzz/artifacts/<target>/; add it to
# tests/fuzz_regressions/<target>/ once fixed. Logs: $TUTORD_FUZZ_LOGS (/tmp/tutord-fuzz).
source "$(dirname "$0")/common.sh"

SECONDS_EACH="${1:-240}"
shift || true
TARGETS=("$@")
# Its own build folder: the sanitizer flags would otherwise rebuild the normal one.
FUZZ_TARGET_DIR="${TUTORD_FUZZ_TARGET_DIR:-$CACHE/target-fuzz}"
LOGS="${TUTORD_FUZZ_LOGS:-/tmp/tutord-fuzz}"

# Longest input per target: room for the biggest seed (models.toml is 12.5 kB), small enough
# that an execution stays quick.
declare -A MAX_LEN=(
    [config]=16384 [config_layers]=16384 [catalog]=16384 [boards]=8192
    [wav]=16384 [gguf]=256 [ct2]=8192 [vocab]=4096 [convert]=8192 [piper_settings]=8192
)

apt_install "${BUILD_PACKAGES[@]}"
need_rust
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi
rustc --version | grep -q nightly || export RUSTC_BOOTSTRAP=1
mkdir -p "$LOGS"

cd "$REPO"
if [ "${#TARGETS[@]}" -eq 0 ]; then
    mapfile -t TARGETS < <(cargo fuzz list)
fi
log "building the fuzz targets (first build: ~15 min on 2 cores)"
cargo fuzz build --target-dir "$FUZZ_TARGET_DIR"

results=()
failed=0
for t in "${TARGETS[@]}"; do
    [ -n "${MAX_LEN[$t]:-}" ] || die "no max_len for target $t: add it to MAX_LEN in $0"
    mkdir -p "fuzz/corpus/$t"
    log "fuzzing $t for $SECONDS_EACH s"
    status=ok
    start=$SECONDS
    # One process, one core (no -jobs/-workers); -timeout reports an input that takes over
    # 10 s as a hang; -rss_limit_mb one that needs more than 2 GiB.
    cargo fuzz run --target-dir "$FUZZ_TARGET_DIR" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
        -max_len="${MAX_LEN[$t]}" -print_final_stats=1 >"$LOGS/$t.log" 2>&1 || status=FAILED
    # libFuzzer's own count of the seconds it ran; the wall time where it stopped early.
    ran="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$LOGS/$t.log" | tail -1)"
    ran="${ran:-$((SECONDS - start))}"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$t.log" | tail -1)"
    units="$(find "fuzz/corpus/$t" -type f | wc -l)"
    if [ "$status" != ok ]; then
        failed=1
        grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY)|Test unit written' "$LOGS/$t.log" | head -5 >&2 || true
    fi
    results+=("$(printf '%-15s %8s s %12s execs %8s exec/s %6s corpus  %s' \
        "$t" "$ran" "${execs:-?}" "${rate:-?}" "$units" "$status")")
done

printf '\n%-15s %10s %18s %15s %13s  %s\n' target seconds executions rate corpus result
printf '%s\n' "${results[@]}"
printf 'logs: %s\n' "$LOGS"
exit "$failed"

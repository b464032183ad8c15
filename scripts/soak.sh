#!/usr/bin/env bash
# Soak: 500 turns in a row with the small model (SmolLM2-135M) on a private bus, then the
# resident memory of tutord and of its engine worker after 20 warm-up turns and at the end.
# Fails when either grew by more than 5 %. Prints the figures docs/reliability.md quotes.
#
#   bash scripts/soak.sh              # 500 turns
#   TUTORD_SOAK_TURNS=2000 bash scripts/soak.sh
#
# A debug build answers a turn in ~1 s on a quiet 2-core machine: ~10 minutes.
source "$(dirname "$0")/common.sh"

cd "$REPO"
log "building tutord, tutord-engine and the load tests"
cargo build --locked --workspace --bins
log "soak: ${TUTORD_SOAK_TURNS:-500} turns"
cargo test --locked --test load resident_memory_drifts_at_most_5_percent_over_500_turns \
    -- --ignored --nocapture

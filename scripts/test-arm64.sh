#!/usr/bin/env bash
# The arm64 tier that runs on any x86-64 Debian machine (issue 18): the benchmark kernels'
# NEON paths, cross-compiled for aarch64 and run under qemu-user against the scalar loops —
# on a Cortex-A76-like CPU with the dot-product extension (`-cpu max`, `-cpu cortex-a76`) and
# on one without it (`-cpu cortex-a53`: the INT8 probe must then report nothing). Speed under
# emulation means nothing: these check results only. Called by scripts/test.sh; about a
# minute from nothing (the cross compiler, qemu-user and Rust's aarch64 standard library).
source "$(dirname "$0")/common.sh"

apt_install gcc-aarch64-linux-gnu qemu-user
need_rust
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    command -v rustup >/dev/null || die "rustup not found: the arm64 tier needs Rust's aarch64 standard library (rustup target add aarch64-unknown-linux-gnu)"
    log "rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
fi

cd "$REPO"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Linked statically, so qemu-aarch64 needs no `-L /usr/aarch64-linux-gnu`: with -L, QEMU 7.2's
# user mode now and then hangs a program that starts threads (the test harness does; seen
# once in CI after passing several runs: 99 % CPU, "running 4 tests", for minutes), as
# README's arm64 section says. A hang is cut by the timeout either way.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
log "cargo clippy -D warnings, aarch64 (the x86-64 lint never sees the NEON code)"
cargo clippy --locked --target aarch64-unknown-linux-gnu -p tutord-kernels --all-targets -- -D warnings
for cpu in max cortex-a76 cortex-a53; do
    log "tutord-kernels on aarch64 under qemu-aarch64 -cpu $cpu"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="timeout 300 qemu-aarch64 -cpu $cpu" \
        cargo test --locked --target aarch64-unknown-linux-gnu -p tutord-kernels
done

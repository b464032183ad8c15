#!/usr/bin/env bash
# The whole test suite: installs what the tests need (a real dbus-daemon, systemd-nspawn and
# debootstrap for the real-systemd tier, the `tutor` group the policy names), then checks
# formatting and lints and runs every test. CI runs exactly this (.ci/run).
# Safe to run again: installs, builds and the nspawn rootfs are cached.
source "$(dirname "$0")/common.sh"

apt_install "${BUILD_PACKAGES[@]}" systemd-container debootstrap util-linux
need_npm
need_rust
prepare_dirs
# The D-Bus policy admits group `tutor`; on the board sysusers creates it.
getent group tutor >/dev/null || as_root groupadd --system tutor

cd "$REPO"
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings
log "cargo test"
# The nspawn and policy tests need root: run the suite as root where we can.
if [ "$(id -u)" -eq 0 ]; then
    cargo test --locked --workspace
else
    cargo test --locked --workspace --no-run
    as_root env "PATH=$PATH" "CARGO_TARGET_DIR=$CARGO_TARGET_DIR" "TUTORD_MODELS_DIR=$TUTORD_MODELS_DIR" \
        "TUTORD_TEST_CACHE=$TUTORD_TEST_CACHE" "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" \
        "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" cargo test --locked --workspace
fi
# ---- image tier (issue 7), off by default: TUTORD_TEST_IMAGE=1 builds the release package,
# the qemu-x86_64 board image and boots it under QEMU (scripts/image-test.sh; README,
# "Packages and board images", has the timings).
if [ "${TUTORD_TEST_IMAGE:-0}" = 1 ]; then
    bash "$REPO/scripts/image-test.sh"
fi
# ---- end of image tier
log "all tests passed"

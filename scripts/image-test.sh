#!/usr/bin/env bash
# The image test tier: installs what building and booting a board image needs, then runs
# tests/image/qemu-boot.sh (package from HEAD, the qemu-x86_64 image or, with
# `--flavour qemu-arm64`, the arm64 one; first boot under QEMU, checks on a port of its own).
# scripts/test.sh runs it when TUTORD_TEST_IMAGE is set (CI: qemu-arm64).
# Cached: the release build (/var/cache/tutord-dev/target-image), the image's base rootfs
# (/var/cache/tutord-test/image); a rerun with both cached takes a few minutes, mostly boot.
source "$(dirname "$0")/common.sh"

# Which flavour: qemu-x86_64 (default) or qemu-arm64 (`--flavour qemu-arm64`).
flavour=qemu-x86_64
args=("$@")
for i in "${!args[@]}"; do
    [ "${args[$i]}" = --flavour ] && flavour=${args[$((i + 1))]:-}
done
case "$flavour" in
    qemu-arm64) qemu=qemu-system-aarch64; qpkg=qemu-system-arm ;;
    *) qemu=qemu-system-x86_64; qpkg=qemu-system-x86 ;;
esac
# QEMU from bookworm-backports: bookworm's own conflicts with the qemu-utils from backports
# that these machines have (DESIGN.md, test strategy), and only 10.x has what qemu-arm64 uses.
if ! command -v "$qemu" >/dev/null; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to apt's sources (for $qpkg)"
        as_root tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "$qpkg"
fi
apt_install "${BUILD_PACKAGES[@]}" mmdebstrap arch-test e2fsprogs fdisk zstd bmap-tools util-linux
need_rust
prepare_dirs

cd "$REPO" || exit 1
# image/build.sh fetches what the image carries and this machine's models folder lacks (from
# nothing: the aarch64 ONNX Runtime) with a host tutorctl of this tree: the test build's.
cargo build --locked -p tutord --bin tutorctl
log "image tier: tests/image/qemu-boot.sh (package, $flavour image, boot under QEMU)"
start=$SECONDS
as_root env "PATH=$PATH" "TUTORD_TEST_CACHE=$TUTORD_TEST_CACHE" "TUTORD_MODELS_DIR=$TUTORD_MODELS_DIR" \
    "TUTORCTL=$CARGO_TARGET_DIR/debug/tutorctl" \
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
    bash tests/image/qemu-boot.sh "$@"
log "image tier passed in $((SECONDS - start)) s"

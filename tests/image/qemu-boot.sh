#!/bin/bash
# Image test tier: build a qemu board image (image/build.sh) and boot it under QEMU like a
# board's first boot, then check from outside, on a port of its own, that tutord reached
# READY, answered Diagnostics over D-Bus, logged its benchmark and plan, answered a typed
# question (and on qemu-arm64 a spoken one, from a WAV its own voice made), kept them in
# History, and undid its tuning when stopped.
#
# Usage: tests/image/qemu-boot.sh [--flavour qemu-x86_64|qemu-arm64] [--deb FILE] [--image FILE.img]
#   --flavour  which image (default qemu-x86_64). qemu-arm64: QEMU's `virt` machine, a
#              Cortex-A76 (dotprod), 4 vCPUs, 3 GiB, the boards' package and models
#   --deb      the package to put in the image (default: packaging/build-deb.sh --rev HEAD,
#              with --arch arm64 for qemu-arm64: a cross build)
#   --image    boot this already-built image (its vmlinuz, initrd.img and cmdline beside it)
#              instead of building one
# Environment: TUTORD_TEST_CACHE (default /var/cache/tutord-test), TUTORD_QEMU_TIMEOUT
#   (seconds for the whole boot, default 900 on x86-64, 2880 on arm64: above the report
#   unit's own 45 min), TUTORD_QEMU_MEM (MiB,
#   default 2048 on x86-64, 3072 on arm64).
# Prints "ok: ..." / "FAIL: ..." lines and timings; exit 0 only when every check passed.
#
# QEMU runs with TCG (software emulation, multi-threaded): /dev/kvm exists on the CI
# machines but does not run guests. TUTORD_QEMU_ACCEL=kvm uses KVM where it works (x86-64).
# Speed under emulation means nothing: the checks are about function.
# qemu is a plain process here, not a systemd: no cgroup precautions are needed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${TUTORD_TEST_CACHE:-/var/cache/tutord-test}
FAILED=0
FAILS=
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; FAILS="$FAILS
FAIL: $*"; }
die()  { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

FLAVOUR=qemu-x86_64
DEB=
IMG=
while [ $# -gt 0 ]; do
    case "$1" in
        --flavour) FLAVOUR=$2; shift 2 ;;
        --deb) DEB=$2; shift 2 ;;
        --image) IMG=$2; shift 2 ;;
        *) echo "usage: $0 [--flavour qemu-x86_64|qemu-arm64] [--deb FILE] [--image FILE.img]" >&2; exit 2 ;;
    esac
done
case "$FLAVOUR" in
    qemu-x86_64) ARCH=amd64; QEMU=qemu-system-x86_64; QPKG=qemu-system-x86 ;;
    qemu-arm64) ARCH=arm64; QEMU=qemu-system-aarch64; QPKG=qemu-system-arm ;;
    *) die "no boot test for flavour $FLAVOUR (qemu-x86_64, qemu-arm64)" ;;
esac
[ "$(id -u)" = 0 ] || skip "needs root (mmdebstrap, chroot)"
command -v "$QEMU" >/dev/null ||
    skip "$QEMU not installed (apt-get install -t bookworm-backports $QPKG, see DESIGN.md)"

# ---------------------------------------------------------------- build
if [ -z "$IMG" ]; then
    if [ -z "$DEB" ]; then
        t0=$SECONDS
        DEB=$("$REPO/packaging/build-deb.sh" --arch "$ARCH" --rev HEAD) || die "packaging/build-deb.sh failed"
        ok "package built: $DEB ($((SECONDS - t0)) s)"
    fi
    t0=$SECONDS
    IMG=$("$REPO/image/build.sh" "$FLAVOUR" --deb "$DEB" --out "$CACHE/image/out/$FLAVOUR") ||
        die "image/build.sh $FLAVOUR failed"
    ok "image built: $IMG ($((SECONDS - t0)) s)"
fi
DIR=$(dirname "$IMG")
for f in "$IMG" "$DIR/vmlinuz" "$DIR/initrd.img" "$DIR/cmdline"; do
    [ -f "$f" ] || die "$f missing"
done
# The flashing path: the compressed image and its bmap reproduce the raw image.
if [ -f "$IMG.zst" ] && [ -f "$IMG.bmap" ] && command -v bmaptool >/dev/null; then
    t0=$SECONDS
    tmpimg=$(mktemp "$CACHE/image/flash-check.XXXXXX")
    if bmaptool -q copy --bmap "$IMG.bmap" "$IMG.zst" "$tmpimg" 2>&1 && cmp -s "$IMG" "$tmpimg"; then
        ok "bmaptool copy of the .img.zst reproduces the image ($((SECONDS - t0)) s)"
    else
        fail "bmaptool copy --bmap $IMG.bmap $IMG.zst does not reproduce $IMG"
    fi
    rm -f "$tmpimg"
    (cd "$DIR" && sha256sum --quiet -c SHA256SUMS) && ok "SHA256SUMS match" || fail "SHA256SUMS do not match"
fi

# ---------------------------------------------------------------- boot
# The last boot's console, report and qemu output stay here for a look afterwards.
WORK=$CACHE/image/last-boot
rm -rf "$WORK"; mkdir -p "$WORK"
trap 'rm -f "$WORK/disk.qcow2"' EXIT
# A card larger than the image, as on a board: first boot must grow the root partition.
qemu-img create -q -f qcow2 -b "$(realpath "$IMG")" -F raw "$WORK/disk.qcow2" 4G
CMDLINE="$(cat "$DIR/cmdline") tutord.report=1 systemd.show_status=1"
t0=$(date +%s%N)
ACCEL=${TUTORD_QEMU_ACCEL:-tcg}
[ "$ACCEL" = tcg ] && ACCEL=tcg,thread=multi
if [ "$ARCH" = amd64 ]; then
    TIMEOUT=${TUTORD_QEMU_TIMEOUT:-900}
    # ttyS0: the console (kernel, systemd, getty) into a file; ttyS1: the report unit's output.
    timeout "$TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -cpu max -smp 2 -m "${TUTORD_QEMU_MEM:-2048}" \
        -kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.img" -append "$CMDLINE" \
        -drive "file=$WORK/disk.qcow2,if=virtio,format=qcow2" \
        -nic none -no-reboot -display none -monitor none \
        -serial "file:$WORK/console.log" -serial "file:$WORK/report.log" \
        </dev/null >"$WORK/qemu.log" 2>&1
else
    TIMEOUT=${TUTORD_QEMU_TIMEOUT:-2880}
    # `virt` has one UART (ttyAMA0, the console); the report goes to a virtio console (hvc0).
    # cortex-a76: the Rock 5B's big core, with the dot-product extension tutord's INT8 probe
    # and llama.cpp's arm64 build (armv8.2-a+dotprod+fp16) need.
    timeout "$TIMEOUT" qemu-system-aarch64 -M virt -accel "$ACCEL" -cpu cortex-a76 -smp 4 \
        -m "${TUTORD_QEMU_MEM:-3072}" \
        -kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.img" -append "$CMDLINE" \
        -drive "file=$WORK/disk.qcow2,if=none,id=disk,format=qcow2" -device virtio-blk-pci,drive=disk \
        -device virtio-serial-pci -chardev "file,id=report,path=$WORK/report.log" \
        -device virtconsole,chardev=report \
        -nic none -no-reboot -display none -monitor none -serial "file:$WORK/console.log" \
        </dev/null >"$WORK/qemu.log" 2>&1
fi
rc=$?
boot_s=$(( ($(date +%s%N) - t0) / 1000000 ))
boot_fmt="$((boot_s / 1000)).$(printf '%03d' $((boot_s % 1000))) s"
report=$(tr -d '\r' <"$WORK/report.log" 2>/dev/null)
section() {  # NAME: the lines of report section NAME
    printf '%s\n' "$report" | awk -v s="=== $1" '$0 == s { on = 1; next } /^=== / { on = 0 } on'
}
field() { section boot | sed -n "s/^$1: //p"; }

if [ "$rc" = 124 ]; then
    fail "qemu did not power off within $TIMEOUT s"
elif [ "$rc" != 0 ]; then
    fail "qemu exited with $rc: $(tail -n 5 "$WORK/qemu.log")"
else
    ok "the image booted, ran the report and powered off: $boot_fmt in qemu (${ACCEL%%,*})"
fi
printf '%s\n' "$report" | grep -q '^=== end$' || fail "the report is incomplete (no '=== end'; the other checks read what arrived)"

st=$(field tutord-active)
if [ "$st" = active ]; then ok "tutord.service active (READY=1 received) at boot"; else fail "tutord.service is '$st' after boot"; fi
st=$(field tutord-enabled)
[ "$st" = enabled ] && ok "tutord.service enabled by the package" || fail "tutord.service is-enabled: '$st'"
st=$(field status-text)
case "$st" in *[Rr]eady*) ok "StatusText: $st" ;; *) fail "StatusText '$st' does not say ready" ;; esac
ts=$(field timestamps)
read -r start_us ready_us <<<"$ts"
if [ -n "${ready_us:-}" ] && [ "${ready_us:-0}" -gt 0 ]; then
    ok "tutord ready $(( ready_us / 1000000 )).$(printf '%03d' $(( ready_us / 1000 % 1000 ))) s after the kernel started (start to ready: $(( (ready_us - start_us) / 1000 )) ms)"
fi

st=$(section tutorctl-status)
printf '%s\n' "$st" | grep -q 'State: ready' && ok "tutorctl status: $(printf '%s' "$st" | tr -s '\n' ' ' | head -c 240)" ||
    fail "tutorctl status: $st"
st=$(section diagnostics)
case "$st" in
    'a{sv}'*) ok "busctl call ... Diagnostics answers: $(printf '%s' "$st" | head -c 160)" ;;
    *) fail "busctl call ... Diagnostics: $st" ;;
esac

ids=$(section journal-ids)
for pair in BENCHMARKED:81f33183ab7c44a3bbdaa986a6c83be0 PLANNED:787cdaa98af248aabd9aa4681d926c6a \
    READY:f080c398c64642f39af0abb35b8dc87b; do
    name=${pair%%:*}; id=${pair#*:}
    line=$(printf '%s\n' "$ids" | grep -m1 "^$id ")
    if [ -n "$line" ]; then ok "journal $name: ${line#* }"; else fail "no journal entry with MESSAGE_ID $id ($name)"; fi
done
# The model in the image was chosen and loaded (the plan names it; MODEL_LOADED follows).
if printf '%s\n' "$ids" | grep -q '^0c1f4e8e2b6d4a0b9d0f3c5a7e9b1d23 '; then
    ok "journal: $(printf '%s\n' "$ids" | grep -m1 '^0c1f4e8e2b6d4a0b9d0f3c5a7e9b1d23 ' | cut -d' ' -f2-)"
else
    fail "tutord did not load the image's model (no MESSAGE_ID 0c1f4e8e…)"
fi
# A typed question answered by the image's model.
st=$(section ask)
if printf '%s\n' "$st" | grep -q 'ok: true'; then
    ok "a typed question answered: $(printf '%s\n' "$st" | head -n 1 | cut -c1-160)"
else
    fail "tutorctl ask in the image: $(printf '%s' "$st" | tail -n 5 | tr '\n' ' ')"
fi
if [ "$ARCH" = arm64 ]; then
    # The NEON read kernel measured the bus (the BENCHMARKED line names the kernel).
    line=$(printf '%s\n' "$ids" | grep -m1 '^81f33183ab7c44a3bbdaa986a6c83be0 ')
    case "$line" in
        *", neon, "*) ok "the benchmark ran the NEON kernel" ;;
        *) fail "the BENCHMARKED line names no NEON kernel: ${line#* }" ;;
    esac
    # A spoken question from a WAV the image's own voice made: whisper and Piper on aarch64.
    st=$(section listen)
    transcript=$(printf '%s\n' "$st" | sed -n 's/^ *transcript: //p' | head -n 1)
    # Spelled as whisper writes it ("What is 2+2?", "two plus two"): compared lower-case
    # without spaces.
    case "$(printf '%s' "$transcript" | tr 'A-Z' 'a-z' | tr -d ' ')" in
        *"twoplustwo"*|*"2plus2"*|*"2+2"*) ok "a spoken question heard and answered: \"$transcript\"" ;;
        *) fail "the spoken question: transcript '$transcript'; $(printf '%s' "$st" | tail -n 8 | tr '\n' ' ')" ;;
    esac
    printf '%s\n' "$st" | grep -q 'ok: true' || fail "the spoken question was not answered: $(printf '%s' "$st" | tail -n 5 | tr '\n' ' ')"
    want_turns=2
else
    want_turns=1
fi
st=$(section history | tail -n 1)
if [ "${st:-0}" -ge "$want_turns" ] 2>/dev/null; then
    ok "History holds the session's $st turns"
else
    fail "History: '$st' turns, expected at least $want_turns"
fi
st=$(section stop)
if printf '%s\n' "$st" | grep -q '^exit: 0' && printf '%s\n' "$st" | grep -q 'tuning undone'; then
    ok "a clean stop: exit 0, $(printf '%s\n' "$st" | grep -m1 'tuning undone' | cut -c1-120)"
else
    fail "the stop: $(printf '%s' "$st" | tr '\n' ' ')"
fi
st=$(section failed-units)
[ -z "$st" ] && ok "no failed units" || fail "failed units: $(printf '%s' "$st" | tr -s '\n' ' ')"
st=$(section journald)
printf '%s\n' "$st" | grep -q '/var/log/journal' && ok "journal is persistent: $(printf '%s' "$st" | tail -n1)" ||
    fail "journal not in /var/log/journal: $st"
st=$(section disk)
ok "root filesystem at first boot (grown from the image's size to the 4 GiB disk?): $st"
case "$st" in *[34].?G*|*[34]G*) ok "root filesystem grew to the disk" ;; *) fail "root filesystem did not grow: $st" ;; esac

if [ "$FAILED" != 0 ]; then
    echo "---- report (ttyS1) ----"; printf '%s\n' "$report" | tail -n 120
    echo "---- console (ttyS0), last 80 lines ----"; tr -d '\r' <"$WORK/console.log" 2>/dev/null | tail -n 80
    echo "---- qemu ----"; cat "$WORK/qemu.log"
    echo "(console, report and qemu output kept in $WORK)"
    # Again at the very end: CI shows only the tail of a long log, and the dumps above pushed
    # the first list out of it (an image tier failed with no visible reason that way).
    echo "---- the failed checks (of the report's $(printf '%s\n' "$report" | wc -l) lines; boot section below) ----"
    printf '%s\n' "$FAILS" | sed '/^$/d' | cut -c1-400
    section boot
    echo "sections as they arrived (with when each began): $(printf '%s\n' "$report" | grep '^=== ' | sed 's/^=== //' | tr '\n' ' ')"
    exit 1
fi
echo "sections as they arrived (with when each began): $(printf '%s\n' "$report" | grep '^=== ' | sed 's/^=== //' | tr '\n' ' ')"
echo "qemu-boot.sh: all checks passed (boot to poweroff $boot_fmt)"

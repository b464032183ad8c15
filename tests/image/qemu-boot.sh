#!/bin/bash
# Image test tier: build the qemu-x86_64 board image (image/build.sh) and boot it under QEMU
# like a board's first boot, then check from outside, on the second serial port, that
# tutord reached READY, answered Diagnostics over D-Bus and logged its benchmark and plan.
#
# Usage: tests/image/qemu-boot.sh [--deb FILE] [--image FILE.img]
#   --deb    the package to put in the image (default: packaging/build-deb.sh --rev HEAD)
#   --image  boot this already-built qemu-x86_64 image (its vmlinuz, initrd.img and cmdline
#            beside it) instead of building one
# Environment: TUTORD_TEST_CACHE (default /var/cache/tutord-test), TUTORD_QEMU_TIMEOUT
#   (seconds for the whole boot, default 900), TUTORD_QEMU_MEM (MiB, default 2048).
# Prints "ok: ..." / "FAIL: ..." lines and timings; exit 0 only when every check passed.
#
# QEMU runs with TCG (software emulation, multi-threaded): /dev/kvm exists on the CI
# machines but does not run guests. TUTORD_QEMU_ACCEL=kvm uses KVM where it works.
# qemu is a plain process here, not a systemd: no cgroup precautions are needed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${TUTORD_TEST_CACHE:-/var/cache/tutord-test}
FAILED=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }
die()  { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

DEB=
IMG=
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) DEB=$2; shift 2 ;;
        --image) IMG=$2; shift 2 ;;
        *) echo "usage: $0 [--deb FILE] [--image FILE.img]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot)"
command -v qemu-system-x86_64 >/dev/null ||
    skip "qemu-system-x86_64 not installed (apt-get install -t bookworm-backports qemu-system-x86, see DESIGN.md)"

# ---------------------------------------------------------------- build
if [ -z "$IMG" ]; then
    if [ -z "$DEB" ]; then
        t0=$SECONDS
        DEB=$("$REPO/packaging/build-deb.sh" --rev HEAD) || die "packaging/build-deb.sh failed"
        ok "package built: $DEB ($((SECONDS - t0)) s)"
    fi
    t0=$SECONDS
    IMG=$("$REPO/image/build.sh" qemu-x86_64 --deb "$DEB" --out "$CACHE/image/out/qemu-x86_64") ||
        die "image/build.sh qemu-x86_64 failed"
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
TIMEOUT=${TUTORD_QEMU_TIMEOUT:-900}
t0=$(date +%s%N)
# ttyS0: the console (kernel, systemd, getty) into a file; ttyS1: the report unit's output.
ACCEL=${TUTORD_QEMU_ACCEL:-tcg}
[ "$ACCEL" = tcg ] && ACCEL=tcg,thread=multi
timeout "$TIMEOUT" qemu-system-x86_64 -accel "$ACCEL" -cpu max -smp 2 -m "${TUTORD_QEMU_MEM:-2048}" \
    -kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.img" -append "$CMDLINE" \
    -drive "file=$WORK/disk.qcow2,if=virtio,format=qcow2" \
    -nic none -no-reboot -display none -monitor none \
    -serial "file:$WORK/console.log" -serial "file:$WORK/report.log" \
    </dev/null >"$WORK/qemu.log" 2>&1
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
    exit 1
fi
echo "qemu-boot.sh: all checks passed (boot to poweroff $boot_fmt)"

#!/usr/bin/env bash
# Builds a tutord board image: one recipe, one flavour per board (image/flavours/*.conf).
#
# Usage: image/build.sh FLAVOUR [--deb FILE] [--out DIR] [--locked] [--update-lock]
#   FLAVOUR        qemu-x86_64 | qemu-arm64 | rock5b | orin-nano
#   --deb FILE     the tutord package to install (default: packaging/build-deb.sh builds one
#                  for the flavour's architecture)
#   --out DIR      output directory (default $TUTORD_TEST_CACHE/image/out/FLAVOUR)
#   --locked       install the kernel and flavour packages at the versions in
#                  image/lock/FLAVOUR.lock and fail when any package's version differs from it
#                  (use with a snapshot mirror, TUTORD_IMAGE_MIRROR, to rebuild an old image);
#                  without it the build takes what the archive has now and lists what differs
#   --update-lock  write image/lock/FLAVOUR.lock from this build
#   --base-only    build (or find cached) the flavour's base rootfs and stop: no package needed
# Environment: TUTORD_IMAGE_MIRROR (Debian mirror; for a bit-for-bit rebuild of an old image
#   use a snapshot, e.g. http://snapshot.debian.org/archive/debian/20250520T000000Z),
#   TUTORD_MODELS_DIR (fetched models to copy in, default /var/cache/tutord-dev/models),
#   TUTORD_IMAGE_MODELS (catalog names; default: the flavour's FLAVOUR_MODELS, else the
#                        catalog's default = true entries),
#   flavour variables (TUTORD_ROCK5B_BSP, TUTORD_L4T_DIR: see the flavour files).
# A flavour file states IMAGE_MAX_MIB, the most its image (an overlay: its contents) may take,
# and a board's flavour its FLAVOUR_BOARD, whose choice FLAVOUR_MODELS lists
# (`tutorctl plan --board NAME`; tests/flavours.rs holds the two together).
# Output: tutord-FLAVOUR-VERSION.img (raw, kept for test boots), .img.zst, .img.bmap,
#   SHA256SUMS, packages.manifest (every Debian package and version in the image).
#
# Why a plain mmdebstrap script and not mkosi or debos: bookworm's mkosi (14) and debos
# need either KVM (debos' fakemachine; /dev/kvm does not run guests on the CI machines) or
# systemd-nspawn from the caller's cgroup (mkosi), which on these machines moves every process
# into the container's scopes (DESIGN.md, test strategy). mmdebstrap + chroot in a private
# mount namespace + mkfs.ext4 -d + sfdisk needs no loop devices, no KVM and no root cgroup
# tricks, and every step is here to read. Base rootfs are cached (by recipe) like the nspawn
# test rootfs, so a rebuild with a new package takes about a minute.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CACHE=${TUTORD_TEST_CACHE:-/var/cache/tutord-test}/image
# Debian 13 (trixie), the current stable, on a Debian 12 build host: bookworm's mmdebstrap
# installs any suite with the host's apt, and bookworm's keyring holds trixie's keys.
SUITE=trixie
RECIPE_VERSION=3
# In every flavour: systemd as init, the system bus, udev for devices, polkit for tutord's
# unit tuning (its JavaScript rules), fsck for the root filesystem, and systemd-repart, which
# grows the root partition to the card at first boot (its own package since Debian 13: without
# it the first boot of a trixie image kept the image's 865 MiB on a 4 GiB disk), and zstd,
# which initramfs-tools compresses with (without it: gzip, and a warning).
BASE_PACKAGES="systemd,systemd-sysv,systemd-repart,dbus,udev,kmod,polkitd,libpam-systemd,e2fsprogs,procps,init-system-helpers,ca-certificates,zstd"

log() { printf 'image/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

FLAVOUR=
DEB=
OUT=
LOCKED=
UPDATE_LOCK=
BASE_ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) DEB=$(realpath "$2"); shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --locked) LOCKED=1; shift ;;
        --update-lock) UPDATE_LOCK=1; shift ;;
        --base-only) BASE_ONLY=1; shift ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$FLAVOUR" ] || die "one flavour at a time"; FLAVOUR=$1; shift ;;
    esac
done
[ -n "$FLAVOUR" ] || die "which flavour? $(cd "$HERE/flavours" && ls ./*.conf | sed 's|^\./||; s/\.conf$//' | paste -sd' ')"
CONF=$HERE/flavours/$FLAVOUR.conf
[ -f "$CONF" ] || die "no flavour $FLAVOUR (image/flavours/$FLAVOUR.conf)"
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap, chroot, file ownership in the image)"

OUTPUT=disk
OVERLAY_EXCLUDE=
KERNEL_PACKAGES=
FLAVOUR_PACKAGES=
FLAVOUR_BOARD=
IMAGE_MAX_MIB=
INITRAMFS_MODULES=
FIRST_SECTOR=2048
# shellcheck source=image/flavours/qemu-x86_64.conf
source "$CONF"

OUT=${OUT:-$CACHE/out/$FLAVOUR}
WORK=$CACHE/work-$FLAVOUR
LOCK=$HERE/lock/$FLAVOUR.lock
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$REPO/Cargo.toml")
NAME=tutord-$FLAVOUR-$VERSION
HOST_ARCH=$(dpkg --print-architecture)

# Stable identifiers derived from the flavour: /etc/fstab, extlinux.conf and the kernel
# command line can name the root partition and filesystem before they exist.
uuid_of() {
    local h
    h=$(printf '%s' "$1" | sha256sum | cut -c1-32)
    printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
PART_UUID=$(uuid_of "tutord-image-$FLAVOUR-root-partition")
FS_UUID=$(uuid_of "tutord-image-$FLAVOUR-root-filesystem")
DISK_UUID=$(uuid_of "tutord-image-$FLAVOUR-disk")

# ---------------------------------------------------------------- helpers
find_mirror() {
    # A Debian mirror apt uses here (deb822 or one-line sources; the same URL serves every
    # suite), else deb.debian.org.
    local m
    m=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
        grep -v security | grep -oE 'https?://[^ ]*debian/?' | head -n1 || true)
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=${TUTORD_IMAGE_MIRROR:-$(find_mirror)}
MIRROR=${MIRROR%/}

# in_root ROOT CMD...: runs CMD chrooted in ROOT with /proc mounted, in a mount namespace of
# its own, so that nothing stays mounted when it ends, however it ends. /sys is not mounted
# on purpose: the package's tmpfiles would change the build machine's cpufreq governors.
in_root() {
    local root=$1; shift
    unshare --mount --propagation private -- /bin/sh -c '
        root=$1; shift
        mount -t proc proc "$root/proc" || exit 1
        mount -t tmpfs tmpfs "$root/run" || exit 1
        exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
    ' sh "$root" "$@"
}

need_tools() {
    local t missing=()
    for t in mmdebstrap mkfs.ext4 sfdisk zstd bmaptool unshare; do
        command -v "$t" >/dev/null || missing+=("$t")
    done
    [ "${#missing[@]}" -eq 0 ] ||
        die "missing ${missing[*]}: apt-get install mmdebstrap arch-test e2fsprogs fdisk zstd bmap-tools util-linux"
    if [ "$ARCH" != "$HOST_ARCH" ] && [ "$ARCH" = arm64 ]; then
        binfmt_aarch64
    fi
}

# An arm64 rootfs on an amd64 machine: the maintainer scripts, and apt and dpkg in the
# chroot, run under qemu-user, started by the kernel through binfmt_misc. Debian's
# qemu-user-static registers its handlers through systemd-binfmt, which does not run in
# containers and CI jobs without systemd: then the handler is registered here, from the
# package's own /usr/lib/binfmt.d/qemu-aarch64.conf, whose flags include F (the kernel opens
# the static interpreter at registration, so it works inside the chroot too).
binfmt_aarch64() {
    local b=/proc/sys/fs/binfmt_misc conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    if [ ! -e /usr/bin/qemu-aarch64-static ]; then
        (source "$REPO/scripts/common.sh" && apt_install qemu-user-static) >&2 ||
            die "building an arm64 rootfs on $HOST_ARCH needs qemu-user-static (apt-get install qemu-user-static)"
    fi
    [ -e "$b/register" ] || mount -t binfmt_misc binfmt_misc "$b" ||
        die "cannot mount binfmt_misc on $b (a container without it cannot run arm64 programs)"
    if [ ! -e "$b/qemu-aarch64" ]; then
        [ -f "$conf" ] || die "$conf missing (qemu-user-static)"
        log "registering the qemu-aarch64 binfmt handler from $conf"
        grep -v '^#' "$conf" >"$b/register" || die "registering $conf in $b failed"
    fi
    [ "$(head -n1 "$b/qemu-aarch64")" = enabled ] || die "the qemu-aarch64 binfmt handler is disabled ($b/qemu-aarch64)"
    grep -q '^flags:.*F' "$b/qemu-aarch64" ||
        log "warning: the qemu-aarch64 binfmt handler has no F flag: programs in the chroot may not find the interpreter"
}

# ---------------------------------------------------------------- base rootfs (cached)
# Packages as apt-get install takes them: pinned to the lock's version only with --locked (from
# a snapshot mirror that still has it): Debian's archive keeps only the newest point release,
# so a default build takes what the archive has and check_lock says what differs.
# "name/suite" picks a suite, e.g. trixie-backports.
pinned() {
    local p v
    for p in "$@"; do
        v=
        [ -n "$LOCKED" ] && [ -f "$LOCK" ] && v=$(awk -v p="${p%%/*}" -v arch="$ARCH" '$1 == p || $1 == p ":" arch { print $2; exit }' "$LOCK")
        if [ -n "$v" ]; then echo "${p%%/*}=$v"; else echo "$p"; fi
    done
}

# Debian + the kernel: everything but the flavour's own packages, its initrd, tutord, its
# model and the overlays. Flavours of one architecture with the same kernel share it (rock5b
# and qemu-arm64: one arm64 base, built once).
#
# mmdebstrap, not debootstrap: apt resolves and downloads natively on the build machine and
# dpkg configures everything in one run with unsafe I/O, so for a foreign architecture only
# the maintainer scripts run under qemu-user. debootstrap's second stage ran dpkg package by
# package under emulation: over 30 min for the arm64 base on the CI machines.
base_rootfs() {
    local key dest tmp pkgs=() sources=()
    # shellcheck disable=SC2086 # word splitting: a list of package names
    mapfile -t pkgs < <(pinned $KERNEL_PACKAGES)
    key=$(printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$ARCH" "$MIRROR" "$BASE_PACKAGES" "${pkgs[@]}" |
        sha256sum | cut -c1-16)
    dest=$CACHE/base-$ARCH-$key
    if [ -f "$dest/.tutord-image-base" ]; then
        log "base rootfs cached: $dest"
        BASE=$dest; return
    fi
    mkdir -p "$CACHE"
    rm -rf --one-file-system "$CACHE/base-$ARCH-"*.tmp
    tmp=$dest.tmp
    local t0=$SECONDS
    # Security and point-release updates too: a flashed board should not start out of date.
    sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $MIRROR $SUITE-backports main"
        "deb ${TUTORD_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $SUITE-security main")
    case "$MIRROR" in *snapshot.debian.org*) sources=("deb $MIRROR $SUITE main") ;; esac
    log "mmdebstrap $SUITE $ARCH from $MIRROR (once per recipe; for a foreign architecture the maintainer scripts run under qemu-user)"
    # In a mount namespace of its own: nothing stays mounted however it ends. /sys stays out
    # of the chroot (in_root says why).
    unshare --mount --propagation private -- \
        mmdebstrap --mode=root --variant=minbase --architectures="$ARCH" --include="$BASE_PACKAGES" \
        --skip=chroot/mount/sys --skip=cleanup/apt/lists --aptopt='Acquire::Retries "3"' \
        "$SUITE" "$tmp" "${sources[@]}" >"$CACHE/mmdebstrap-$ARCH.log" 2>&1 ||
        { tail -n 30 "$CACHE/mmdebstrap-$ARCH.log" >&2; die "mmdebstrap failed (log: $CACHE/mmdebstrap-$ARCH.log)"; }
    log "Debian $SUITE $ARCH in $((SECONDS - t0)) s"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf"
    # No daemon may start inside the chroot (invoke-rc.d asks this).
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod 0755 "$tmp/usr/sbin/policy-rc.d"
    if [ "${#pkgs[@]}" -gt 0 ]; then
        # The kernel without an initrd (INITRD=No skips the kernel's hook): make_rootfs
        # builds the flavour's own, with the flavour's modules. apt uses mmdebstrap's lists.
        in_root "$tmp" env INITRD=No apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 ||
            die "apt-get install ${pkgs[*]} in the rootfs failed"
        rm -f "$tmp"/boot/initrd.img-*
        in_root "$tmp" apt-get clean
    fi
    rm -rf "$tmp"/var/lib/apt/lists/*
    touch "$tmp/.tutord-image-base"
    mv -T "$tmp" "$dest"
    log "base rootfs built in $((SECONDS - t0)) s: $dest ($(du -sh "$dest" | cut -f1))"
    BASE=$dest
}

# The flavour's initrd: Debian's default (MODULES=most) unless the flavour lists the modules
# its boot needs in INITRAMFS_MODULES (qemu-arm64: virtio and ext4; under qemu-user 48 s
# instead of 114 s, 10 MB instead of 37). Later kernel updates on the board rebuild it with
# the same settings (they stay in /etc/initramfs-tools).
make_initrd() {
    local root=$1 t0=$SECONDS m
    compgen -G "$root/boot/vmlinuz-*" >/dev/null || return 0
    if [ -n "$INITRAMFS_MODULES" ]; then
        printf '# written by image/build.sh (flavour %s): only the modules listed in ../modules\nMODULES=list\n' \
            "$FLAVOUR" >"$root/etc/initramfs-tools/conf.d/50-tutord-image.conf"
        for m in $INITRAMFS_MODULES; do echo "$m"; done >>"$root/etc/initramfs-tools/modules"
    fi
    in_root "$root" update-initramfs -c -k all >&2 || die "update-initramfs in the rootfs failed"
    log "initrd (${INITRAMFS_MODULES:+MODULES=list: }${INITRAMFS_MODULES:-MODULES=most}) in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- lock (pinned versions)
check_lock() {
    local root=$1 manifest=$2
    in_root "$root" dpkg-query -W -f='${binary:Package} ${Version}\n' | LC_ALL=C sort >"$manifest"
    if [ -n "$UPDATE_LOCK" ]; then
        mkdir -p "$(dirname "$LOCK")"
        # tutord itself is built from this tree: not pinned.
        grep -v '^tutord[: ]' "$manifest" >"$LOCK"
        log "wrote $LOCK ($(wc -l <"$LOCK") packages)"
        return
    fi
    if [ ! -f "$LOCK" ]; then
        log "warning: no $LOCK yet: run with --update-lock to pin these versions"
        return
    fi
    local drift
    drift=$(grep -v '^tutord[: ]' "$manifest" | diff -u "$LOCK" - | grep '^[-+][^-+]' || true)
    if [ -n "$drift" ]; then
        printf '%s\n' "$drift" | head -n 40 >&2
        if [ -n "$LOCKED" ]; then
            die "package versions differ from $LOCK (above); build from a snapshot mirror (TUTORD_IMAGE_MIRROR) or --update-lock"
        fi
        log "warning: package versions differ from $LOCK (above; --locked makes this an error)"
    else
        log "package versions match $LOCK"
    fi
}

# ---------------------------------------------------------------- the models
# Copied from the host's models folder, fetched there first (with a host tutorctl) if missing;
# the catalog's sha256 is checked either way.
add_models() {
    local root=$1 dir=${TUTORD_MODELS_DIR:-/var/cache/tutord-dev/models} names n f sum
    names=${TUTORD_IMAGE_MODELS:-${FLAVOUR_MODELS:-$(awk '/^\[\[model\]\]/ { cur = "" } /^name *=/ { v = $0; gsub(/.*= *"|".*/, "", v); cur = v }
        /^default *= *true/ { print cur }' "$REPO/config/models.toml")}}
    [ -n "$names" ] || { log "no models to add"; return; }
    mkdir -p "$dir"
    for n in $names; do
        f=$(awk -v n="$n" '/^\[\[model\]\]/ { cur = "" } /^name *=/ { v = $0; gsub(/.*= *"|".*/, "", v); cur = v }
            cur == n && /^file *=/ { v = $0; gsub(/.*= *"|".*/, "", v); print v; exit }' "$REPO/config/models.toml")
        sum=$(awk -v n="$n" '/^\[\[model\]\]/ { cur = "" } /^name *=/ { v = $0; gsub(/.*= *"|".*/, "", v); cur = v }
            cur == n && /^sha256 *=/ { v = $0; gsub(/.*= *"|".*/, "", v); print v; exit }' "$REPO/config/models.toml")
        [ -n "$f" ] && [ -n "$sum" ] || die "model $n not in config/models.toml"
        if [ ! -f "$dir/$f" ]; then
            local ctl=${TUTORCTL:-$(command -v tutorctl || true)}
            [ -n "$ctl" ] || ctl=${CARGO_TARGET_DIR:-/var/cache/tutord-dev/target-image}/release/tutorctl
            [ -x "$ctl" ] || die "$dir/$f missing and no tutorctl to fetch it (set TUTORCTL)"
            log "fetching model $n into $dir"
            "$ctl" models --catalog "$REPO/config/models.toml" --dir "$dir" fetch "$n" >&2
        fi
        echo "$sum  $dir/$f" | sha256sum --quiet -c - || die "$dir/$f does not match the catalog's sha256"
        install -D -m 0644 "$dir/$f" "$root/var/lib/tutord/models/$f"
        # The fetcher's verification record, so `tutorctl models list --verify` agrees.
        [ -f "$dir/$f.sha256" ] && install -m 0644 "$dir/$f.sha256" "$root/var/lib/tutord/models/$f.sha256"
        log "model $n ($f, $(du -h "$dir/$f" | cut -f1)) added"
    done
    # In a rootfs with the package installed; an L4T overlay has no user yet (l4t-install.sh).
    if [ -z "${MODELS_NO_CHOWN:-}" ]; then in_root "$root" chown -R tutord:tutord /var/lib/tutord/models; fi
}

# ---------------------------------------------------------------- the rootfs of this image
make_rootfs() {
    local root=$WORK/root o
    rm -rf --one-file-system "$WORK"
    mkdir -p "$WORK"
    log "copying the base rootfs"
    cp -a "$BASE" "$root"
    rm -f "$root/.tutord-image-base"
    # The package, as an administrator installs it: apt resolves Depends, the postinst creates
    # the user and directories and enables tutord (not started: no systemd runs in a chroot).
    cp "$DEB" "$root/tmp/"
    # The base keeps no package lists: fetched again so apt can resolve the Depends it lacks
    # (removed again below; check_lock compares what came with the lock file).
    in_root "$root" apt-get update -qq >&2
    local flavour_pkgs=()
    # shellcheck disable=SC2086 # word splitting: a list of package names
    mapfile -t flavour_pkgs < <(pinned $FLAVOUR_PACKAGES)
    in_root "$root" apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$DEB")" "${flavour_pkgs[@]}" >&2 ||
        die "installing $(basename "$DEB") ${flavour_pkgs[*]} in the rootfs failed"
    rm -f "$root/tmp/$(basename "$DEB")"
    make_initrd "$root"
    for o in $OVERLAYS; do
        [ -d "$HERE/overlay/$o" ] || die "no overlay $o"
        cp -a --no-preserve=ownership "$HERE/overlay/$o/." "$root/"
    done
    for o in $OVERLAY_EXCLUDE; do rm -rf "${root:?}/$o"; done
    add_models "$root"
    # Persistent journal (size cap in journald.conf.d/50-tutord-image.conf).
    mkdir -p "$root/var/log/journal"
    echo tutor >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\ttutor\n' >"$root/etc/hosts"
    # Grown to the card's size at first boot (repart.d + growfs); errors=remount-ro keeps a
    # failing card readable for diagnosis.
    printf '# written by image/build.sh\nPARTUUID=%s / ext4 defaults,noatime,errors=remount-ro,x-systemd.growfs 0 1\n' \
        "$PART_UUID" >"$root/etc/fstab"
    # Each board gets its own machine-id at first boot (ConditionFirstBoot units run then).
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    # Root stays locked (no password): the appliance is driven over D-Bus by the tutor UI;
    # add an admin account in an overlay if the board needs one.
    if declare -F flavour_rootfs >/dev/null; then flavour_rootfs "$root"; fi
    # Offline appliance: no resolver, no apt in the background, no build-time leftovers.
    : >"$root/etc/resolv.conf"
    rm -f "$root/usr/sbin/policy-rc.d"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/tmp/*
    ROOT=$root
}

# ---------------------------------------------------------------- disk image
# The flavour states the most its image may take (IMAGE_MAX_MIB: its models are chosen to
# fit; tests/flavours.rs checks the choice, this the real build).
check_size() {
    local what=$1 mib=$2
    [ -n "${IMAGE_MAX_MIB:-}" ] || die "flavour $FLAVOUR states no IMAGE_MAX_MIB"
    [ "$mib" -le "$IMAGE_MAX_MIB" ] ||
        die "the $what takes $mib MiB, more than flavour $FLAVOUR's IMAGE_MAX_MIB=$IMAGE_MAX_MIB (fewer or smaller models: TUTORD_IMAGE_MODELS)"
    log "the $what takes $mib MiB of the flavour's $IMAGE_MAX_MIB"
}

make_disk() {
    local root=$1 img=$2 used_kib models_kib fs_mib fs sectors total
    used_kib=$(du -sk --one-file-system "$root" | cut -f1)
    models_kib=$(du -sk "$root/var/lib/tutord/models" 2>/dev/null | cut -f1 || echo 0)
    # The system's files + 25 %, the models (a few large files: ext4 needs ~3 % beside them)
    # + 3 %, and 256 MiB for the database, journal and an update; the partition grows to the
    # whole card at first boot.
    fs_mib=$(( (used_kib - models_kib) * 5 / 4 / 1024 + models_kib * 103 / 100 / 1024 + 256 ))
    fs=$WORK/root.ext4
    rm -f "$fs"
    log "mkfs.ext4 -d: ${fs_mib} MiB filesystem from $((used_kib / 1024)) MiB of files"
    mkfs.ext4 -q -F -L tutord-root -U "$FS_UUID" -E lazy_itable_init=0,lazy_journal_init=0 \
        -d "$root" "$fs" "${fs_mib}M" >&2  # stdout carries only the image path
    sectors=$(( fs_mib * 2048 ))
    # + 1 MiB at the end for the backup GPT.
    total=$(( FIRST_SECTOR + sectors + 2048 ))
    check_size "image" $(( total / 2048 ))
    rm -f "$img"
    truncate -s $(( total * 512 )) "$img"
    sfdisk --quiet --no-reread --no-tell-kernel "$img" <<EOF
label: gpt
label-id: $DISK_UUID
start=$FIRST_SECTOR, size=$sectors, type=linux, uuid=$PART_UUID, name=rootfs, attrs="LegacyBIOSBootable"
EOF
    dd if="$fs" of="$img" bs=1M seek=$(( FIRST_SECTOR / 2048 )) conv=notrunc,sparse status=none
    rm -f "$fs"
    if declare -F flavour_disk >/dev/null; then flavour_disk "$img"; fi
}

finish_outputs() {  # IMG: bmap, compressed copy, checksums
    local img=$1
    log "bmap + zstd"
    bmaptool -q create -o "$img.bmap" "$img"
    zstd -q -f -T0 -10 "$img" -o "$img.zst"
    (cd "$(dirname "$img")" && sha256sum "$(basename "$img")" "$(basename "$img").zst" "$(basename "$img").bmap" >SHA256SUMS)
}

# ---------------------------------------------------------------- main
t_start=$SECONDS
if [ -n "$BASE_ONLY" ]; then
    need_tools
    base_rootfs
    echo "$BASE"
    exit 0
fi
if [ -z "$DEB" ]; then
    log "building the $ARCH package (packaging/build-deb.sh)"
    DEB=$("$REPO/packaging/build-deb.sh" --arch "$ARCH")
fi
[ -f "$DEB" ] || die "no package $DEB"
deb_arch=$(dpkg-deb --field "$DEB" Architecture)
[ "$deb_arch" = "$ARCH" ] || die "$DEB is for $deb_arch, flavour $FLAVOUR needs $ARCH"
mkdir -p "$OUT"

if [ "$OUTPUT" = l4t-overlay ]; then
    # shellcheck source=image/l4t.sh
    source "$HERE/l4t.sh"
    l4t_outputs
    log "done in $((SECONDS - t_start)) s: $OUT"
    exit 0
fi

need_tools
base_rootfs
make_rootfs
check_lock "$ROOT" "$OUT/packages.manifest"
if declare -F flavour_outputs >/dev/null; then flavour_outputs "$ROOT" "$OUT"; fi
make_disk "$ROOT" "$OUT/$NAME.img"
finish_outputs "$OUT/$NAME.img"
rm -rf --one-file-system "$WORK"
log "done in $((SECONDS - t_start)) s:"
ls -l "$OUT" >&2
echo "$OUT/$NAME.img"

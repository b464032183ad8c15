#!/bin/bash
# Build (once) and cache a Debian 13 (trixie, systemd 257) rootfs for the systemd-nspawn
# test tier. The build host may be older (Debian 12): bookworm's debootstrap (1.0.128) runs
# trixie through its sid script.
#
# Usage: tests/nspawn/rootfs.sh            -> prints the path of the cached rootfs on stdout
#        (progress and errors go to stderr)
#
# Cache: ${TUTORD_TEST_CACHE:-/var/cache/tutord-test}/rootfs-trixie (an older rootfs-bookworm
# next to it is no longer used and may be removed).
# The rootfs is built into a temporary directory next to it and renamed into place only
# when complete, so an interrupted build is never reused. A stamp file records the recipe;
# changing RECIPE below (or the package list) rebuilds on the next run.
# Mirror: $TUTORD_TEST_MIRROR, else a mirror apt uses for trixie (/etc/apt/sources.list*),
# else http://deb.debian.org/debian (a Debian 12 host's sources name only bookworm).
# Keyring: $TUTORD_TEST_KEYRING, else debootstrap's default, the host's
# /usr/share/keyrings/debian-archive-keyring.gpg. Bookworm's debian-archive-keyring
# (2023.3+deb12u2) already holds trixie's keys: trixie's Release is signed by the
# "Automatic Signing Key (12/bookworm)" and "(13/trixie)" and the "Stable Release Key
# (13/trixie)". An older host keyring makes debootstrap fail with "Release signed by unknown
# key"; then upgrade the host's debian-archive-keyring, or point TUTORD_TEST_KEYRING at
# usr/share/keyrings/debian-archive-keyring.gpg unpacked (dpkg-deb -x) from trixie's
# debian-archive-keyring .deb (pool/main/d/debian-archive-keyring/ on the mirror).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=trixie
VARIANT=minbase
INCLUDE=systemd,systemd-sysv,dbus
# Extra Debian packages (e.g. shared libraries tutord links against), one per line, # comments:
# tests/nspawn/packages. They are part of the recipe, so editing that file rebuilds the rootfs.
if [ -f "$HERE/packages" ]; then
    extra=$(sed -e 's/#.*//' "$HERE/packages" | tr -s ' \t\n' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
    [ -n "$extra" ] && INCLUDE=$INCLUDE,$extra
fi
RECIPE_VERSION=3
RECIPE="tutord-nspawn-rootfs v${RECIPE_VERSION} suite=${SUITE} variant=${VARIANT} include=${INCLUDE}"

CACHE=${TUTORD_TEST_CACHE:-/var/cache/tutord-test}
DEST=$CACHE/rootfs-${SUITE}
STAMP_NAME=.tutord-rootfs-stamp

log() { echo "rootfs.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap)"

is_current() {
    [ -d "$DEST" ] && [ -f "$DEST/$STAMP_NAME" ] && [ "$(cat "$DEST/$STAMP_NAME")" = "$RECIPE" ]
}

# Fast path without the lock.
if is_current; then
    echo "$DEST"
    exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap not installed (apt-get install debootstrap)"

# Find the Debian mirror apt uses for $SUITE (deb822 .sources and one-line .list files); prints
# nothing when apt's sources do not name $SUITE (a Debian 12 host: the caller falls back).
find_mirror() {
    local f
    shopt -s nullglob
    # deb822: paragraphs with URIs: and Suites:
    for f in /etc/apt/sources.list.d/*.sources; do
        awk -v suite="$SUITE" '
            function flush() {
                if (uris != "" && (" " suites " ") ~ (" " suite " ") && types ~ /(^| )deb( |$)/) {
                    n = split(uris, u, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (u[i] != "" && u[i] !~ /security/) { print u[i]; exit }
                }
                uris = ""; suites = ""; types = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]*#/ { next }
            tolower($1) == "uris:"   { $1 = ""; uris = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [opts] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
            awk -v suite="$SUITE" '$1 == "deb" && $3 == suite && $2 !~ /security/ { print $2 }'
    done
}

MIRROR=${TUTORD_TEST_MIRROR:-}
if [ -z "$MIRROR" ]; then
    MIRROR=$(find_mirror 2>/dev/null | head -n1 || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
KEYRING=${TUTORD_TEST_KEYRING:-}
[ -z "$KEYRING" ] || [ -f "$KEYRING" ] || die "TUTORD_TEST_KEYRING=$KEYRING is not a file"

mkdir -p "$CACHE"
exec 9>"$CACHE/.rootfs-${SUITE}.lock"
flock 9
# Someone else may have built it while we waited for the lock.
if is_current; then
    echo "$DEST"
    exit 0
fi

# Leftovers of interrupted builds (we hold the lock, nobody else is building).
rm -rf --one-file-system "$CACHE/rootfs-${SUITE}.tmp."* "$CACHE/rootfs-${SUITE}.old."*

TMP=$(mktemp -d "$CACHE/rootfs-${SUITE}.tmp.XXXXXX")
chmod 0755 "$TMP"   # mktemp makes it 0700: the container's / must be traversable by its users
DB_PID=
cleanup() {
    # interrupted: stop debootstrap (its own process group) before removing its target
    if [ -n "$DB_PID" ]; then
        kill -TERM -- "-$DB_PID" 2>/dev/null || true
        wait "$DB_PID" 2>/dev/null || true
    fi
    if [ -n "${TMP:-}" ]; then rm -rf --one-file-system "$TMP"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP

log "building $SUITE rootfs from $MIRROR into $TMP (this takes a minute or two, once)"
start=$(date +%s)
# In the background, in its own process group, so that a signal to this script stops it at once.
DB_OPTS=(--variant="$VARIANT" --include="$INCLUDE")
[ -n "$KEYRING" ] && DB_OPTS+=(--keyring="$KEYRING")
setsid debootstrap "${DB_OPTS[@]}" "$SUITE" "$TMP" "$MIRROR" \
    </dev/null >"$CACHE/debootstrap.log" 2>&1 &
DB_PID=$!
rc=0
wait "$DB_PID" || rc=$?
DB_PID=
if [ "$rc" != 0 ]; then
    tail -n 30 "$CACHE/debootstrap.log" >&2
    if grep -q -e 'signed by unknown key' -e 'NO_PUBKEY' "$CACHE/debootstrap.log"; then
        log "the keyring (${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg})" \
            "lacks $SUITE's signing keys: upgrade the host's debian-archive-keyring" \
            "or set TUTORD_TEST_KEYRING (see the header of $0)"
    fi
    die "debootstrap failed with $rc (full log: $CACHE/debootstrap.log)"
fi

# Small adjustments for a fast, quiet boot under nspawn.
apt_cache=$TMP/var/cache/apt/archives
rm -f "$apt_cache"/*.deb
rm -rf "$TMP"/var/lib/apt/lists/*
# No gettys: the harness drives the container with nsenter, the console is a pipe.
ln -sf /dev/null "$TMP/etc/systemd/system/console-getty.service"
ln -sf /dev/null "$TMP/etc/systemd/system/getty@.service"
ln -sf /dev/null "$TMP/etc/systemd/system/serial-getty@.service"
# Nothing to do for these in a throwaway container.
ln -sf /dev/null "$TMP/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$TMP/etc/systemd/system/apt-daily-upgrade.timer"
ln -sf /dev/null "$TMP/etc/systemd/system/systemd-timesyncd.service"
echo tutord-test >"$TMP/etc/hostname"
# Empty machine-id: nspawn provides one at boot (and --volatile=overlay keeps /etc pristine).
: >"$TMP/etc/machine-id"

printf '%s\n' "$RECIPE" >"$TMP/$STAMP_NAME"
sync -f "$TMP" 2>/dev/null || sync

# Swap into place: old -> .old.$$, new -> DEST, drop old.
if [ -e "$DEST" ]; then
    mv -T "$DEST" "$CACHE/rootfs-${SUITE}.old.$$"
fi
mv -T "$TMP" "$DEST"
TMP=
rm -rf --one-file-system "$CACHE/rootfs-${SUITE}.old.$$"

log "rootfs ready at $DEST ($(( $(date +%s) - start )) s, $(du -sh "$DEST" | cut -f1))"
echo "$DEST"

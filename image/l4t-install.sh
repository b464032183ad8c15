#!/bin/bash
# Applies tutord's Jetson overlay (from `image/build.sh orin-nano`) to an L4T tree before
# flashing: unpacks it over Linux_for_Tegra/rootfs, installs the tutord package there and
# gives the model to user tutord.
#
# Usage: sudo ./l4t-install.sh tutord-orin-nano-VERSION-overlay.tar.zst /path/to/Linux_for_Tegra
# Before: NVIDIA's BSP and sample rootfs unpacked into Linux_for_Tegra, and
#         `sudo ./apply_binaries.sh` run there once (NVIDIA's L4T user space in the rootfs).
# After:  flash as usual, e.g. for the Orin Nano developer kit from an SD card:
#           sudo ./tools/jetson-disk-image-creator.sh -o sd-blob.img -b jetson-orin-nano-devkit
#         or to NVMe: sudo ./tools/kernel_flash/l4t_initrd_flash.sh --external-device nvme0n1p1 \
#           -c tools/kernel_flash/flash_l4t_t234_nvme.xml ... jetson-orin-nano-devkit external
# On a PC the package is installed through qemu-user (apt-get install qemu-user-static).
set -euo pipefail

[ $# -eq 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
overlay=$(realpath "$1")
root=$(realpath "$2")/rootfs
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
[ -x "$root/usr/bin/apt-get" ] || { echo "$root is not an unpacked L4T sample rootfs" >&2; exit 1; }
[ -d "$root/usr/lib/aarch64-linux-gnu/tegra" ] ||
    echo "warning: $root has no L4T user space (run apply_binaries.sh first)" >&2

zstd -dc "$overlay" | tar -C "$root" --no-same-owner -xf -
deb=$(find "$root/opt/tutord" -maxdepth 1 -name 'tutord_*_arm64.deb' | sort -V | tail -n1)
[ -n "$deb" ] || { echo "no tutord package in the overlay" >&2; exit 1; }

# dpkg first: NVIDIA's sample rootfs (Ubuntu) usually has all tutord needs (systemd, dbus,
# libc, libstdc++, libasound2, libespeak-ng1) and the build machine may be offline. When it
# lacks one, apt fetches it (this needs the network). In a private mount namespace: nothing
# stays mounted.
unshare --mount --propagation private -- /bin/sh -c '
    root=$1; deb=$2
    mount -t proc proc "$root/proc" && mount -t tmpfs tmpfs "$root/run" || exit 1
    [ -e "$root/etc/resolv.conf" ] || [ -L "$root/etc/resolv.conf" ] || : >"$root/etc/resolv.conf"
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C DEBIAN_FRONTEND=noninteractive \
        sh -c "
            if ! dpkg -i \"$deb\"; then
                echo \"l4t-install: fetching what the package depends on with apt\" >&2
                apt-get update -qq && apt-get install -y -qq -f --no-install-recommends || exit 1
            fi
            chown -R tutord:tutord /var/lib/tutord/models"
' sh "$root" "/opt/tutord/$(basename "$deb")"
echo "tutord installed into $root; flash with NVIDIA's tools (see the top of this script)"

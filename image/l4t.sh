# shellcheck shell=bash
# Sourced by image/build.sh for flavours with OUTPUT=l4t-overlay (orin-nano): the overlay for
# NVIDIA's L4T rootfs, and, with TUTORD_L4T_DIR, the SD card image made by L4T's own tool.
# Uses build.sh's variables (DEB, OUT, NAME, OVERLAYS, OVERLAY_EXCLUDE, WORK) and helpers.

l4t_outputs() {
    local ov=$WORK/overlay o tarball
    rm -rf --one-file-system "$WORK"
    mkdir -p "$ov"
    for o in $OVERLAYS; do
        cp -a --no-preserve=ownership "$HERE/overlay/$o/." "$ov/"
    done
    for o in $OVERLAY_EXCLUDE; do rm -rf "${ov:?}/$o"; done
    install -D -m 0644 "$DEB" "$ov/opt/tutord/$(basename "$DEB")"
    mkdir -p "$ov/var/log/journal"
    # The rootfs has no user tutord yet: l4t-install.sh installs the package, then chowns.
    MODELS_NO_CHOWN=1 add_models "$ov"
    check_size "overlay" "$(du -sm "$ov" | cut -f1)"
    tarball=$OUT/$NAME-overlay.tar.zst
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:-0}" \
        -C "$ov" -cf - . | zstd -q -f -T0 -10 -o "$tarball"
    install -m 0755 "$HERE/l4t-install.sh" "$OUT/l4t-install.sh"
    (cd "$OUT" && sha256sum "$(basename "$tarball")" l4t-install.sh >SHA256SUMS)
    log "L4T overlay: $tarball; apply it with: sudo $OUT/l4t-install.sh $tarball /path/to/Linux_for_Tegra"
    if [ -n "${TUTORD_L4T_DIR:-}" ]; then
        local l4t=$TUTORD_L4T_DIR img=$OUT/$NAME.img
        [ -x "$l4t/tools/jetson-disk-image-creator.sh" ] ||
            die "$l4t/tools/jetson-disk-image-creator.sh not found: TUTORD_L4T_DIR must be an unpacked L4T BSP (Linux_for_Tegra)"
        "$OUT/l4t-install.sh" "$tarball" "$l4t"
        log "jetson-disk-image-creator.sh -b $L4T_BOARD (NVIDIA's tool: partitions, boot firmware, kernel)"
        (cd "$l4t" && ./tools/jetson-disk-image-creator.sh -o "$img" -b "$L4T_BOARD") >&2
        finish_outputs "$img"
    fi
    rm -rf --one-file-system "$WORK"
}

#!/bin/sh
# The host side of the stack's disk caps (root; run it once after every boot, like `spacehub sandbox install`).
#
# Every space container writes only to ext4 filesystems of its own, loop-mounted by the platform
# (spacehub_runner.diskcap) under SPACEHUB_DISKS_DIR, and dockerd binds the containers' volumes from there by
# path. So the stack's spacehub container mounts that folder at the host's own path with `rshared` propagation:
# what it mounts there appears on the host, where dockerd finds it. Docker allows `rshared` only on a folder that
# is on a shared mount. systemd makes `/` shared, so there this only makes the folder; elsewhere (a host whose
# `/` is private, e.g. one that itself runs in a container) the folder is bound onto itself and made shared.
#
# Usage: deploy/compose/prepare-host.sh [DISKS_DIR]   (default: $SPACEHUB_DISKS_DIR, else /var/lib/spacehub-stack/disks)
set -eu
dir=${1:-${SPACEHUB_DISKS_DIR:-/var/lib/spacehub-stack/disks}}
case "$dir" in /*) ;; *) echo "prepare-host.sh: $dir is not an absolute path" >&2; exit 2 ;; esac
mkdir -p "$dir"
chmod 700 "$dir"
propagation=$(findmnt -n -o PROPAGATION --target "$dir")
case "$propagation" in
  shared*) ;;
  *)
    if ! mountpoint -q "$dir"; then
      mount --bind "$dir" "$dir"
    fi
    mount --make-shared "$dir"
    ;;
esac
echo "disks folder ready: $dir ($(findmnt -n -o PROPAGATION --target "$dir"))"

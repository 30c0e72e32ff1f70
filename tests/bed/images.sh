#!/usr/bin/env bash
# Build the systemd-capable Debian base images the molecule scenarios boot.
#
# Docker Hub is not reachable from the CI machines, so images come from debootstrap.
# An image is built only when it is missing. Users with a registry can point the
# scenarios at their own images instead:
#   TSH_IMAGE_DEBIAN12=registry.example/debian12-systemd TSH_IMAGE_DEBIAN13=... make test
#
# Usage: tests/bed/images.sh [debian12] [debian13]      (default: both)
set -euo pipefail

: "${TSH_IMAGE_DEBIAN12:=tsh-infra/systemd:debian12}"
: "${TSH_IMAGE_DEBIAN13:=tsh-infra/systemd:debian13}"

# Mirrors come from the host's own apt sources; nothing about a mirror is written into the repo.
# shellcheck source=tests/bed/lib.sh
source "$(dirname "$0")/lib.sh"

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

build() {
  local suite=$1 image=$2 rootfs
  if docker image inspect "$image" >/dev/null 2>&1; then
    echo "images.sh: $image present"
    return 0
  fi
  command -v debootstrap >/dev/null || { echo "images.sh: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
  MIRROR="$(debian_mirror)"
  SECURITY_MIRROR="$(debian_security_mirror)"
  if [[ -z "$MIRROR" ]]; then
    echo "images.sh: no Debian mirror found in /etc/apt; set TSH_DEBIAN_MIRROR=http://<mirror>/debian" >&2
    exit 1
  fi
  rootfs=$(mktemp -d "/var/tmp/tsh-rootfs-$suite.XXXXXX")
  cleanup+=("$rootfs" "$rootfs.log")
  echo "images.sh: building $image from $suite ($MIRROR)"
  local start=$SECONDS
  debootstrap --variant=minbase \
    --include=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,iproute2,procps,ca-certificates \
    "$suite" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY_MIRROR $suite-security main
EOF
  # Units that make no sense in a container and slow down or break boot.
  for unit in systemd-resolved.service getty.target console-getty.service systemd-logind.service \
              sys-kernel-debug.mount sys-kernel-tracing.mount systemd-remount-fs.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
  done
  : >"$rootfs/etc/machine-id"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # An image carries no package lists: mark the empty cache as stale so apt refreshes it.
  touch -d @0 "$rootfs/var/lib/apt/lists"
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV container=docker' \
    -c 'CMD ["/lib/systemd/systemd"]' - "$image" >/dev/null
  echo "images.sh: built $image in $((SECONDS - start)) s"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(debian12 debian13)
for t in "${targets[@]}"; do
  case $t in
    debian12) build bookworm "$TSH_IMAGE_DEBIAN12" ;;
    debian13) build trixie "$TSH_IMAGE_DEBIAN13" ;;
    *) echo "images.sh: unknown image '$t' (debian12, debian13)" >&2; exit 2 ;;
  esac
done

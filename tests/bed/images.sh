#!/usr/bin/env bash
# Build the systemd-capable Debian images the molecule scenarios boot, each only when missing:
#   tsh-infra/systemd:debian12, :debian13   bare (debootstrap minbase + systemd): what a new droplet
#       has. The site scenario and `make up` provision these, so first provisioning stays tested.
#   tsh-infra/stack:debian12, :debian13     the bare image plus the distribution packages the roles
#       install (PostgreSQL, nginx, ufw, python3-venv, ...; Pebble and acme.sh on 13), unconfigured
#       and stopped. Every other scenario boots these: the roles still converge them (apt finds the
#       packages present), minutes of unpacking are not repeated in every scenario.
#
# Docker Hub is not reachable from the CI machines, so the bare images come from debootstrap. Users
# with a registry can point the scenarios at their own images instead; the stack images are then
# built from those (or set them to the bare ones to skip that):
#   TSH_IMAGE_DEBIAN12=registry.example/debian12-systemd TSH_IMAGE_DEBIAN13=... make test
#   TSH_STACK_IMAGE_DEBIAN12=... TSH_STACK_IMAGE_DEBIAN13=...
# The stack images download through the host's apt cache (tests/bed/apt-cache.sh) unless
# TSH_APT_PROXY=0.
#
# Usage: tests/bed/images.sh [--bare] [debian12] [debian13]    (default: both; --bare: no stack image)
set -euo pipefail

: "${TSH_IMAGE_DEBIAN12:=tsh-infra/systemd:debian12}"
: "${TSH_IMAGE_DEBIAN13:=tsh-infra/systemd:debian13}"
: "${TSH_STACK_IMAGE_DEBIAN12:=tsh-infra/stack:debian12}"
: "${TSH_STACK_IMAGE_DEBIAN13:=tsh-infra/stack:debian13}"

# What the roles install (roles/*/vars, roles/base/defaults) and the test bed adds (curl, openssl,
# Pebble). openssh-server is left out: its host keys would be the same in every container.
STACK_PACKAGES=(ca-certificates curl gnupg rsync tzdata unattended-upgrades apt-listchanges sudo acl
  libpam-tmpdir libpam-pwquality debsums apt-show-versions kmod fail2ban python3-systemd
  python3 python3-venv iproute2 nginx python3-cryptography postgresql postgresql-client
  python3-psycopg2 jq ufw openssl)
STACK_PACKAGES_TRIXIE=(acme.sh pebble)

# Mirrors come from the host's own apt sources; nothing about a mirror is written into the repo.
# shellcheck source=tests/bed/lib.sh
source "$(dirname "$0")/lib.sh"

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

# The stack image: the bare one with STACK_PACKAGES installed and nothing started (policy-rc.d
# refuses every start during the build), apt lists dropped as in the bare image.
build_stack() {
  local suite=$1 base=$2 image=$3 builder proxy="" start=$SECONDS packages=("${STACK_PACKAGES[@]}") have
  [[ $suite == trixie ]] && packages+=("${STACK_PACKAGES_TRIXIE[@]}")
  # The image carries its package list as a label: one built from another list is built again.
  have=""
  if docker image inspect "$image" >/dev/null 2>&1; then
    have=$(docker image inspect -f '{{index .Config.Labels "tsh.packages"}}' "$image")
  fi
  if [[ $have == "${packages[*]}" ]]; then
    echo "images.sh: $image present"
    return 0
  fi
  [[ -z $have ]] || echo "images.sh: $image was built from another package list; building it again"
  if [[ ${TSH_APT_PROXY:-1} != 0 ]]; then
    proxy="http://$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}'):3142"
  fi
  builder="tsh-stack-build-$suite-$$"
  echo "images.sh: building $image from $base (${#packages[@]} packages)"
  if docker container inspect "$builder" >/dev/null 2>&1; then docker rm -f "$builder" >/dev/null; fi
  if ! docker run --name "$builder" -e DEBIAN_FRONTEND=noninteractive -e "PROXY=$proxy" "$base" sh -ec '
      printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
      [ -z "$PROXY" ] || echo "Acquire::http::Proxy \"$PROXY\";" >/etc/apt/apt.conf.d/01tsh-build-proxy
      apt-get update -qq
      apt-get install -y -qq "$@" >/dev/null
      # Unconfigured and stopped, also at boot: the roles enable what they configure (a PostgreSQL
      # on 127.0.0.1:5432 from boot would hold ports the scenarios test with listeners of their own;
      # fail2ban on Debian 12 fails with its stock jail, which reads a log file that does not exist).
      systemctl disable postgresql nginx fail2ban >/dev/null 2>&1
      apt-get clean
      rm -rf /usr/sbin/policy-rc.d /etc/apt/apt.conf.d/01tsh-build-proxy /var/lib/apt/lists/*
      touch -d @0 /var/lib/apt/lists
      : >/etc/machine-id' sh "${packages[@]}" >"/var/tmp/$builder.log" 2>&1; then
    tail -n 30 "/var/tmp/$builder.log" >&2
    docker rm -f "$builder" >/dev/null
    exit 1
  fi
  docker commit -c 'ENV container=docker' -c 'CMD ["/lib/systemd/systemd"]' \
    -c "LABEL tsh.packages=\"${packages[*]}\"" "$builder" "$image" >/dev/null
  docker rm "$builder" >/dev/null
  rm -f "/var/tmp/$builder.log"
  echo "images.sh: built $image in $((SECONDS - start)) s"
}

# One release's bare image, then its stack image; in a subshell of its own, with its own cleanup.
images_of() {
  cleanup=()
  trap 'rm -rf "${cleanup[@]}"' EXIT
  case $1 in
    debian12) build bookworm "$TSH_IMAGE_DEBIAN12"
              (( bare_only )) || build_stack bookworm "$TSH_IMAGE_DEBIAN12" "$TSH_STACK_IMAGE_DEBIAN12" ;;
    debian13) build trixie "$TSH_IMAGE_DEBIAN13"
              (( bare_only )) || build_stack trixie "$TSH_IMAGE_DEBIAN13" "$TSH_STACK_IMAGE_DEBIAN13" ;;
  esac
}

bare_only=0
if [[ ${1:-} == --bare ]]; then bare_only=1; shift; fi
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(debian12 debian13)
for t in "${targets[@]}"; do
  [[ $t == debian12 || $t == debian13 ]] || { echo "images.sh: unknown image '$t' (debian12, debian13)" >&2; exit 2; }
done
# The releases build side by side (downloads and unpacking overlap); any failure fails the script.
pids=()
for t in "${targets[@]}"; do
  images_of "$t" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do
  wait "$pid" || rc=1
done
exit $rc

#!/usr/bin/env bash
# Make this machine able to run the test bed: the Docker engine running, python3-venv (the tool
# venv), debootstrap when a base image must be built, apt-cacher-ng when containers use the host's
# package cache (TSH_APT_PROXY, default 1). `make up`, `make test` and .ci/run all start here, so a
# fresh clone needs nothing installed by hand.
#
# On Debian or Ubuntu as root it installs what is missing from the distribution and starts dockerd
# (under systemd when systemd runs, otherwise detached). Anywhere else it changes nothing and stops
# with the list of what to install. Usage: tests/bed/host.sh
set -euo pipefail
# shellcheck source=tests/bed/lib.sh
source "$(dirname "$0")/lib.sh"

: "${TSH_IMAGE_DEBIAN12:=tsh-infra/systemd:debian12}"
: "${TSH_IMAGE_DEBIAN13:=tsh-infra/systemd:debian13}"

can_install() {
  local os
  # shellcheck source=/dev/null
  os=$(. /etc/os-release 2>/dev/null && echo "${ID:-} ${ID_LIKE:-}")
  [[ $os =~ (debian|ubuntu) && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null
}

# install <why> <package>...: install the packages, or stop naming them when this host cannot.
updated=0
install() {
  local why=$1; shift
  (( $# > 0 )) || return 0
  if ! can_install; then
    echo "host.sh: missing $* ($why)." >&2
    echo "host.sh: it installs them only on Debian or Ubuntu as root. Install them yourself (the" \
         "names are Debian's), or with Docker and images of your own from a registry run" \
         "TSH_IMAGE_DEBIAN12=... TSH_IMAGE_DEBIAN13=... TSH_APT_PROXY=0 (README, Two commands)." >&2
    exit 1
  fi
  echo "host.sh: installing $* ($why)"
  (( updated )) || apt-get update -qq
  updated=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

need=()
{ command -v docker && command -v dockerd; } >/dev/null || need+=(docker.io)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
install "the container engine and the tool venv" "${need[@]}"

if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "host.sh: the Docker engine is not running and this user cannot start it: start dockerd" \
         "or ask for the docker group" >&2
    exit 1
  fi
  if [[ -d /run/systemd/system ]]; then
    systemctl start docker
  else
    # No systemd as PID 1 (CI VMs, containers): run the engine detached from this session.
    setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "host.sh: dockerd did not answer within 60 s; last lines of its log:" >&2
    tail -n 30 /var/log/dockerd.log >&2
    exit 1
  fi
  echo "host.sh: Docker engine started"
fi

need=()
for image in "$TSH_IMAGE_DEBIAN12" "$TSH_IMAGE_DEBIAN13"; do
  docker image inspect "$image" >/dev/null 2>&1 && continue
  command -v debootstrap >/dev/null || need+=(debootstrap)
  # debootstrap checks Debian's signatures with Debian's keyring (not on Ubuntu by default).
  [[ -s /usr/share/keyrings/debian-archive-keyring.gpg ]] || need+=(debian-archive-keyring)
  if [[ -z "$(debian_mirror)" ]]; then
    echo "host.sh: $image must be built, and this host's apt sources name no Debian mirror: set" \
         "TSH_DEBIAN_MIRROR=http://deb.debian.org/debian (or a mirror you can reach)" >&2
    exit 1
  fi
  break
done
if [[ ${TSH_APT_PROXY:-1} != 0 ]] && ! command -v apt-cacher-ng >/dev/null; then
  need+=(apt-cacher-ng)
fi
install "the base images and the package cache" "${need[@]}"
echo "host.sh: ready (Docker $(docker version --format '{{.Server.Version}}'))"

#!/usr/bin/env bash
# Start a local apt cache (apt-cacher-ng) on the host so every test container downloads each
# package at most once. Containers reach it through their Docker network's gateway address
# on port 3142 (molecule/resources/prepare.yml writes the proxy setting when TSH_APT_PROXY=1).
set -euo pipefail
# shellcheck source=tests/bed/lib.sh
source "$(dirname "$0")/lib.sh"
port=3142
conf=/etc/apt-cacher-ng
if ! command -v apt-cacher-ng >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apt-cacher-ng >/dev/null
fi
# apt-cacher-ng maps Debian URLs to its own mirror list (ftp.debian.org by default); send them to
# the mirror this host uses instead, which is known to be reachable.
mirror="$(debian_mirror)"
want="${mirror%/}/"
if [[ "$(cat "$conf/backends_debian" 2>/dev/null)" != "$want" ]]; then
  echo "$want" >"$conf/backends_debian"
  echo "apt-cache.sh: Debian backend set to $want"
  if [[ -d /run/systemd/system ]]; then systemctl stop apt-cacher-ng; else /etc/init.d/apt-cacher-ng stop >/dev/null; fi
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "apt-cache.sh: apt-cacher-ng already listening on $port"
  exit 0
fi
mkdir -p /var/run/apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng
chown apt-cacher-ng: /var/run/apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng
if [[ -d /run/systemd/system ]]; then
  systemctl start apt-cacher-ng
else
  /etc/init.d/apt-cacher-ng start >/dev/null
fi
for _ in $(seq 1 30); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "apt-cache.sh: apt-cacher-ng listening on $port"
    exit 0
  fi
  sleep 1
done
echo "apt-cache.sh: apt-cacher-ng did not start; see /var/log/apt-cacher-ng" >&2
exit 1

#!/usr/bin/env bash
# A throwaway container standing in for the droplet, provisioned with site.yml, with a local ACME
# server (Pebble) issuing the certificate, and the sample app deployed blue/green.
#   tests/bed/local.sh up     start (or reuse) containers tsh-local and tsh-local-pebble, provision, deploy
#   tests/bed/local.sh start  only start them (bench/provision times site.yml itself)
#   tests/bed/local.sh down   remove the containers and their network
# TSH_LOCAL_NAME (default tsh-local) names the container, its network, Pebble (<name>-pebble) and the
# state directory build/<name>; TSH_LOCAL_PUBLISH=0 publishes no ports (for a second stack beside one).
# On a machine that is not Debian (a laptop): TSH_APT_PROXY=0 (no host apt cache) and images from a
# registry of your own (TSH_IMAGE_DEBIAN12, TSH_IMAGE_DEBIAN13) instead of debootstrap.
# Playbooks reach it with the local inventory plus the inventory file local.sh writes (the container's
# name and the archive checksum as host vars of tsh-local):
#   ansible-playbook -i inventories/local -i build/<name>/inventory.yml site.yml
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${TSH_LOCAL_NAME:-tsh-local}
pebble=$name-pebble
network=$name
image=${TSH_IMAGE_DEBIAN12:-tsh-infra/systemd:debian12}
pebble_image=${TSH_IMAGE_DEBIAN13:-tsh-infra/systemd:debian13}
names=(tsh.sale www.tsh.sale erp.tsh.sale shop.tsh.sale consumer.tsh.sale)
state_dir=build/$name
share=/usr/local/share/tsh-local

# Pebble (Debian's package) in its own container on the stack's network, alias "pebble"; the target
# answers for the five names on that network, so Pebble validates HTTP-01 against the real nginx.
start_pebble() {
  local gateway=$1
  if ! docker container inspect "$pebble" >/dev/null 2>&1; then
    docker run -d --name "$pebble" --hostname pebble --network "$network" --network-alias pebble \
      --label tsh.local=1 --entrypoint sleep "$pebble_image" infinity >/dev/null
  fi
  docker exec "$pebble" sh -ec "
    if [ '${TSH_APT_PROXY:-1}' != 0 ]; then
      echo 'Acquire::http::Proxy \"http://$gateway:3142\";' > /etc/apt/apt.conf.d/01tsh-local-proxy
    fi
    if ! command -v pebble >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble openssl >/dev/null
    fi
    mkdir -p /etc/pebble && cd /etc/pebble
    test -s api.pem || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj /CN=pebble -addext subjectAltName=DNS:pebble -keyout api.key -out api.pem 2>/dev/null
    cat > pebble.json <<'JSON'
{\"pebble\": {\"listenAddress\": \"0.0.0.0:14000\", \"managementListenAddress\": \"0.0.0.0:15000\",
  \"certificate\": \"/etc/pebble/api.pem\", \"privateKey\": \"/etc/pebble/api.key\",
  \"httpPort\": 80, \"tlsPort\": 443, \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false}}
JSON
    # acme.sh as a pinned release archive for the Debian 12 stand-in (same layout as upstream's).
    if ! test -s /root/acme.sh-3.1.1.tar.gz; then
      cd /root && apt-get download acme.sh 2>/dev/null && rm -rf x && dpkg-deb -x acme.sh_3.1.1-*_all.deb x
      tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        --transform 's,^acme.sh,acme.sh-3.1.1,' -C x/usr/share -czf /root/acme.sh-3.1.1.tar.gz acme.sh
    fi"
  if ! docker exec "$pebble" sh -c 'exec 3<>/dev/tcp/127.0.0.1/14000' 2>/dev/null; then
    docker exec -d -e PEBBLE_VA_NOSLEEP=1 -e PEBBLE_WFE_NONCEREJECT=0 -e PEBBLE_AUTHZREUSE=0 "$pebble" \
      sh -c 'exec pebble -config /etc/pebble/pebble.json >/var/log/pebble.log 2>&1'
  fi
  # Ready when its API port accepts connections.
  for _ in $(seq 1 30); do
    docker exec "$pebble" bash -c 'exec 3<>/dev/tcp/127.0.0.1/14000' 2>/dev/null && return 0
    sleep 1
  done
  echo "local.sh: Pebble did not start; its log:" >&2
  docker exec "$pebble" cat /var/log/pebble.log >&2
  exit 1
}

start() {
  tests/bed/images.sh --bare debian12 debian13
  [[ ${TSH_APT_PROXY:-1} == 0 ]] || tests/bed/apt-cache.sh
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  if ! docker container inspect "$name" >/dev/null 2>&1; then
    # Same settings as the molecule platforms (.config/molecule/config.yml).
    local extra=() alias
    for alias in "${names[@]}"; do extra+=(--network-alias "$alias"); done
    [[ ${TSH_LOCAL_PUBLISH:-1} == 0 ]] || extra+=(-p 127.0.0.1:8080:80 -p 127.0.0.1:8443:443)
    docker run -d --name "$name" --hostname "$name" --network "$network" "${extra[@]}" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --security-opt seccomp=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
      --stop-signal SIGRTMIN+3 --label tsh.local=1 \
      "$image" >/dev/null
  fi
  # Poll until systemd answers on its bus, then let it wait for the end of boot.
  state=""
  for _ in $(seq 1 60); do
    state=$(docker exec "$name" systemctl is-system-running --wait 2>/dev/null) && break
    [[ $state == degraded ]] && break
    sleep 1
  done
  if [[ $state != running && $state != degraded ]]; then
    echo "local.sh: systemd in $name did not finish booting (state: '${state:-no answer}')" >&2
    exit 1
  fi
  gateway=$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$network")
  if [[ ${TSH_APT_PROXY:-1} != 0 ]]; then
    docker exec "$name" sh -c "echo 'Acquire::http::Proxy \"http://$gateway:3142\";' > /etc/apt/apt.conf.d/01tsh-local-proxy"
  fi
  start_pebble "$gateway"
  mkdir -p "$state_dir"
  docker cp -q "$pebble:/etc/pebble/api.pem" "$state_dir/pebble-api.pem"
  docker cp -q "$pebble:/root/acme.sh-3.1.1.tar.gz" "$state_dir/acme.sh-3.1.1.tar.gz"
  docker exec "$name" mkdir -p "$share"
  docker cp -q "$state_dir/pebble-api.pem" "$name:$share/pebble-api.pem"
  docker cp -q "$state_dir/acme.sh-3.1.1.tar.gz" "$name:$share/acme.sh-3.1.1.tar.gz"
  # The local inventory names Pebble and the archive; the archive's checksum is the one built here,
  # and the inventory's host reaches this container. (Host vars, not -e: extra vars would also
  # apply to the tasks the playbooks delegate to the controller.)
  cat >"$state_dir/inventory.yml" <<EOT
---
all:
  hosts:
    tsh-local:
      ansible_host: $name
      acme_sh_archive_sha256: $(sha256sum "$state_dir/acme.sh-3.1.1.tar.gz" | cut -d' ' -f1)
EOT
}

up() {
  start
  ansible-playbook -i inventories/local -i "$state_dir/inventory.yml" site.yml
  # The sample app stands in for the backend: build a release (for the container's Python, which
  # build.yml asks the inventory's app host for) and deploy it blue/green.
  version="local-$(date -u +%Y%m%dT%H%M%SZ)"
  ansible-playbook -i inventories/local -i "$state_dir/inventory.yml" playbooks/build.yml \
    -e app_src="$PWD/tests/fixtures/sample_app" -e app_version="$version"
  ansible-playbook -i inventories/local -i "$state_dir/inventory.yml" deploy.yml -e release_version="$version"
  ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$name")
  # Pebble's issuing root changes at every Pebble start: fetch the current one to check the chain.
  docker exec "$name" curl -fsS --cacert "$share/pebble-api.pem" https://pebble:15000/roots/0 >"$state_dir/pebble-root.pem"
  ca="$state_dir/pebble-root.pem"
  # Through the published port; a stack that publishes none (TSH_LOCAL_PUBLISH=0) is reached at its
  # own address, so a second stack is never checked through the first one's port.
  local at=127.0.0.1 port=8443 http=8080
  [[ ${TSH_LOCAL_PUBLISH:-1} != 0 ]] || { at=$ip; port=443; http=80; }
  health=$(curl -fsS --max-time 5 --cacert "$ca" --resolve "erp.tsh.sale:$port:$at" "https://erp.tsh.sale:$port/health")
  cat <<EOT

Local stack is up: container $name ($ip), provisioned by site.yml, certificate for all five names
issued by the local ACME server (container $pebble), sample app $version deployed.
Every site, from this machine (trusting only the local ACME server's current root, $ca):
  curl --cacert $ca --resolve tsh.sale:$port:$at https://tsh.sale:$port/               (redirects to www)
  curl --cacert $ca --resolve www.tsh.sale:$port:$at https://www.tsh.sale:$port/       (ERP admin)
  curl --cacert $ca --resolve erp.tsh.sale:$port:$at https://erp.tsh.sale:$port/health (API)
  curl --cacert $ca --resolve shop.tsh.sale:$port:$at https://shop.tsh.sale:$port/     (consumer app)
  curl --cacert $ca --resolve consumer.tsh.sale:$port:$at https://consumer.tsh.sale:$port/
  curl --resolve erp.tsh.sale:$http:$at -I http://erp.tsh.sale:$http/        (301 to https)
API health: $health
  status:       ansible-playbook -i inventories/local -i $state_dir/inventory.yml playbooks/status.yml
  shell:        docker exec -it $name bash
  remove it:    make down
EOT
}

down() {
  for container in "$name" "$pebble"; do
    if docker container inspect "$container" >/dev/null 2>&1; then
      docker rm -f "$container" >/dev/null
      echo "local.sh: removed $container"
    fi
  done
  rm -rf "$state_dir"
  if docker network inspect "$network" >/dev/null 2>&1; then docker network rm "$network" >/dev/null; fi
}

case ${1:-} in
  up) up ;;
  start) start ;;
  down) down ;;
  *) echo "usage: $0 up|start|down" >&2; exit 2 ;;
esac

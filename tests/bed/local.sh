#!/usr/bin/env bash
# A throwaway container standing in for the droplet, provisioned with site.yml.
#   tests/bed/local.sh up     start (or reuse) container tsh-local and provision it
#   tests/bed/local.sh down   remove the container and its network
set -euo pipefail
cd "$(dirname "$0")/../.."
name=tsh-local
network=tsh-local
image=${TSH_IMAGE_DEBIAN12:-tsh-infra/systemd:debian12}

up() {
  tests/bed/images.sh debian12
  tests/bed/apt-cache.sh
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  if ! docker container inspect "$name" >/dev/null 2>&1; then
    # Same settings as the molecule platforms (.config/molecule/config.yml).
    docker run -d --name "$name" --hostname "$name" --network "$network" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
      --stop-signal SIGRTMIN+3 --label tsh.local=1 \
      -p 127.0.0.1:8080:80 -p 127.0.0.1:8443:443 "$image" >/dev/null
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
  docker exec "$name" sh -c "echo 'Acquire::http::Proxy \"http://$gateway:3142\";' > /etc/apt/apt.conf.d/01tsh-local-proxy"
  ansible-playbook -i inventories/local site.yml
  # The sample app stands in for the backend: build a release and deploy it blue/green.
  version="local-$(date -u +%Y%m%dT%H%M%SZ)"
  ansible-playbook playbooks/build.yml -e app_src="$PWD/tests/fixtures/sample_app" -e app_version="$version" \
    -e "{\"build_python_versions\": [\"$(docker exec "$name" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')\"]}"
  ansible-playbook -i inventories/local deploy.yml -e release_version="$version"
  ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$name")
  health=$(curl -sk --max-time 5 --resolve erp.tsh.sale:8443:127.0.0.1 https://erp.tsh.sale:8443/health)
  cat <<EOT

Local stack is up: container $name ($ip), provisioned by site.yml, sample app $version deployed.
Every site, from this machine (self-signed placeholder certificate until ACME runs, hence -k):
  curl -k --resolve tsh.sale:8443:127.0.0.1 https://tsh.sale:8443/               (redirects to www)
  curl -k --resolve www.tsh.sale:8443:127.0.0.1 https://www.tsh.sale:8443/       (ERP admin)
  curl -k --resolve erp.tsh.sale:8443:127.0.0.1 https://erp.tsh.sale:8443/health (API)
  curl -k --resolve shop.tsh.sale:8443:127.0.0.1 https://shop.tsh.sale:8443/     (consumer app)
  curl -k --resolve consumer.tsh.sale:8443:127.0.0.1 https://consumer.tsh.sale:8443/
  curl --resolve erp.tsh.sale:8080:127.0.0.1 -I http://erp.tsh.sale:8080/        (301 to https)
API health: $health
  status:       ansible-playbook -i inventories/local playbooks/status.yml
  shell:        docker exec -it $name bash
  remove it:    make down
EOT
}

down() {
  if docker container inspect "$name" >/dev/null 2>&1; then
    docker rm -f "$name" >/dev/null
    echo "local.sh: removed $name"
  fi
  if docker network inspect "$network" >/dev/null 2>&1; then docker network rm "$network" >/dev/null; fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

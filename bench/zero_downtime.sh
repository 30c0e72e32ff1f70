#!/usr/bin/env bash
# Zero-downtime benchmark: while deploy.yml and then rollback.yml run, a load generator in its own
# container on the same Docker network sends requests to https://erp.tsh.sale/health through nginx.
# Prints requests sent, failed (non-200 or connection error; the target is 0), p50/p99 latency,
# the wall time of each deploy (BENCH_DEPLOYS of them, default 3, each a release not on the host
# before, artifacts built beforehand) with their median, and the wall time of the rollback.
#
# Needs a converged stack in a container (default: the bluegreen scenario's Debian 12 target):
#   .venv/bin/molecule converge -s bluegreen
#   bench/zero_downtime.sh [target-container] [inventory-dir]
# or the local stack:  make up && bench/zero_downtime.sh tsh-local inventories/local
# or several machines: .venv/bin/molecule converge -s multihost && BENCH_MULTIHOST=1 bench/zero_downtime.sh multihost-web
#   (the target is the web host; deploys roll through both app hosts; not with BENCH_SSH).
# BENCH_SSH=1 runs the playbooks over SSH (a throwaway key for root, pipelining and ControlPersist
# as in ansible.cfg), as CI reaches the droplet, instead of docker exec.
# Traffic goes only to that container's address on the scenario's own Docker network, bounded
# in rate (BENCH_RATE requests/s) and time (it stops when the rollback ends, at most 300 s + 150 s per deploy).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

target=${1:-bluegreen-debian12}
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$target" | awk '{print $1}')
ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$target")
gateway=$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$network")
# Default: the molecule inventory (of any checkout) that holds the target.
scenario=bluegreen
# The one droplet: its groups come from droplet_groups.ini and the run is limited to it. Several
# machines: the scenario's inventory has the groups and every app host takes part.
limit=(--limit "$target")
groups=(-i tests/molecule/droplet_groups.ini)
if [[ ${BENCH_MULTIHOST:-0} == 1 ]]; then
  scenario=multihost limit=() groups=()
  [[ ${BENCH_SSH:-0} == 1 ]] && { echo "bench: BENCH_SSH is for one droplet only" >&2; exit 2; }
fi
inventory=${2:-$(dirname "$(grep -l -- "$target:" "$HOME"/.ansible/tmp/molecule.*."$scenario"/inventory/ansible_inventory.yml | head -n1)")}
deploys=${BENCH_DEPLOYS:-3}
rate=${BENCH_RATE:-120}
workers=10
builds=$(mktemp -d)
load=tsh-bench-load
trap 'docker rm -f "$load" >/dev/null 2>&1; rm -rf "$builds"' EXIT

echo "bench: target $target ($ip on $network), $rate requests/s, over $([[ ${BENCH_SSH:-0} == 1 ]] && echo SSH || echo 'docker exec')"
stamp=$(date -u +%H%M%S)
versions=("bench-$stamp-0")
for i in $(seq 1 "$deploys"); do versions+=("bench-$stamp-$i"); done
for v in "${versions[@]}"; do
  ansible-playbook playbooks/build.yml -e app_src="$PWD/tests/fixtures/sample_app" -e app_version="$v" \
    -e build_dir="$builds" -e '{"build_python_versions": ["3.11", "3.13"]}' >/dev/null
done
ssh_inventory=()
if [[ ${BENCH_SSH:-0} == 1 ]]; then
  ssh-keygen -q -t ed25519 -N "" -f "$builds/id" >/dev/null
  docker exec -i "$target" sh -c "install -d -m 0700 /root/.ssh && cat >> /root/.ssh/authorized_keys" <"$builds/id.pub"
  # Host vars in a later inventory source (not -e, which would also reach tasks delegated to the controller).
  cat >"$builds/ssh.yml" <<EOT
---
all:
  hosts:
    $target:
      ansible_connection: ssh
      ansible_host: $ip
      ansible_user: root
      ansible_ssh_private_key_file: $builds/id
      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
EOT
  ssh_inventory=(-i "$builds/ssh.yml")
fi
play() {
  ansible-playbook -i "$inventory" "${groups[@]}" "${ssh_inventory[@]}" "${limit[@]}" "$@" -e deploy_build_dir="$builds"
}

echo "bench: first deploy (${versions[0]}), not measured"
play deploy.yml -e release_version="${versions[0]}" >/dev/null

if docker container inspect "$load" >/dev/null 2>&1; then docker rm -f "$load" >/dev/null; fi
docker run -d --name "$load" --network "$network" --add-host "erp.tsh.sale:$ip" \
  "${TSH_IMAGE_DEBIAN12:-tsh-infra/systemd:debian12}" sleep $((600 + deploys * 150)) >/dev/null
docker exec "$load" sh -c "echo 'Acquire::http::Proxy \"http://$gateway:3142\";' > /etc/apt/apt.conf.d/01proxy \
  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null"

# hey stops on SIGINT and prints its report; -z bounds it in any case.
docker exec -d "$load" sh -c "hey -z $((300 + deploys * 150))s -c $workers -q $((rate / workers)) -disable-keepalive=false \
  https://erp.tsh.sale/health > /tmp/hey.out 2>&1"
until docker exec "$load" pgrep -x hey >/dev/null; do sleep 0.2; done

marks=("$(date +%s.%N)")
for v in "${versions[@]:1}"; do
  play deploy.yml -e release_version="$v" >/dev/null
  marks+=("$(date +%s.%N)")
done
play playbooks/rollback.yml >/dev/null
marks+=("$(date +%s.%N)")

docker exec "$load" pkill -INT -x hey
while docker exec "$load" pgrep -x hey >/dev/null; do sleep 0.2; done
docker exec "$load" cat /tmp/hey.out > "$builds/hey.out"

python3 - "$builds/hey.out" "${marks[@]}" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
marks = [float(m) for m in sys.argv[2:]]
deploys = [b - a for a, b in zip(marks[:-2], marks[1:-1])]
rollback = marks[-1] - marks[-2]
codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get ", text))
sent = sum(codes.values()) + errors
failed = sum(n for c, n in codes.items() if c != 200) + errors
p50 = re.search(r"50%+ in ([\d.]+) secs", text)
p99 = re.search(r"99%+ in ([\d.]+) secs", text)
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
print(f"requests sent:      {sent}")
print(f"failed:             {failed}  (status codes {codes}, connection errors {errors})")
print(f"rate:               {rps.group(1) if rps else '?'} requests/s")
print(f"latency p50 / p99:  {float(p50.group(1))*1000:.1f} ms / {float(p99.group(1))*1000:.1f} ms" if p50 and p99 else "latency: ?")
print(f"deploy wall times:  {', '.join(f'{d:.1f}' for d in deploys)} s (median {statistics.median(deploys):.1f} s)")
print(f"rollback wall time: {rollback:.1f} s")
if failed:
    print(text[-3000:])
    sys.exit(1)
PY

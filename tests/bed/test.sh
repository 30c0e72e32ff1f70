#!/usr/bin/env bash
# `make test`: prepare this machine (tests/bed/host.sh), create the tool venv, then lint, unit tests
# and every molecule scenario. The base images are built (when missing) while the venv is made and
# lint and the unit tests run. Stops at the first failing phase; prints each phase's wall time at
# the end, the scenarios' own times come from tests/bed/molecule.sh.
#
# Usage: tests/bed/test.sh scenario [scenario ...]    (the Makefile passes $(SCENARIOS))
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
mkdir -p .molecule-logs
times=()

phase() {
  local name=$1 start=$SECONDS rc; shift
  echo "test: $name"
  "$@"; rc=$?
  times+=("$(printf '%-10s %5d s%s' "$name" $((SECONDS - start)) "$( ((rc == 0)) || echo "  FAILED rc=$rc")")")
  return $rc
}

summary() {
  echo "==== make test: phases ===="
  printf '%s\n' "${times[@]}"
}
trap summary EXIT

phase host tests/bed/host.sh || exit 1
if [[ ${TSH_APT_PROXY:-1} != 0 ]]; then phase apt-cache tests/bed/apt-cache.sh || exit 1; fi

# Images in the background (downloads, dpkg) while the tool venv is made and lint and the unit
# tests use the CPU: the images need only the Docker engine, debootstrap and the apt cache.
tests/bed/images.sh >.molecule-logs/images.log 2>&1 &
images_pid=$!
images_start=$SECONDS
phase setup make --no-print-directory setup || exit 1
phase lint make --no-print-directory lint || exit 1
phase unit make --no-print-directory unit || exit 1
echo "test: images"
wait "$images_pid"; rc=$?
cat .molecule-logs/images.log
times+=("$(printf '%-10s %5d s (beside setup, lint and unit)%s' images $((SECONDS - images_start)) "$( ((rc == 0)) || echo "  FAILED rc=$rc")")")
(( rc == 0 )) || exit 1

phase molecule tests/bed/molecule.sh "$@"

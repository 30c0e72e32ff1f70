#!/usr/bin/env bash
# Run molecule scenarios, $TSH_MOLECULE_JOBS at a time (default 2), each on Debian 12 and 13.
# Logs go to .molecule-logs/<scenario>.log; a summary with each scenario's wall time is printed
# and the exit status is non-zero when any scenario failed.
#
# Usage: tests/bed/molecule.sh scenario [scenario ...]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
jobs_max=${TSH_MOLECULE_JOBS:-2}
logdir=.molecule-logs
mkdir -p "$logdir"
: "${TSH_APT_PROXY:=1}"
export TSH_APT_PROXY
# molecule/multihost and molecule/pitr pin addresses on their networks; another TSH_TEST_ID gets
# other subnets.
if [[ -n ${TSH_TEST_ID:-} ]]; then
  id_sum=$(printf %s "$TSH_TEST_ID" | cksum | cut -d' ' -f1)
  : "${TSH_MULTIHOST_NET:=10.213.$(( id_sum % 200 + 20 ))}"
  : "${TSH_PITR_NET:=10.214.$(( id_sum % 200 + 20 ))}"
  export TSH_MULTIHOST_NET TSH_PITR_NET
fi

declare -A pid_of=() start_of=()
results=()
failed=0
passed=0

finish() {
  local scenario=$1 rc=$2 took=$(( SECONDS - start_of[$1] ))
  if [[ $rc -eq 0 ]]; then
    results+=("PASS $scenario ${took}s")
    passed=$((passed + 1))
  else
    results+=("FAIL $scenario ${took}s (log: $logdir/$scenario.log)")
    failed=$((failed + 1))
    echo "---- $scenario failed; last lines of $logdir/$scenario.log ----"
    tail -n 80 "$logdir/$scenario.log"
  fi
  echo "molecule: $scenario finished rc=$rc in ${took}s"
}

reap_one() {
  local s
  while true; do
    for s in "${!pid_of[@]}"; do
      if ! kill -0 "${pid_of[$s]}" 2>/dev/null; then
        wait "${pid_of[$s]}"
        finish "$s" $?
        unset "pid_of[$s]"
        return
      fi
    done
    sleep 1
  done
}

for scenario in "$@"; do
  while (( ${#pid_of[@]} >= jobs_max )); do reap_one; done
  echo "molecule: starting $scenario"
  start_of[$scenario]=$SECONDS
  molecule test -s "$scenario" >"$logdir/$scenario.log" 2>&1 &
  pid_of[$scenario]=$!
done
while (( ${#pid_of[@]} > 0 )); do reap_one; done

echo "==== molecule summary ===="
printf '%s\n' "${results[@]}"
echo "molecule: $passed passed, $failed failed"
# A CI page shows only the end of the output: each failed scenario's first failing lines come last.
for result in "${results[@]}"; do
  [[ $result == FAIL* ]] || continue
  scenario=${result#FAIL }; scenario=${scenario%% *}
  echo "---- $scenario: first failures (whole log: $logdir/$scenario.log) ----"
  # molecule prefixes the output of ansible and pytest with "  │ ": strip it so pytest's "E " lines
  # (the assertion and its message) are found; molecule's own "glob failed" notice is noise.
  sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *│ \{0,1\}//' "$logdir/$scenario.log" \
    | grep -v "glob failed" \
    | grep -E -m 16 'fatal: |FAILED!|^E  |^FAILED |^ERROR |failed=[1-9]|CRITICAL|Idempotence test failed' \
    | cut -c1-600
done
if (( passed != $# )); then
  echo "molecule: $# scenarios asked for, $passed passed" >&2
  exit 1
fi

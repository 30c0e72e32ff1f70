"""Helpers shared by the molecule verifiers (tests/molecule/<scenario>) and unit tests."""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
# This checkout as the collection tsh.infra (collections/ansible_collections/tsh/infra is a symlink to
# it): plugins import their module_utils as ansible_collections.tsh.infra.plugins.module_utils.*.
COLLECTIONS = REPO / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def scenario_name() -> str:
    """The scenario's instance prefix: TSH_TEST_ID + scenario (see .config/molecule/config.yml)."""
    return os.environ.get("TSH_TEST_ID", "") + os.environ.get("MOLECULE_SCENARIO_NAME", "")


def molecule_targets() -> list[str]:
    """The scenario's target instances, in inventory order (all platforms, or the one given with
    molecule's --platform-name)."""
    import yaml

    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as f:
        inventory = yaml.safe_load(f)
    return list((inventory.get("targets") or {}).get("hosts") or {})


def target_hosts() -> list:
    """testinfra hosts for the scenario's targets, in inventory order. Verifiers that change state
    use these in every check instead of testinfra's parametrized `host` fixture, with which pytest
    runs all checks of the first host before any of the second: each step then runs once, on both
    targets at the same time, and every check sees both after the same step."""
    import testinfra

    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return [testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory) for name in molecule_targets()]


def recap(run, host: str) -> dict:
    """The PLAY RECAP counters of one host in a finished ansible-playbook run, as a dict."""
    found = re.search(rf"^{re.escape(host)}\s*:(.*)$", run.stdout.split("PLAY RECAP", 1)[-1], re.MULTILINE)
    assert found, f"no PLAY RECAP line for {host}: {run.stdout[-2000:]}"
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", found.group(1))}


def outside_host(name: str):
    """A testinfra host for the helper container <scenario>-outside-<name>."""
    import testinfra

    return testinfra.get_host(f"docker://{scenario_name()}-outside-{name}")


def container_ip(container: str) -> str:
    """The container's address on the scenario's Docker network."""
    out = subprocess.run(
        ["docker", "inspect", container], check=True, capture_output=True, text=True
    ).stdout
    networks = json.loads(out)[0]["NetworkSettings"]["Networks"]
    return networks[f"tsh-{scenario_name()}"]["IPAddress"]


def tcp_open(prober, address: str, port: int, timeout: int = 3) -> bool:
    """Whether prober can open a TCP connection to address:port within timeout seconds."""
    cmd = prober.run(
        f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{address}/{port}'"
    )
    return cmd.rc == 0


def playbook_command(playbook: str | pathlib.Path, *args: str, limit: str | None = None):
    """The ansible-playbook command line and environment for a run against the molecule inventory."""
    env = dict(os.environ)
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    env["ANSIBLE_LIBRARY"] = str(REPO / "plugins/modules")
    env["ANSIBLE_MODULE_UTILS"] = str(REPO / "plugins/module_utils")
    env["ANSIBLE_ACTION_PLUGINS"] = str(REPO / "plugins/action")
    env["ANSIBLE_FILTER_PLUGINS"] = str(REPO / "plugins/filter")
    env["ANSIBLE_COLLECTIONS_PATH"] = ":".join([str(COLLECTIONS), *filter(None, [env.get("ANSIBLE_COLLECTIONS_PATH")])])
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook), *args]
    if limit:
        cmd += ["--limit", limit]
    return cmd, env


_RUNS = itertools.count(1)


def keep_log(playbook: str | pathlib.Path, cmd, stdout: str, stderr: str, seconds: float) -> None:
    """Keep a verifier's ansible-playbook run whole (its assertions quote only the end) in
    .molecule-logs/runs/<scenario>/NNN-<playbook>.log, with the command, wall time and profile."""
    folder = REPO / ".molecule-logs/runs" / (os.environ.get("MOLECULE_SCENARIO_NAME") or "none")
    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"{next(_RUNS):03d}-{pathlib.Path(playbook).stem}.log"
    name.write_text(f"$ {shlex.join(cmd)}\n# {seconds:.1f} s\n{stdout}\n---- stderr ----\n{stderr}", encoding="utf-8")


def run_playbook(playbook: str | pathlib.Path, *args: str, limit: str | None = None):
    """Run ansible-playbook against the molecule inventory; return the CompletedProcess (its whole
    output is also kept: keep_log)."""
    cmd, env = playbook_command(playbook, *args, limit=limit)
    started = time.monotonic()
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    keep_log(playbook, cmd, run.stdout, run.stderr, time.monotonic() - started)
    return run


SAMPLE_APP = REPO / "tests/fixtures/sample_app"
BUILD_PYTHONS = '{"build_python_versions": ["3.11", "3.13"]}'


def build_release(build_dir, version: str, faults: dict | None = None, source=SAMPLE_APP,
                  extra_vars: dict | None = None) -> None:
    """Build `source` (the sample app unless named) as release `version` into build_dir
    (playbooks/build.yml), with the app's test faults (FAULTS.json) and other build variables
    (e.g. build_include) when given."""
    args = ["ansible-playbook", str(REPO / "playbooks/build.yml"), "-e", f"app_src={source}",
            "-e", f"app_version={version}", "-e", f"build_dir={build_dir}", "-e", BUILD_PYTHONS]
    if faults:
        args += ["-e", json.dumps({"app_faults": faults})]
    if extra_vars:
        args += ["-e", json.dumps(extra_vars)]
    run = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


# The real backend's shape (tests/fixtures/tsh_backend: a Socket.IO wrapper entry, /health without
# database state or release id, a slow start, uploads under a shared path) and what
# inventories/production sets for it (its contract, entry point, shared paths).
BACKEND = REPO / "tests/fixtures/tsh_backend"
BACKEND_VARS = json.dumps({
    "tsh_app_asgi_module": "app.main:socket_app",
    "tsh_app_shared_paths": ["app/images"],
    "deploy_health_expect": {"status": "healthy"},
    "deploy_health_database_field": "",
    "deploy_health_version_field": "",
})


def build_backend(build_dir, version: str, faults: dict | None = None) -> None:
    """The backend fixture as production builds it: only the backend's files (build_include)."""
    build_release(build_dir, version, faults, source=BACKEND,
                  extra_vars={"build_include": ["app", "requirements.txt", "config", "database"]})


def start_unit(host, unit: str, expect: tuple[str, ...] = (), timeout: float = 30) -> tuple[int, str]:
    """Start a oneshot unit; return its exit status and every line logged since the start.

    journald reads a unit's output from its stream asynchronously, so `journalctl` right after
    `systemctl start` returns can miss the run's last lines (more so under load). The log is read
    again until each `expect` string is in it, for at most `timeout` seconds; the caller still
    asserts on what it got."""
    cursor = host.check_output("journalctl -n 0 --show-cursor --no-pager -q").removeprefix("-- cursor: ")
    rc = host.run(f"systemctl start {unit}").rc
    read = f"journalctl --after-cursor={shlex.quote(cursor)} -u {unit} -o cat --no-pager -q"
    deadline = time.monotonic() + timeout
    while True:
        log = host.check_output(read)
        if all(text in log for text in expect) or time.monotonic() > deadline:
            return rc, log
        time.sleep(0.5)


def sql(host, query: str, db: str = "tsh_erp") -> str:
    """A query's result on a db host, as postgres over the local socket (psql -At, stops on error)."""
    return host.check_output(f"runuser -u postgres -- psql -d {db} -AXqt -v ON_ERROR_STOP=1 -c {shlex.quote(query)}")


def output(run) -> str:
    """stdout and stderr of a run_playbook() result with all whitespace folded to single spaces,
    so a message wrapped by the callback still matches as one line."""
    return " ".join((run.stdout + " " + run.stderr).split())


@pytest.fixture(scope="session")
def scenario() -> str:
    return scenario_name()


def status_output(run):
    """What playbooks/status.yml printed: the table as a list of lines, or with -e status_format=json
    the status as a dict (the msg of its task "Show the status", printed as JSON by the default callback)."""
    shown = run.stdout.split("TASK [Show the status]", 1)[1]
    return json.JSONDecoder().raw_decode(shown[shown.index("=> ") + 3:])[0]["msg"]

"""Fault table, row "SIGKILL of deploy.yml or rollback.yml".

deploy.yml and rollback.yml are killed with SIGKILL at every phase boundary and at random instants,
under load through nginx, on the first target only (Debian 12: the second would double the time;
it runs every other bluegreen test).

Each kill sends SIGKILL to the whole ansible-playbook process group, as a CI runner that cancels a
job does, when the run prints the task that opens the phase (the phase before it has ended) or after
a random delay. Then, while a load generator on the controller keeps requesting the API's /health
through nginx over TLS:
- nginx answers every request (0 failed over the whole module);
- the colour nginx routes to is enabled at boot;
- the next run, as an operator types it (the same command: the lock of a killed run is broken at
  once, its holder's process being gone), succeeds and serves what it was asked to.
The app is the real backend's shape (tests/fixtures/tsh_backend, with a slow start) with its contract.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import random
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (BACKEND_VARS, REPO, build_backend, container_ip, molecule_targets, output, playbook_command,
                      run_playbook)

testinfra_hosts = []

GROUPS = str(REPO / "tests/molecule/droplet_groups.ini")
TARGET = molecule_targets()[0]
# Where each kill lands: the task that opens a phase (every phase before it has ended), and inside
# the switch phase the task after tsh_switch moved traffic (boot and the static frontends follow).
DEPLOY_KILLS = [
    "Pick the target colour",          # the lock is taken, nothing else changed
    "Start phase backup",
    "Start phase install",
    "Start phase migrate",
    "Start phase start",
    "Start phase gate",                # the new colour runs beside the serving one
    "Start phase switch",
    "Mark traffic as switched",        # traffic and the static frontends moved, the old colour still runs
    "Start phase retire",
    "Record success",                  # old colour stopped, no audit yet, lock still held
]
ROLLBACK_KILLS = [
    "Read the colours",
    "Start phase gate",
    "Start phase switch",
    "Start phase retire",
    "Record success",
]
# Random instants: seeded from the environment to replay a failure (the seed is in every message).
# What each kill and the run after it took, kept in .molecule-logs/kill-figures.json with the load's figures.
KILLS = []
SEED = int(os.environ.get("TSH_KILL_SEED", str(int(time.time()))))
RANDOM = random.Random(SEED)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to erp.tsh.sale (SNI and Host) at a given address, as a client that resolved the name to it."""

    def __init__(self, address, **kwargs):
        super().__init__("erp.tsh.sale", 443, **kwargs)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, 443), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class Load:
    """Requests to https://erp.tsh.sale/health on the target's address from the controller, a new TLS
    connection each (nginx's reloads close idle keep-alive connections, which clients retry), about
    `rate` a second from `workers` threads. Every answer other than 200 and every error is kept."""

    def __init__(self, address, rate=40, workers=4):
        self.address, self.interval, self.workers = address, workers / rate, workers
        self.sent = 0
        self.failures = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(workers)]

    def one(self):
        conn = _Connection(self.address, timeout=10, context=self.context)
        try:
            conn.request("GET", "/health", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            return None if response.status == 200 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def worker(self):
        next_at = time.monotonic()
        while not self.stopped.is_set():
            failure = self.one()
            with self.lock:
                self.sent += 1
                if failure:
                    self.failures.append((time.strftime("%H:%M:%S"), failure))
            next_at += self.interval
            self.stopped.wait(max(0.0, next_at - time.monotonic()))

    def start(self):
        for thread in self.threads:
            thread.start()

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=30)


def docker(*args, check=True):
    return subprocess.run(["docker", "exec", TARGET, *args], capture_output=True, text=True, check=check)


def routed_colour():
    """The colour nginx routes the API to now (its upstream files name it in X-TSH-Color)."""
    out = docker("curl", "-sk", "--max-time", "5", "-o", "/dev/null", "-D", "-", "--resolve",
                 "erp.tsh.sale:443:127.0.0.1", "https://erp.tsh.sale/health").stdout.lower()
    colours = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("x-tsh-color:")]
    assert colours and colours[0] in ("blue", "green"), out
    return colours[0]


def enabled(colour):
    return docker("systemctl", "is-enabled", f"tsh_erp-{colour}", check=False).stdout.strip()


def served_release(colour):
    """The release the colour's current link names."""
    return pathlib.PurePath(docker("readlink", f"/opt/tsh_erp/current-{colour}").stdout.strip()).name


def deploy_args(releases, version):
    return [str(REPO / "deploy.yml"), "-i", GROUPS, "-e", f"release_version={version}",
            "-e", f"deploy_build_dir={releases}", "-e", BACKEND_VARS]


def rollback_args():
    return [str(REPO / "playbooks/rollback.yml"), "-i", GROUPS, "-e", BACKEND_VARS]


def killed_run(args, at=None, after=None):
    """Run ansible-playbook and SIGKILL its process group when it prints TASK [<at>], or `after`
    seconds into the run. Returns (killed, output)."""
    cmd, env = playbook_command(*args, limit=TARGET)
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    killed = threading.Event()
    started = time.monotonic()

    def kill():
        if proc.poll() is None:
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(after, kill) if after is not None else None
    if timer:
        timer.start()
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if at is not None and line.startswith(f"TASK [{at}]"):
            kill()
            break
    proc.wait(timeout=600)
    if timer:
        timer.cancel()
    KILLS.append({"playbook": pathlib.Path(args[0]).stem, "at": at if at is not None else f"{after} s",
                  "killed_after_s": round(time.monotonic() - started, 1)})
    # What the dead run's docker exec children still print is not read: the pipe closes with them.
    return killed.is_set(), "".join(lines)


def check_after_kill(load, where):
    colour = routed_colour()
    assert enabled(colour) == "enabled", f"{where}: nginx routes to {colour}, not enabled at boot (seed {SEED})"
    assert not load.failures, f"{where}: {len(load.failures)} of {load.sent} requests failed: {load.failures[:5]}"


def check_next_run(load, args, where, expect_release=None):
    """The same command again succeeds; traffic, boot and the link agree afterwards."""
    started = time.monotonic()
    run = run_playbook(*args, limit=TARGET)
    KILLS[-1]["next_run_s"] = round(time.monotonic() - started, 1)
    assert run.returncode == 0, f"{where}: the next run failed (seed {SEED}): {output(run)[-4000:]}"
    colour = routed_colour()
    link = docker("readlink", "/etc/nginx/upstreams/tsh_erp_active.conf").stdout.strip()
    assert link.endswith(f"tsh_erp_{colour}.conf"), (where, link, colour)
    assert enabled(colour) == "enabled", where
    other = "green" if colour == "blue" else "blue"
    assert enabled(other) != "enabled" and docker("systemctl", "is-active", f"tsh_erp-{other}",
                                                  check=False).stdout.strip() != "active", where
    if expect_release:
        assert served_release(colour) == expect_release, where
    assert not docker("test", "-e", "/opt/tsh_erp/deploy/lock/holder.json", check=False).returncode == 0, where
    assert not load.failures, f"{where}: {len(load.failures)} of {load.sent} requests failed: {load.failures[:5]}"
    return run


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    path = tmp_path_factory.mktemp("kill-releases")
    for version in ("k1", "k2"):
        build_backend(path, version)
    return path


@pytest.fixture(scope="module")
def load(releases):
    """The backend's settings (a 2 s start, shorter than test_bluegreen's), k1 serving, then the load."""
    env = json.dumps({"tsh_app_extra_env": {"TSH_FIXTURE_START_DELAY": "2"}})
    applied = run_playbook(pathlib.Path(__file__).with_name("apply_tsh_app.yml"), "-e", BACKEND_VARS, "-e", env,
                           limit=TARGET)
    assert applied.returncode == 0, output(applied)[-3000:]
    run = run_playbook(*deploy_args(releases, "k1"), limit=TARGET)
    assert run.returncode == 0, output(run)[-4000:]
    generator = Load(container_ip(TARGET))
    started = time.monotonic()
    generator.start()
    yield generator
    generator.stop()
    figures = {"requests": generator.sent, "failed": len(generator.failures), "seconds": round(time.monotonic() - started),
               "seed": SEED, "kills": KILLS}
    (REPO / ".molecule-logs/kill-figures.json").write_text(json.dumps(figures, indent=1) + "\n")


def other_release():
    return "k2" if served_release(routed_colour()) == "k1" else "k1"


@pytest.mark.parametrize("at", DEPLOY_KILLS)
def test_deploy_killed_at_a_phase_boundary(load, releases, at):
    version = other_release()
    killed, text = killed_run(deploy_args(releases, version), at=at)
    assert killed, f"the deploy never printed TASK [{at}]: {text[-3000:]}"
    check_after_kill(load, f"deploy killed at {at}")
    check_next_run(load, deploy_args(releases, version), f"deploy after a kill at {at}", version)


def test_deploy_killed_at_random_instants(load, releases):
    for _ in range(2):
        version = other_release()
        # A deploy here takes 20 to 40 s; a kill after it ended is no kill (asserted).
        after = round(RANDOM.uniform(2, 18), 1)
        killed, text = killed_run(deploy_args(releases, version), after=after)
        assert killed, f"the deploy ended before {after} s (seed {SEED}): {text[-2000:]}"
        check_after_kill(load, f"deploy killed after {after} s")
        check_next_run(load, deploy_args(releases, version), f"deploy after a kill at {after} s", version)


@pytest.mark.parametrize("at", ROLLBACK_KILLS)
def test_rollback_killed_at_a_phase_boundary(load, at):
    killed, text = killed_run(rollback_args(), at=at)
    assert killed, f"the rollback never printed TASK [{at}]: {text[-3000:]}"
    check_after_kill(load, f"rollback killed at {at}")
    # A rollback killed after its switch has already moved traffic: the same command moves it back,
    # which is still a gated, successful rollback.
    check_next_run(load, rollback_args(), f"rollback after a kill at {at}")


def test_rollback_killed_at_a_random_instant(load):
    after = round(RANDOM.uniform(1, 8), 1)
    killed, text = killed_run(rollback_args(), after=after)
    assert killed, f"the rollback ended before {after} s (seed {SEED}): {text[-2000:]}"
    check_after_kill(load, f"rollback killed after {after} s")
    check_next_run(load, rollback_args(), f"rollback after a kill at {after} s")


def test_no_request_failed(load):
    assert load.sent > 0
    assert not load.failures, f"{len(load.failures)} of {load.sent} failed (seed {SEED}): {load.failures[:10]}"

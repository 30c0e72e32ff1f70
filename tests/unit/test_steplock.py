"""Unit tests for plugins/module_utils/tsh_steplock.py: one deploy step at a time on a host, a
killed step never leaves the lock held."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.tsh.infra.plugins.module_utils import tsh_steplock as sl

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {collections!r})
    from ansible_collections.tsh.infra.plugins.module_utils import tsh_steplock as sl
    fd, waited, held_by = sl.acquire("tsh_release_install 2026.12.07-1", path={path!r})
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
""")


def _holder(tmp_path, seconds):
    import pathlib  # noqa: PLC0415
    collections = str(pathlib.Path(__file__).resolve().parents[2] / "collections")
    path = str(tmp_path / "step.lock")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(collections=collections, path=path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc, path


def test_a_free_host_is_taken_at_once(tmp_path):
    fd, waited, held_by = sl.acquire("tsh_switch", path=str(tmp_path / "step.lock"))
    try:
        assert held_by == "" and waited < 0.5
    finally:
        os.close(fd)


def test_a_step_waits_for_the_one_running_and_names_it(tmp_path):
    proc, path = _holder(tmp_path, 1.0)
    try:
        fd, waited, held_by = sl.acquire("tsh_switch", path=path, wait=10)
        os.close(fd)
        assert 0.3 < waited < 5
        assert held_by.startswith("tsh_release_install 2026.12.07-1 (pid ")
    finally:
        proc.wait(timeout=10)


def test_a_killed_step_releases_the_host_at_once(tmp_path):
    proc, path = _holder(tmp_path, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    start = time.monotonic()
    fd, _, _ = sl.acquire("tsh_retire", path=path, wait=5)
    os.close(fd)
    assert time.monotonic() - start < 1


def test_a_step_that_keeps_the_host_too_long_is_named_and_nothing_changes(tmp_path):
    proc, path = _holder(tmp_path, 30)
    try:
        with pytest.raises(sl.StepBusy, match=r"tsh_release_install 2026.12.07-1 \(pid \d+.*still runs on this host"):
            sl.acquire("tsh_switch", path=path, wait=0.5)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_released_when_the_descriptor_closes(tmp_path):
    path = str(tmp_path / "step.lock")
    fd, _, _ = sl.acquire("a", path=path)
    os.close(fd)
    fd2, waited, held_by = sl.acquire("b", path=path, wait=1)
    os.close(fd2)
    assert held_by == ""

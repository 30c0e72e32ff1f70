"""One deploy step at a time on a host, even across runs: every module that changes the deployed
state takes this host's step lock (an flock, held until the module's process ends) before it acts.

Why: SIGKILL to ansible-playbook (a cancelled CI job) ends the controller and its ssh or docker exec
clients, but a module already running on the host goes on to its end. The next run breaks the
deploy lock at once (the killed controller is provably gone), so without this its first step could
run beside the orphaned one (an install still unpacking, a switch still reloading). With it, that
step waits until the orphan ends, then goes on against what the orphan left. The kernel drops an
flock when its holder dies, so a killed step never leaves it held. Unit tests: tests/unit/test_steplock.py."""

from __future__ import annotations

import fcntl
import os
import time

LOCK_PATH = "/run/lock/tsh_erp-step.lock"
# An install of the real backend (129 wheels into a fresh venv) takes minutes on the droplet.
WAIT_S = 900.0


class StepBusy(Exception):
    """Another step held the host for longer than the wait; the message names it."""


def _holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace").strip() or "another deploy step"
    except OSError:
        return "another deploy step"


def acquire(label, path=LOCK_PATH, wait=WAIT_S, clock=time.monotonic, sleep=time.sleep):
    """Take the host's step lock for this process, waiting up to `wait` seconds. Returns (fd, seconds
    waited, who held it: '' when nobody did). Keep fd open: closing it, or the process ending,
    releases the lock."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        path = os.path.join("/run", os.path.basename(path)) if os.path.isdir("/run") else path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    start = clock()
    held_by = ""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            held_by = held_by or _holder(fd)
            if clock() - start >= wait:
                os.close(fd)
                raise StepBusy(f"{held_by} still runs on this host after {wait:.0f} s (a step of a killed run "
                               f"goes on to its end). See it with: fuser -v {path}; ps -fp <pid>. Run again once it "
                               f"has ended; nothing was changed by this step.") from None
            sleep(0.2)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{label} (pid {os.getpid()}, since {time.strftime('%H:%M:%S')})".encode())
    return fd, clock() - start, held_by


def hold_for_step(module, label, wait=WAIT_S):
    """For a module's main(): take the step lock until the module exits, failing the module with the
    reason when another step keeps the host busy beyond `wait`; warn when it had to wait."""
    try:
        fd, waited, held_by = acquire(label, wait=wait)
    except (StepBusy, OSError) as exc:
        module.fail_json(msg=f"{label}: {exc}")
    if held_by:
        module.warn(f"{label} waited {waited:.1f} s for {held_by} to end on this host")
    return fd

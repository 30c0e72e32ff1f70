"""Retiring the old colour after a switch: let its connections drain, stop and disable it, and make
boot follow traffic. Used by plugins/modules/tsh_retire.py; unit tests in tests/unit/test_colour.py.
Standard library only."""

from __future__ import annotations

import time

TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"


class RetireError(Exception):
    """A systemctl command that failed; the message names it."""


def established(port, tables):
    """How many established TCP connections have local port `port`, in /proc/net/tcp{,6} texts."""
    count = 0
    for text in tables:
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) < 4 or ":" not in fields[1]:
                continue
            if fields[3] == ESTABLISHED and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def drain(count, timeout, sleep=time.sleep, clock=time.monotonic, interval=0.25):
    """Wait until count() is 0 or `timeout` seconds have passed; return (still open, seconds waited)."""
    start = clock()
    while True:
        remaining = count()
        waited = clock() - start
        if remaining == 0 or waited >= timeout:
            return remaining, round(waited, 2)
        sleep(min(interval, max(timeout - waited, 0)))


def retire(run, old_unit, new_unit, check=False):
    """Stop and disable old_unit (when it is not new_unit) and enable new_unit at boot, each only when
    it is not so already; return what changed. run(argv) -> (rc, stdout, stderr)."""

    def systemctl(*args):
        rc, out, err = run(["systemctl", *args])
        if rc != 0:
            raise RetireError(f"`systemctl {' '.join(args)}` failed (rc {rc}): {(err or out).strip()}")

    def enabled(unit):
        return run(["systemctl", "is-enabled", "--quiet", unit])[0] == 0

    def running(unit):
        # Anything but stopped counts (activating, a restart loop, deactivating): it must stop.
        return run(["systemctl", "is-active", unit])[1].strip() not in ("inactive", "failed")

    changes = []
    if old_unit and old_unit != new_unit and (running(old_unit) or enabled(old_unit)):
        changes.append(f"stopped and disabled {old_unit}")
        if not check:
            systemctl("disable", "--now", "--quiet", old_unit)
    if new_unit and not enabled(new_unit):
        changes.append(f"enabled {new_unit} at boot")
        if not check:
            systemctl("enable", "--quiet", new_unit)
    return changes

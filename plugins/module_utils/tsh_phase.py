"""A deploy's phases and how long each took: the logic of the tsh_phase action (controller only).
A phase lasts from its start to the start of the next one, or to the end of the run (the audit record
closes the open one), so the durations add up to the run's time from the first phase on. Unit tests:
tests/unit/test_phase.py."""

from __future__ import annotations


def advance(durations, open_phase, started, name, now, reset=False):
    """Close the open phase (started at `started`, epoch seconds) at `now` and open `name` ('' opens
    none: the end of the run). Returns the facts to set: __deploy_durations (a new dict, phase ->
    seconds, rounded to 0.1), __deploy_phase (the phase now open, or the last one when name is '')
    and __deploy_phase_started (None when no phase is open). reset: forget what came before (the start
    of a run: facts are host facts, and a fact cache may hold an earlier run's)."""
    if reset:
        durations, open_phase, started = {}, "", None
    durations = dict(durations or {})
    if open_phase and started is not None:
        durations[open_phase] = round(max(float(now) - float(started), 0.0), 1)
    return {
        "__deploy_durations": durations,
        "__deploy_phase": name or open_phase or "",
        "__deploy_phase_started": float(now) if name else None,
    }

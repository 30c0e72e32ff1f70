"""Bring several systemd units to a wanted state (started or stopped, enabled at boot or not) with one
read of their state: the logic of the tsh_units module. Unit tests: tests/unit/test_units.py."""

from __future__ import annotations

# systemctl is-enabled answers 0 for these: the unit starts at boot or has nothing to enable.
ENABLED = {"enabled", "enabled-runtime", "alias", "static", "indirect", "generated", "transient"}
# Enabled by a link that `systemctl disable` removes.
DISABLE = {"enabled", "enabled-runtime"}
RUNNING = {"active", "activating", "reloading", "refreshing"}
PROPERTIES = ("Id", "LoadState", "ActiveState", "UnitFileState")


class UnitError(Exception):
    """A unit that cannot be brought to its state, with the message to show."""


def show_argv(names: list[str]) -> list[str]:
    return ["systemctl", "show", "--property=" + ",".join(PROPERTIES), "--", *names]


def parse_show(text: str, names: list[str]) -> dict[str, dict]:
    """systemctl show's answer for several units: one block of Key=value lines per unit, blank lines
    between, in the order asked; keyed here by the names asked."""
    blocks = text.strip("\n").split("\n\n") if text.strip() else []
    if len(blocks) != len(names):
        raise UnitError(f"systemctl show answered {len(blocks)} blocks for {len(names)} units: {text.strip()[:300]}")
    shown = {}
    for name, block in zip(names, blocks):
        shown[name] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return shown


def plan(units: list[dict], shown: dict[str, dict]) -> list[tuple[str, str]]:
    """The systemctl verbs (enable, disable, start, stop, restart) with their unit, in order, that bring
    each of units ({'name', 'state': started|stopped|restarted|None, 'enabled': bool|None}) to what it
    asks (restarted: always restarted)."""
    steps = []
    for unit in units:
        name, props = unit["name"], shown[unit["name"]]
        if props.get("LoadState") != "loaded":
            raise UnitError(f"{name}: systemd has no such unit (LoadState={props.get('LoadState')}); "
                            "install its package or unit file first")
        enabled, state = unit.get("enabled"), unit.get("state")
        file_state = props.get("UnitFileState", "")
        if enabled is True and file_state not in ENABLED:
            steps.append(("enable", name))
        elif enabled is False and file_state in DISABLE:
            steps.append(("disable", name))
        active = props.get("ActiveState", "")
        if state == "started" and active not in RUNNING:
            steps.append(("start", name))
        elif state == "stopped" and active in RUNNING | {"deactivating"}:
            steps.append(("stop", name))
        elif state == "restarted":
            # Always: a timer restarted counts its OnActiveSec= from now.
            steps.append(("restart", name))
        elif state not in (None, "started", "stopped"):
            raise UnitError(f"{name}: state must be started, stopped or restarted, not {state}")
    return steps


def apply(units: list[dict], run, check: bool = False, daemon_reload: bool = False) -> dict:
    """Read the units' state once, then run the steps plan() gives (none in check mode).
    run(argv) -> (rc, stdout, stderr). Returns {'changed', 'steps'} (steps as "verb unit")."""
    names = [u["name"] for u in units]
    if len(set(names)) != len(names):
        raise UnitError(f"a unit is given twice: {sorted({n for n in names if names.count(n) > 1})}")
    if daemon_reload and not check:
        _run(run, ["systemctl", "daemon-reload"])
    if not names:
        return {"changed": False, "steps": []}
    rc, out, err = run(show_argv(names))
    if rc != 0:
        raise UnitError(f"systemctl show failed: {(err or out).strip()}")
    steps = plan(units, parse_show(out, names))
    if not check:
        for verb, name in steps:
            _run(run, ["systemctl", verb, "--", name],
                 hint=f" (journalctl -u {name} -n 50 says why)" if verb in ("start", "restart") else "")
    return {"changed": bool(steps), "steps": [f"{verb} {name}" for verb, name in steps]}


def _run(run, argv, hint=""):
    rc, out, err = run(argv)
    if rc != 0:
        raise UnitError(f"{' '.join(argv)} failed{hint}: {(err or out).strip()}")

"""Unit tests for plugins/module_utils/tsh_colour.py: counting the old colour's connections from
/proc/net/tcp text, the bounded drain, and the systemctl calls of retiring a colour."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_colour.py"
_SPEC = importlib.util.spec_from_file_location("tsh_colour", _PATH)
tc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tc)

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
# 127.0.0.1:8001 listening, one established connection to it from nginx, one from 8001 outwards
# closing (TIME_WAIT), and an established connection on 8002.
TCP = HEADER + (
    "   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999 0 1 1\n"
    "   1: 0100007F:1F41 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000   999 0 2 1\n"
    "   2: 0100007F:1F41 0100007F:D2A6 06 00000000:00000000 00:00000000 00000000     0 0 0 3\n"
    "   3: 0100007F:1F42 0100007F:D2A8 01 00000000:00000000 00:00000000 00000000   999 0 4 1\n"
)
TCP6 = HEADER + (
    "   0: 0000000000000000FFFF00000100007F:1F41 0000000000000000FFFF00000100007F:D2B0 01 "
    "00000000:00000000 00:00000000 00000000   999 0 5 1\n"
)


def test_established_counts_only_the_port_and_the_state():
    assert tc.established(8001, [TCP]) == 1
    assert tc.established(8001, [TCP, TCP6]) == 2
    assert tc.established(8002, [TCP, TCP6]) == 1
    assert tc.established(8003, [TCP, TCP6]) == 0
    assert tc.established(8001, [HEADER, ""]) == 0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.now += seconds


def test_drain_returns_as_soon_as_nothing_is_open():
    clock, counts = Clock(), iter([3, 2, 0])
    assert tc.drain(lambda: next(counts), 30, sleep=clock.sleep, clock=clock) == (0, 0.5)


def test_drain_is_bounded_and_says_what_was_left():
    clock = Clock()
    assert tc.drain(lambda: 4, 2, sleep=clock.sleep, clock=clock) == (4, 2.0)


def test_drain_with_no_time_asks_once():
    clock, asked = Clock(), []
    assert tc.drain(lambda: asked.append(1) or 1, 0, sleep=clock.sleep, clock=clock) == (1, 0.0)
    assert asked == [1]


class Systemd:
    """systemctl is-active/is-enabled/disable --now/enable over a dict of unit states."""

    def __init__(self, blue=None, green=None):
        self.units = {f"tsh_erp-{colour}": dict(state) for colour, state in (("blue", blue), ("green", green)) if state}
        self.calls = []
        self.fail = None

    def __call__(self, argv):
        assert argv[0] == "systemctl"
        self.calls.append(" ".join(argv[1:]))
        unit = argv[-1]
        if self.fail and self.fail in argv:
            return 1, "", f"Failed to {argv[1]} unit {unit}: Access denied"
        if argv[1] == "is-active":
            state = self.units.get(unit, {}).get("active", "inactive")
            state = {True: "active", False: "inactive"}.get(state, state)
            return (0 if state == "active" else 3), state + "\n", ""
        if argv[1] == "is-enabled":
            return (0 if self.units.get(unit, {}).get("enabled") else 1), "", ""
        if argv[1:3] == ["disable", "--now"]:
            self.units[unit] = {"active": False, "enabled": False}
        elif argv[1] == "enable":
            self.units[unit]["enabled"] = True
        return 0, "", ""

    def changes(self):
        return [c for c in self.calls if not c.startswith("is-")]


def test_retire_stops_the_old_colour_and_enables_the_new_one():
    systemd = Systemd(blue={"active": True, "enabled": True}, green={"active": True, "enabled": False})
    assert tc.retire(systemd, "tsh_erp-blue", "tsh_erp-green") == [
        "stopped and disabled tsh_erp-blue", "enabled tsh_erp-green at boot"]
    assert systemd.changes() == ["disable --now --quiet tsh_erp-blue", "enable --quiet tsh_erp-green"]
    assert systemd.units["tsh_erp-blue"] == {"active": False, "enabled": False}


def test_retire_again_changes_nothing():
    systemd = Systemd(blue={"active": False, "enabled": False}, green={"active": True, "enabled": True})
    assert tc.retire(systemd, "tsh_erp-blue", "tsh_erp-green") == []
    assert systemd.changes() == []


def test_retire_never_stops_the_new_colour_and_skips_a_missing_old_one():
    systemd = Systemd(green={"active": True, "enabled": False})
    assert tc.retire(systemd, "tsh_erp-green", "tsh_erp-green") == ["enabled tsh_erp-green at boot"]
    assert tc.retire(systemd, "", "tsh_erp-green") == []
    assert systemd.units["tsh_erp-green"]["active"]


def test_a_colour_stuck_activating_is_stopped_too():
    systemd = Systemd(blue={"active": "activating", "enabled": False}, green={"active": True, "enabled": True})
    assert tc.retire(systemd, "tsh_erp-blue", "tsh_erp-green") == ["stopped and disabled tsh_erp-blue"]


def test_retire_in_check_mode_only_asks():
    systemd = Systemd(blue={"active": True, "enabled": True}, green={"active": True, "enabled": False})
    assert len(tc.retire(systemd, "tsh_erp-blue", "tsh_erp-green", check=True)) == 2
    assert systemd.changes() == []


def test_a_failing_systemctl_is_named():
    systemd = Systemd(blue={"active": True, "enabled": True}, green={"active": True, "enabled": True})
    systemd.fail = "disable"
    with pytest.raises(tc.RetireError, match=r"`systemctl disable --now --quiet tsh_erp-blue` failed \(rc 1\): .*Access denied"):
        tc.retire(systemd, "tsh_erp-blue", "tsh_erp-green")

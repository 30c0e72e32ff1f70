"""Unit tests for plugins/module_utils/tsh_units.py: one systemctl show for several units, and only
the enable, disable, start and stop calls that change something (restart: always)."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_units.py"
_SPEC = importlib.util.spec_from_file_location("tsh_units", _PATH)
tu = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tu)


def block(name, load="loaded", active="active", file_state="enabled"):
    return f"Id={name}\nLoadState={load}\nActiveState={active}\nUnitFileState={file_state}\n"


class Systemctl:
    """Answers systemctl show from a table, records every call, fails the verbs it is told to."""

    def __init__(self, table, fail=()):
        self.table, self.fail, self.calls = table, set(fail), []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[1] == "show":
            return 0, "\n".join(block(n, *self.table[n]) for n in argv[argv.index("--") + 1:]), ""
        if argv[1] in self.fail:
            return 1, "", f"Job for {argv[-1]} failed."
        return 0, "", ""


def test_nothing_to_do_is_one_read():
    run = Systemctl({"a.timer": ("loaded", "active", "enabled"), "b.timer": ("loaded", "active", "static")})
    result = tu.apply([{"name": "a.timer", "state": "started", "enabled": True},
                       {"name": "b.timer", "state": "started", "enabled": True}], run)
    assert result == {"changed": False, "steps": []}
    assert len(run.calls) == 1


def test_only_the_differences_run_enable_before_start():
    run = Systemctl({"blue": ("loaded", "active", "disabled"), "green": ("loaded", "inactive", "enabled"),
                     "pg": ("loaded", "failed", "enabled")})
    result = tu.apply([{"name": "blue", "enabled": True}, {"name": "green", "enabled": False},
                       {"name": "pg", "state": "started", "enabled": True}], run)
    assert result["steps"] == ["enable blue", "disable green", "start pg"]
    assert run.calls[1:] == [["systemctl", "enable", "--", "blue"], ["systemctl", "disable", "--", "green"],
                             ["systemctl", "start", "--", "pg"]]


def test_state_left_alone_when_not_asked_and_stop_when_asked():
    run = Systemctl({"a": ("loaded", "inactive", "enabled"), "b": ("loaded", "deactivating", "disabled")})
    assert tu.apply([{"name": "a", "enabled": True}, {"name": "b", "state": "stopped"}], run)["steps"] == ["stop b"]


def test_a_static_unit_counts_as_enabled_and_is_not_disabled():
    shown = {"s": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "static"}}
    assert tu.plan([{"name": "s", "enabled": True}], shown) == []
    assert tu.plan([{"name": "s", "enabled": False}], shown) == []


def test_check_mode_reads_and_changes_nothing():
    run = Systemctl({"a": ("loaded", "inactive", "disabled")})
    result = tu.apply([{"name": "a", "state": "started", "enabled": True}], run, check=True, daemon_reload=True)
    assert result == {"changed": True, "steps": ["enable a", "start a"]}
    assert [c[1] for c in run.calls] == ["show"]


def test_daemon_reload_comes_first():
    run = Systemctl({"a": ("loaded", "active", "enabled")})
    tu.apply([{"name": "a", "state": "started"}], run, daemon_reload=True)
    assert [c[1] for c in run.calls] == ["daemon-reload", "show"]


def test_an_unknown_unit_fails_before_any_change():
    run = Systemctl({"a": ("loaded", "inactive", "disabled"), "nope.timer": ("not-found", "inactive", "")})
    with pytest.raises(tu.UnitError, match="nope.timer: systemd has no such unit"):
        tu.apply([{"name": "a", "state": "started"}, {"name": "nope.timer", "state": "started"}], run)
    assert len(run.calls) == 1


def test_a_failed_start_names_the_unit_and_its_log():
    run = Systemctl({"a": ("loaded", "inactive", "enabled")}, fail={"start"})
    with pytest.raises(tu.UnitError, match=r"systemctl start -- a failed \(journalctl -u a -n 50 says why\): Job for a"):
        tu.apply([{"name": "a", "state": "started"}], run)


def test_a_unit_twice_or_a_bad_state_is_refused():
    with pytest.raises(tu.UnitError, match="given twice"):
        tu.apply([{"name": "a"}, {"name": "a"}], Systemctl({}))
    shown = {"a": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"}}
    with pytest.raises(tu.UnitError, match="started, stopped or restarted, not reloaded"):
        tu.plan([{"name": "a", "state": "reloaded"}], shown)


def test_restarted_always_restarts_active_or_not():
    # How a pause re-arms tsh-backup-resume.timer: its OnActiveSec= counts from the restart.
    run = Systemctl({"r.timer": ("loaded", "active", "static"), "s.timer": ("loaded", "inactive", "static")})
    result = tu.apply([{"name": "r.timer", "state": "restarted"}, {"name": "s.timer", "state": "restarted"}], run)
    assert result == {"changed": True, "steps": ["restart r.timer", "restart s.timer"]}
    assert run.calls[1:] == [["systemctl", "restart", "--", "r.timer"], ["systemctl", "restart", "--", "s.timer"]]


def test_parse_show_needs_one_block_per_unit():
    with pytest.raises(tu.UnitError, match="2 blocks for 3 units"):
        tu.parse_show(block("a") + "\n" + block("b"), ["a", "b", "c"])
    assert tu.parse_show(block("a") + "\n" + block("b"), ["a", "b"])["b"]["Id"] == "b"

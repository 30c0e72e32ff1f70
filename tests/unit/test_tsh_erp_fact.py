"""Unit tests for the tsh_app local fact (roles/tsh_app/files/tsh_erp.fact)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

FACT = pathlib.Path(__file__).resolve().parents[2] / "roles/tsh_app/files/tsh_erp.fact"


@pytest.fixture()
def tree(tmp_path):
    """A fake host: upstream files, release links and a systemctl stub."""
    upstreams = tmp_path / "etc/nginx/upstreams"
    upstreams.mkdir(parents=True)
    for color in ("blue", "green"):
        (upstreams / f"tsh_erp_{color}.conf").write_text("upstream tsh_erp {}\n")
    releases = tmp_path / "opt/tsh_erp/releases"
    for version in ("v1", "v2"):
        (releases / version).mkdir(parents=True)
    states = tmp_path / "states.json"
    states.write_text("{}")
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(
        "#!%s\nimport json, sys\n"
        "states = json.load(open(%r))\n"
        "print(states.get(sys.argv[2], {}).get(sys.argv[1], 'inactive' if sys.argv[1] == 'is-active' else 'disabled'))\n"
        % (sys.executable, str(states))
    )
    systemctl.chmod(0o755)
    config = {
        "active_link": str(upstreams / "tsh_erp_active.conf"),
        "upstream_files": {c: str(upstreams / f"tsh_erp_{c}.conf") for c in ("blue", "green")},
        "ports": {"blue": 8001, "green": 8002},
        "units": {"blue": "tsh_erp-blue", "green": "tsh_erp-green"},
        "current_links": {c: str(tmp_path / f"opt/tsh_erp/current-{c}") for c in ("blue", "green")},
        "systemctl": str(systemctl),
    }
    cfg = tmp_path / "fact.json"
    cfg.write_text(json.dumps(config))
    return {"root": tmp_path, "upstreams": upstreams, "config": cfg, "states": states, "cfg": config}


def run_fact(tree):
    env = dict(os.environ, TSH_ERP_FACT_CONFIG=str(tree["config"]))
    out = subprocess.run([sys.executable, str(FACT)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def test_missing_symlink_means_blue_is_next(tree):
    fact = run_fact(tree)
    assert fact["active_color"] is None
    assert fact["idle_color"] == "blue"
    assert fact["error"] is None
    assert fact["colors"]["blue"]["port"] == 8001
    assert fact["colors"]["green"]["port"] == 8002
    assert fact["colors"]["blue"]["release"] is None
    assert fact["releases"] == []  # v1 and v2 have no RELEASE.json: not complete


def test_releases_lists_the_complete_ones(tree):
    releases = tree["root"] / "opt/tsh_erp/releases"
    for version in ("v2", "v1"):
        (releases / version / "RELEASE.json").write_text("{}")
    (releases / ".tmp-v3").mkdir()
    (releases / ".tmp-v3" / "RELEASE.json").write_text("{}")
    assert run_fact(tree)["releases"] == ["v1", "v2"]
    tree["cfg"]["releases_dir"] = str(tree["root"] / "nowhere")
    tree["config"].write_text(json.dumps(tree["cfg"]))
    assert run_fact(tree)["releases"] == []


def test_relative_link_to_green(tree):
    (tree["upstreams"] / "tsh_erp_active.conf").symlink_to("tsh_erp_green.conf")
    fact = run_fact(tree)
    assert fact["active_color"] == "green"
    assert fact["idle_color"] == "blue"


def test_absolute_link_to_blue_with_releases_and_units(tree):
    (tree["upstreams"] / "tsh_erp_active.conf").symlink_to(tree["upstreams"] / "tsh_erp_blue.conf")
    os.symlink(tree["root"] / "opt/tsh_erp/releases/v2", tree["cfg"]["current_links"]["blue"])
    os.symlink(tree["root"] / "opt/tsh_erp/releases/v1/", tree["cfg"]["current_links"]["green"])
    tree["states"].write_text(json.dumps({"tsh_erp-blue": {"is-active": "active", "is-enabled": "enabled"}}))
    fact = run_fact(tree)
    assert fact["active_color"] == "blue"
    assert fact["idle_color"] == "green"
    assert fact["colors"]["blue"] == {
        "port": 8001, "unit": "tsh_erp-blue", "release": "v2", "active": True, "enabled": True,
    }
    assert fact["colors"]["green"]["release"] == "v1"
    assert fact["colors"]["green"]["active"] is False
    assert fact["colors"]["green"]["enabled"] is False


def test_link_to_something_else_is_an_error(tree):
    (tree["upstreams"] / "tsh_erp_active.conf").symlink_to("/etc/passwd")
    fact = run_fact(tree)
    assert fact["active_color"] is None
    assert fact["idle_color"] is None
    assert "neither upstream file" in fact["error"]


def test_regular_file_instead_of_link_is_an_error(tree):
    (tree["upstreams"] / "tsh_erp_active.conf").write_text("upstream tsh_erp {}\n")
    fact = run_fact(tree)
    assert fact["idle_color"] is None
    assert "not a symlink" in fact["error"]


def test_unreadable_config_reports_error(tmp_path):
    env = dict(os.environ, TSH_ERP_FACT_CONFIG=str(tmp_path / "missing.json"))
    out = subprocess.run([sys.executable, str(FACT)], capture_output=True, text=True, env=env, check=True)
    assert "cannot read" in json.loads(out.stdout)["error"]

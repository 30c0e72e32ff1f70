"""Unit tests for the deploy topology (plugins/module_utils/tsh_topology.py): the web host rule, each
host's web host with its overrides, and the cell of app hosts a deploy moves together; then the filter
tsh_web_host (plugins/filter/tsh_topology.py), the documentation of the action plugin
(plugins/modules/tsh_topology.py), and the action plugin itself (plugins/action/tsh_topology.py) run
by ansible-playbook through the deploy role's default, against an inventory whose hosts it never
connects to."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from conftest import REPO
from ansible_collections.tsh.infra.plugins.action import tsh_topology as action
from ansible_collections.tsh.infra.plugins.filter import tsh_topology as filters
from ansible_collections.tsh.infra.plugins.module_utils import tsh_topology as topo

DROPLET = {"web": ["droplet"], "app": ["droplet"], "db": ["droplet"]}
SPLIT = {"web": ["web1"], "app": ["app1", "app2"], "db": ["db1"]}
NO_WEB = {"app": ["app1", "app2"]}


def cell_of(host, groups, play_hosts=None, overrides=None):
    """The cell of host as deploy.yml sees it: the play is the app group (or play_hosts, a --limit)."""
    play_hosts = groups.get("app", []) if play_hosts is None else play_hosts
    web_hosts = topo.web_hosts([*play_hosts, *groups.get("app", [])], groups, overrides)
    return topo.cell(host, web_hosts, play_hosts, groups.get("app", []))


# The web host rule -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "groups", "expected"),
    [
        ("droplet", DROPLET, "droplet"),  # the one droplet: app = web = db
        ("app1", SPLIT, "web1"),  # a separate web host
        ("app2", SPLIT, "web1"),
        ("db1", SPLIT, "web1"),  # status.yml asks it of every host
        ("web1", SPLIT, "web1"),
        ("app2", NO_WEB, "app2"),  # no web group: each app host is its own web host
        ("app1", {"web": ["web1", "web2"], "app": ["app1", "web2"]}, "web1"),  # the first web host
        ("web2", {"web": ["web1", "web2"], "app": ["app1", "web2"]}, "web2"),  # a web host serves itself
    ],
)
def test_web_host_of(host, groups, expected):
    assert topo.web_host_of(host, groups) == expected


def test_an_empty_web_group_is_refused_naming_the_fix():
    with pytest.raises(topo.TopologyError, match="The web group is empty, so app1 has no web host"):
        topo.web_host_of("app1", {"web": [], "app": ["app1"]})


def test_a_hosts_own_setting_wins_over_the_rule_even_when_empty():
    groups = {"web": ["web1", "web2"], "app": ["app1", "app2"]}
    assert topo.web_hosts(["app1", "app2"], groups, {"app2": "web2"}) == {"app1": "web1", "app2": "web2"}
    # Like Jinja's default() without true: only an unset variable takes the rule.
    assert topo.web_hosts(["app1"], groups, {"app1": ""}) == {"app1": ""}


# The cell ----------------------------------------------------------------------------------------
def test_one_droplet_is_a_cell_of_one():
    assert cell_of("droplet", DROPLET) == {
        "web_host": "droplet", "cell": ["droplet"], "cell_inventory": ["droplet"], "index": 0,
        "first": True, "last": True, "touched": ["droplet"], "complete": True}


def test_two_app_hosts_behind_a_web_host_form_one_cell():
    first, second = cell_of("app1", SPLIT), cell_of("app2", SPLIT)
    assert first == {"web_host": "web1", "cell": ["app1", "app2"], "cell_inventory": ["app1", "app2"], "index": 0,
                     "first": True, "last": False, "touched": ["app1"], "complete": True}
    assert second == {"web_host": "web1", "cell": ["app1", "app2"], "cell_inventory": ["app1", "app2"], "index": 1,
                      "first": False, "last": True, "touched": ["app1", "app2"], "complete": True}


def test_three_app_hosts_first_middle_last_and_what_each_has_touched():
    groups = {"web": ["web1"], "app": ["a", "b", "c"]}
    got = [cell_of(h, groups) for h in ("a", "b", "c")]
    assert [(c["index"], c["first"], c["last"]) for c in got] == [(0, True, False), (1, False, False), (2, False, True)]
    assert [c["touched"] for c in got] == [["a"], ["a", "b"], ["a", "b", "c"]]


def test_without_a_web_group_each_app_host_is_its_own_cell():
    for host in ("app1", "app2"):
        assert cell_of(host, NO_WEB) == {
            "web_host": host, "cell": [host], "cell_inventory": [host], "index": 0,
            "first": True, "last": True, "touched": [host], "complete": True}


def test_a_per_host_override_moves_a_host_to_another_cell():
    groups = {"web": ["web1", "web2"], "app": ["app1", "web2", "app2", "app3"]}
    overrides = {"app3": "web2"}
    assert cell_of("app1", groups, overrides=overrides)["cell"] == ["app1", "app2"]
    third = cell_of("app3", groups, overrides=overrides)
    assert third["web_host"] == "web2" and third["cell"] == ["web2", "app3"] and third["index"] == 1
    assert third["last"] and not third["first"] and third["complete"]


def test_a_limit_to_part_of_a_cell_is_incomplete():
    got = cell_of("app2", SPLIT, play_hosts=["app2"])
    assert got == {"web_host": "web1", "cell": ["app2"], "cell_inventory": ["app1", "app2"], "index": 0,
                   "first": True, "last": True, "touched": ["app2"], "complete": False}


def test_a_limit_to_a_whole_cell_is_complete_whatever_the_order():
    assert cell_of("app1", SPLIT, play_hosts=["app2", "app1"])["complete"] is True


def test_the_cell_follows_the_play_order_and_the_inventory_keeps_its_own():
    got = cell_of("app1", SPLIT, play_hosts=["app2", "app1"])
    assert got["cell"] == ["app2", "app1"] and got["cell_inventory"] == ["app1", "app2"]
    assert got["index"] == 1 and got["last"] and not got["first"] and got["touched"] == ["app2", "app1"]


def test_a_host_outside_the_play_is_refused():
    with pytest.raises(topo.TopologyError, match="app1 is not among the play's hosts"):
        cell_of("app1", SPLIT, play_hosts=["app2"])


# The filter and the documentation ------------------------------------------------------------------
def test_the_filter_is_the_rule_and_names_the_empty_web_group():
    assert filters.FilterModule().filters() == {"tsh_web_host": filters.tsh_web_host}
    assert filters.tsh_web_host("app2", SPLIT) == "web1"
    assert filters.tsh_web_host("app2", NO_WEB) == "app2"
    with pytest.raises(AnsibleFilterError, match="The web group is empty"):
        filters.tsh_web_host("app1", {"web": []})


def test_the_documentation_parses_and_names_the_action_plugins_options_and_results():
    tree = ast.parse((REPO / "plugins/modules/tsh_topology.py").read_text(encoding="utf-8"))
    values = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    docs = {name: yaml.safe_load(ast.literal_eval(values[name])) for name in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert set(docs["DOCUMENTATION"]["options"]) == set(action.ActionModule._VALID_ARGS)
    assert set(docs["RETURN"]) == set(cell_of("droplet", DROPLET))
    assert docs["EXAMPLES"][0]["tsh.infra.tsh_topology"] == {"web_host": "{{ deploy_web_host }}"}


# The action plugin through ansible-playbook ----------------------------------------------------------
INVENTORY = """\
all:
  vars:
    ansible_connection: local
  children:
    web:
      hosts:
        web1:
        web2:
    app:
      hosts:
        app1:
        web2:
        app2:
        app3:
          deploy_web_host: "{{ groups['web'] | last }}"
"""

EMPTY_WEB = """\
all:
  vars:
    ansible_connection: local
  children:
    web:
      hosts: {}
    app:
      hosts:
        app1:
"""

PLAY = """\
- name: Work out each app host's cell as deploy.yml does
  hosts: app
  serial: 1
  gather_facts: false
  roles:
    - role: tsh
    - role: deploy
  tasks:
    - name: Work out this app host's cell
      tsh_topology:
        web_host: "{{ deploy_web_host }}"
      register: __deploy_topology
    - name: Say what came back
      ansible.builtin.debug:
        msg: "RESULT {{ {inventory_hostname: __deploy_topology} | to_json }} END"
"""


def play(tmp_path, *args, inventory=INVENTORY):
    (tmp_path / "hosts.yml").write_text(inventory)
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                          str(tmp_path / "play.yml"), "-e", f"ansible_python_interpreter={sys.executable}", *args],
                         capture_output=True, text=True, env=env, cwd=REPO, check=False, stdin=subprocess.DEVNULL,
                         timeout=120)
    out = run.stdout + run.stderr
    found = {}
    for part in out.split("RESULT ")[1:]:
        found.update(json.loads(part.split(" END", 1)[0].replace('\\"', '"')))
    return run.returncode, out, {host: {k: v for k, v in got.items() if k not in ("changed", "failed")}
                                 for host, got in found.items()}


def test_the_action_plugin_reads_the_role_default_and_each_hosts_templated_override(tmp_path):
    rc, out, got = play(tmp_path)
    assert rc == 0, out
    assert got["app1"] == cell_of("app1", {"web": ["web1", "web2"], "app": ["app1", "web2", "app2", "app3"]},
                                  overrides={"app3": "web2"})
    assert {host: (c["web_host"], c["cell"], c["index"]) for host, c in got.items()} == {
        "app1": ("web1", ["app1", "app2"], 0), "app2": ("web1", ["app1", "app2"], 1),
        "web2": ("web2", ["web2", "app3"], 0), "app3": ("web2", ["web2", "app3"], 1)}
    assert all(c["complete"] for c in got.values())


def test_the_action_plugin_under_a_limit_to_part_of_a_cell(tmp_path):
    rc, out, got = play(tmp_path, "--limit", "app2,app3")
    assert rc == 0, out
    assert got == {
        "app2": {"web_host": "web1", "cell": ["app2"], "cell_inventory": ["app1", "app2"], "index": 0, "first": True,
                 "last": True, "touched": ["app2"], "complete": False},
        "app3": {"web_host": "web2", "cell": ["app3"], "cell_inventory": ["web2", "app3"], "index": 0, "first": True,
                 "last": True, "touched": ["app3"], "complete": False}}


def test_an_empty_web_group_stops_the_play_naming_the_fix(tmp_path):
    rc, out, got = play(tmp_path, inventory=EMPTY_WEB)
    assert rc != 0 and not got
    assert "The web group is empty, so app1 has no web host: put the web host in it, or remove the group" in " ".join(out.split())

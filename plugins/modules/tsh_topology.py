#!/usr/bin/python
"""Documentation of the action plugin tsh_topology (plugins/action/tsh_topology.py), which runs on the
controller only; like ansible.builtin's set_fact or assert, the module of its name holds no code, only
what ansible-doc tsh.infra.tsh_topology shows."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_topology
short_description: Work out an app host's deploy cell on the controller
description:
  - The app hosts behind one web host form a cell, which a deploy or rollback moves together; this
    action says which cell this host belongs to and its place in it, on the controller, without a round
    trip or a connection to any host.
  - Each host's web host is its own C(deploy_web_host) when its inventory (or C(-e), or a set_fact) sets
    one, templated in that host's context; otherwise the rule the deploy role's default applies (the
    filter C(tsh.infra.tsh_web_host)), that is the host itself when it is in the C(web) group or there
    is no C(web) group, otherwise the first C(web) host. This host's web host is O(web_host).
  - Reads the play's C(inventory_hostname), C(groups) (C(web), C(app)), C(ansible_play_hosts_all) and
    C(hostvars).
  - Fails when the C(web) group exists but is empty.
  - The logic is plugins/module_utils/tsh_topology.py (unit tests in tests/unit/test_topology.py).
  - Supports check mode (it changes nothing).
options:
  web_host:
    description: This host's web host (the deploy role's C(deploy_web_host)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Work out this app host's cell
  tsh.infra.tsh_topology:
    web_host: "{{ deploy_web_host }}"
  register: __deploy_topology

- name: Take the deploy lock with the cell's first app host
  tsh.infra.tsh_deploy_lock:
    state: acquired
    path: /opt/tsh_erp/deploy/lock
  delegate_to: "{{ deploy_web_host }}"
  when: __deploy_topology.first
"""

RETURN = r"""
web_host: {description: This host's web host., type: str, returned: success}
cell: {description: "The play's hosts (ansible_play_hosts_all) behind that web host, in play order.", type: list, elements: str, returned: success}
cell_inventory: {description: "The app group's hosts behind that web host, in inventory order.", type: list, elements: str, returned: success}
index: {description: This host's place in the cell (0 for the first)., type: int, returned: success}
first: {description: Whether this host is the cell's first (it takes the lock and decides the colour)., type: bool, returned: success}
last: {description: Whether this host is the cell's last (traffic switches after it)., type: bool, returned: success}
touched: {description: "The cell up to and including this host: what a run has prepared when this host's turn ends.", type: list, elements: str, returned: success}
complete: {description: "Whether the run reaches the whole cell (false under a --limit to part of it).", type: bool, returned: success}
"""

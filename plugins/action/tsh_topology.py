"""tsh_topology: this app host's cell, decided on the controller in one step of the play (no round trip
to a host, no connection). Used at the start of playbooks/deploy.yml and playbooks/rollback.yml, which
register it as __deploy_topology; the logic is plugins/module_utils/tsh_topology.py (unit tests in
tests/unit/test_topology.py), the documentation plugins/modules/tsh_topology.py.

Reads: the task's web_host (this host's deploy_web_host, as the play sees it), and from the play's
variables inventory_hostname, groups ('web', 'app'), ansible_play_hosts_all, and hostvars: each other
host's own deploy_web_host when its inventory (or -e, or a set_fact) sets one, templated in that
host's context; otherwise the rule web_host_of() (the deploy role's default, which hostvars do not
hold). Returns the cell as module_utils' cell() gives it: web_host, cell, cell_inventory, index,
first, last, touched, complete."""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible_collections.tsh.infra.plugins.module_utils import tsh_topology as _topology

# The per-host setting of the deploy role that names an app host's web host.
WEB_HOST_VAR = "deploy_web_host"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("web_host",))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        result["changed"] = False
        host = task_vars["inventory_hostname"]
        web_host = str(self._task.args.get("web_host") or "")
        if not web_host:
            result.update(failed=True, msg=f"tsh_topology needs web_host: the web host of {host} (deploy_web_host).")
            return result
        groups = task_vars.get("groups") or {}
        play_hosts = list(task_vars.get("ansible_play_hosts_all") or [host])
        app_group = list(groups.get("app") or [])
        hostvars = task_vars["hostvars"]
        overrides = {host: web_host}
        for other in dict.fromkeys(play_hosts + app_group):
            if other != host and WEB_HOST_VAR in hostvars[other]:
                overrides[other] = str(hostvars[other][WEB_HOST_VAR])
        try:
            web_hosts = _topology.web_hosts(dict.fromkeys([host, *play_hosts, *app_group]), groups, overrides)
            result.update(_topology.cell(host, web_hosts, play_hosts, app_group))
        except _topology.TopologyError as exc:
            result.update(failed=True, msg=str(exc))
        return result

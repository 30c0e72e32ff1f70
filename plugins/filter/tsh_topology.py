"""The web host rule of plugins/module_utils/tsh_topology.py as a filter, for the deploy role's
default deploy_web_host (the action plugin tsh_topology applies the same rule to the other hosts):

    {{ inventory_hostname | tsh.infra.tsh_web_host(groups) }}
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible_collections.tsh.infra.plugins.module_utils import tsh_topology as _topology


def tsh_web_host(host, groups):
    """The web host of host: itself when it is in the web group or there is no web group, otherwise
    the first web host."""
    try:
        return _topology.web_host_of(str(host), groups)
    except _topology.TopologyError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"tsh_web_host": tsh_web_host}

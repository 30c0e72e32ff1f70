"""Controller side of playbooks/status.yml: merge the hosts' parts (plugins/modules/tsh_status.py),
add the warnings and render them, with the functions of plugins/module_utils/tsh_status.py.

    {{ reports | tsh_status(unreachable, thresholds) }}          the status as a dict (the JSON form)
    {{ reports | tsh_status(unreachable, thresholds) | tsh_status_table }}   the table, a list of lines
"""

from __future__ import annotations

from ansible_collections.tsh.infra.plugins.module_utils import tsh_status as _status


def _number(value):
    number = float(value)
    return int(number) if number.is_integer() else number


def tsh_status(reports, unreachable=(), thresholds=None):
    """The merged status: {'cells': [...], 'unreachable': [...], 'warnings': [...]}."""
    limits = {key: _number(value) for key, value in (thresholds or {}).items()}
    return _status.status(dict(reports), list(unreachable or ()), limits)


def tsh_status_table(status):
    """The status as lines of text."""
    return _status.render_table(status)


class FilterModule:
    def filters(self):
        return {"tsh_status": tsh_status, "tsh_status_table": tsh_status_table}

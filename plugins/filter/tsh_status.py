"""Controller side of playbooks/status.yml: merge the hosts' parts (plugins/modules/tsh_status.py),
add the warnings and render them, with the functions of plugins/module_utils/tsh_status.py.

    {{ reports | tsh_status(unreachable, thresholds) }}          the status as a dict (the JSON form)
    {{ reports | tsh_status(unreachable, thresholds) | tsh_status_table }}   the table, a list of lines
"""

from __future__ import annotations

import importlib.util
import os
import sys

_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")


def _load(name):
    """A module_utils file by path, under the name modules import it by (on the controller
    ansible.module_utils has no tsh_* files: they travel only in a module's payload)."""
    full = f"ansible.module_utils.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, os.path.join(_UTILS, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]


def _utils():
    _load("tsh_switch")  # imported by tsh_status
    return _load("tsh_status")


def _number(value):
    number = float(value)
    return int(number) if number.is_integer() else number


def tsh_status(reports, unreachable=(), thresholds=None):
    """The merged status: {'cells': [...], 'unreachable': [...], 'warnings': [...]}."""
    limits = {key: _number(value) for key, value in (thresholds or {}).items()}
    return _utils().status(dict(reports), list(unreachable or ()), limits)


def tsh_status_table(status):
    """The status as lines of text."""
    return _utils().render_table(status)


class FilterModule:
    def filters(self):
        return {"tsh_status": tsh_status, "tsh_status_table": tsh_status_table}

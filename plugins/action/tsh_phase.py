"""tsh_phase: open a deploy phase (or close the open one) on the controller, no round trip. Sets the
facts __deploy_phase (what a failure message and the audit record name), __deploy_phase_started and
__deploy_durations (phase -> seconds, in the audit record). The logic is
plugins/module_utils/tsh_phase.py (unit tests in tests/unit/test_phase.py), the documentation
plugins/modules/tsh_phase.py."""

from __future__ import annotations

import time

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.tsh.infra.plugins.module_utils.tsh_phase import advance


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("name", "reset"))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        facts = advance(task_vars.get("__deploy_durations"), task_vars.get("__deploy_phase"),
                        task_vars.get("__deploy_phase_started"), str(self._task.args.get("name") or ""),
                        time.time(), reset=boolean(self._task.args.get("reset", False), strict=False))
        # Host facts (a set_fact of the same names would shadow them: playbooks set them only here).
        result.update(changed=False, ansible_facts=facts)
        return result

"""Controller side of tsh_release_build: on the controller (connection local, as playbooks/build.yml
runs it) the build runs in this process, so it can say what the wheel downloads are doing while they
run (minutes for a backend with 129 requirements). Anywhere else the module runs as usual."""

from __future__ import annotations

import sys

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.tsh.infra.plugins.module_utils import tsh_release_build as utils

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if self._connection.transport not in ("local", "ansible.builtin.local"):
            # The module of this action's name, where the action was found (tsh.infra.* or ansible.cfg's library).
            return self._execute_module(module_name=self._task.resolved_action, module_args=self._task.args,
                                        task_vars=task_vars)
        validated = ArgumentSpecValidator(utils.ARGUMENT_SPEC).validate(dict(self._task.args))
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return result
        params = validated.validated_parameters
        params["pip_python"] = params["pip_python"] or sys.executable

        def progress(text):
            display.display(f"  build: {text}")

        try:
            result.update(utils.build(params, utils.run_command, check_mode=self._task.check_mode,
                                      progress=progress))
        except utils.BuildError as exc:
            result.update(failed=True, msg=str(exc))
        return result

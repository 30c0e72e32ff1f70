"""Controller side of tsh_deploy_lock: says which run this is (the controller's host name and boot id,
the ansible-playbook process's pid and start time), runs the module on the web host, and decides here,
where that process lives, whether the run holding a lock is provably gone (logic in
module_utils/tsh_lock.py, class Controller)."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible_collections.tsh.infra.plugins.module_utils import tsh_lock as utils

_PUBLIC = ("state", "path", "version", "operation", "this_run", "confirm")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(_PUBLIC)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        spec = {k: v for k, v in utils.ARGUMENT_SPEC.items() if k in _PUBLIC}
        validated = ArgumentSpecValidator(spec).validate(dict(self._task.args))
        if validated.error_messages:
            result.update(failed=True, msg="; ".join(validated.error_messages))
            return result
        args = validated.validated_parameters

        def call(module_args):
            # The module of this action's name, where the action was found (tsh.infra.* or ansible.cfg's library).
            return self._execute_module(module_name=self._task.resolved_action, module_args=module_args, task_vars=task_vars)

        controller = utils.Controller(
            call, utils.controller_facts(),
            inventory=utils.inventory_hint(task_vars.get("ansible_inventory_sources")),
            host=task_vars.get("inventory_hostname", ""),
            target=self._task.delegate_to or task_vars.get("inventory_hostname", ""))
        result.update(controller.run(args))
        return result

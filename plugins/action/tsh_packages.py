"""tsh_packages: the apt module's install, called only when dpkg's database says something is missing.

Runs the tsh_packages module (reads /var/lib/dpkg/status on the host; plugins/module_utils/
tsh_packages.py) and, only when a wanted package is not installed or a name is not a plain package
name, ansible.builtin.apt with the task's own arguments. On a provisioned host that saves apt's
cache load, about half a second per task. Only state=present is taken: removing and upgrading stay
with apt. Unit tests: tests/unit/test_packages.py."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        names = args.get("name") or args.get("pkg") or []
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        if args.get("state", "present") != "present" or not names:
            result.update(failed=True, msg="tsh_packages: give name (a list) and state=present; use "
                                           "ansible.builtin.apt to remove or upgrade packages")
            return result
        try:
            # The module of this action's name, where the action was found (tsh.infra.* or ansible.cfg's library).
            found = self._execute_module(module_name=self._task.resolved_action, module_args={"name": names},
                                         task_vars=task_vars)
            if found.get("failed"):
                return found
            if found["missing"] or found["unknown"]:
                result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=args,
                                                   task_vars=task_vars))
                result["missing_before"] = found["missing"] + found["unknown"]
            else:
                result.update(changed=False, msg=f"installed: {', '.join(found['installed'])}")
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

"""tsh_config_files: render a set of templates on the controller and hand them to the
tsh_config_files module, which writes them, tests them as a whole and puts everything back when the
test fails, in one round trip. Used by the nginx role; unit tests in tests/unit/test_config_files.py.

A files item with `each` stands for one file per element: `as` names the variable the template sees
the element as, and `%s` in `dest` (and in `src`) is replaced by the element's `key` (or the element
itself)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader


def expand(files):
    """The files items with every `each` item replaced by one item per element."""
    out = []
    for item in files or []:
        item = dict(item)
        if "each" not in item:
            out.append(item)
            continue
        each, name, key = item.pop("each") or [], item.pop("as", "item"), item.pop("key", None)
        if "%s" not in str(item.get("dest", "")):
            raise AnsibleActionFail(f"tsh_config_files: dest {item.get('dest')!r} of an `each` item needs a %s for the element")
        for element in each:
            value = element[key] if key else element
            expanded = {**item, "dest": item["dest"].replace("%s", str(value)),
                        "vars": {**(item.get("vars") or {}), name: element}}
            if "src" in item:
                expanded["src"] = str(item["src"]).replace("%s", str(value))
            out.append(expanded)
    dests = [item.get("dest") for item in out]
    twice = sorted({d for d in dests if dests.count(d) > 1})
    if twice:
        raise AnsibleActionFail(f"tsh_config_files: more than one file would be written to {', '.join(twice)}")
    return out


class ActionModule(ActionBase):
    """Renders each files[].src (with files[].vars) into files[].content, then runs the module."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        template = lookup_loader.get("ansible.builtin.template", loader=self._loader, templar=self._templar)
        files = []
        for item in expand(args.get("files")):
            src = item.pop("src", None)
            template_vars = item.pop("vars", None) or {}
            if src is not None:
                path = self._find_needle("templates", src)
                item["content"] = template.run([path], variables=task_vars, template_vars=template_vars)[0]
            files.append(item)
        args["files"] = files
        # The module of this action's name, where the action was found (tsh.infra.* or ansible.cfg's library).
        result.update(self._execute_module(module_name=self._task.resolved_action, module_args=args, task_vars=task_vars))
        return result

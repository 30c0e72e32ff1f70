"""Documentation shared by the modules that hold the host's deploy step lock
(plugins/module_utils/tsh_steplock.py): extends_documentation_fragment: tsh.infra.steplock."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
notes:
  - Takes the host's deploy step lock (plugins/module_utils/tsh_steplock.py) for its whole run, so no two
    deploy steps act at once on a host, also when a killed run left one running; waits up to 900 s for it.
options: {}
"""

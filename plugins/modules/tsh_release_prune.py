#!/usr/bin/python
"""Ansible module: remove old releases and unused venvs of the app in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_release_prune
short_description: Keep the newest releases and the ones the colours use; remove unused venvs
description:
  - Keeps the newest I(keep) directories under C(<base_dir>/releases) and never one that
    C(current-blue) or C(current-green) points at; removes the venvs under C(<base_dir>/venvs) that
    no colour uses. Each removal renames first, so a kill leaves nothing half-removed under a
    release's name.
  - The logic is in plugins/module_utils/tsh_release.py (unit tests in tests/unit/test_release_install.py).
extends_documentation_fragment: [tsh.infra.steplock]
options:
  base_dir: {description: The application's base directory., type: path, required: true}
  keep: {description: How many of the newest releases to keep., type: int, default: 5}
"""

EXAMPLES = r"""
- name: Prune old releases
  tsh_release_prune:
    base_dir: /opt/tsh_erp
    keep: 5
"""

RETURN = r"""
releases: {description: Releases removed., type: list, returned: always}
venvs: {description: Venvs removed., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release import prune  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "keep": {"type": "int", "default": 5},
        },
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_release_prune")
    if module.params["keep"] < 1:
        module.fail_json(msg="tsh_release_prune: keep must be 1 or more (deploy_keep_releases)")
    releases, venvs = prune(module.params["base_dir"], module.params["keep"], check=module.check_mode)
    module.exit_json(changed=bool(releases or venvs), releases=releases, venvs=venvs)


if __name__ == "__main__":
    main()

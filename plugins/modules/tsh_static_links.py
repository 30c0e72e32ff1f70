#!/usr/bin/python
"""Ansible module: point the static sites at the frontends a release ships, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_static_links
short_description: Link each static site to the frontend shipped in a release
description:
  - For each O(sites) entry (a name and the path nginx serves), when C(<release_dir>/static/<name>)
    is a directory, makes the path a symlink to it, swapped by one rename. A plain directory left by
    provisioning is moved aside to C(<path>.provisioned) the first time. Sites the release does not
    ship are left alone.
  - The logic is in plugins/module_utils/tsh_release.py (unit tests in tests/unit/test_release_install.py).
extends_documentation_fragment: [tsh.infra.steplock]
options:
  release_dir: {description: The release's directory., type: path, required: true}
  sites: {description: Site name to the path nginx serves., type: dict, default: {}}
"""

EXAMPLES = r"""
- name: Switch the static frontends
  tsh_static_links:
    release_dir: /opt/tsh_erp/releases/2026.12.01-1
    sites: {admin: /var/www/tsh/admin, consumer: /var/www/tsh/consumer}
"""

RETURN = r"""
linked: {description: Names of the sites whose link changed., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release import InstallError, link_static  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "release_dir": {"type": "path", "required": True},
            "sites": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_static_links")
    try:
        linked = link_static(module.params["release_dir"], module.params["sites"], check=module.check_mode)
    except (InstallError, OSError) as exc:
        module.fail_json(msg=f"tsh_static_links: {exc}")
    module.exit_json(changed=bool(linked), linked=linked)


if __name__ == "__main__":
    main()
